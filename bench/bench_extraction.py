"""Extraction quality on the dev set (../shared/data/extraction/ground-truth.json), scored as each
source benchmark scores it (pipeline.extraction_eval): thresher's stage 1 text, and stage 1 + the
clutter remover, beside plain trafilatura (default, favor_precision, favor_recall) on the same pages.

Clutter-removal figures are cross-validated: pages are split into 5 folds by a hash of their URL
(pipeline.extraction_eval.url_fold); for each fold a fastText line model is trained on the lines of
the other four folds' pages (labels: classifiers.line_labels) and removes clutter from the held-out
fold's pages only. No page is ever scored by a model that saw it.

Extractions are cached under bench/work/extraction/ (delete the folder after changing extraction).

    .venv/bin/python bench/bench_extraction.py [--variants thresher_recall_comments ...] [--thresholds 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "work" / "extraction"
SOURCES = ("trafilatura", "magic_html", "scrapinghub")
FOLDS = 5

# Plain trafilatura runs on the raw bytes (it decodes them itself), as its own benchmark does.
BASELINES = {
    "trafilatura_default": {},
    "trafilatura_precision": {"favor_precision": True},
    "trafilatura_recall": {"favor_recall": True},
}
# thresher's stage 1: thresher's decoding, then trafilatura with these options (text and line origins).
THRESHER = {
    "thresher_precision": {"favor_precision": True, "include_comments": False},  # the options before issue 14
    "thresher_default_comments": {"include_comments": True},
    "thresher_recall": {"favor_recall": True, "include_comments": False},
    "thresher_recall_comments": {"favor_recall": True, "include_comments": True},
    # tried, not chosen (bench/RESULTS.md): trafilatura's fallback extractors off; tables dropped
    "thresher_comments_no_fallback": {"include_comments": True, "no_fallback": True},
    "thresher_comments_no_tables": {"include_comments": True, "include_tables": False},
}
# Variants that also append the thread posts trafilatura missed (pipeline.extract.missing_thread_posts),
# with these ThreadPostsConfig settings over its defaults (the shipped prepare.thread_posts).
THREAD_POSTS = {
    "thresher_comments_posts": ({"include_comments": True}, {"min_line_chars": 1, "cjk_char_weight": 1}),
    "thresher_comments_posts_line10": ({"include_comments": True}, {"min_line_chars": 10, "cjk_char_weight": 1}),
    "thresher_comments_posts_line20": ({"include_comments": True}, {}),  # stage 1's settings
}
for _name, (_options, _settings) in THREAD_POSTS.items():
    THRESHER[_name] = _options
# Stage 1 now: thresher_comments_posts_line20 (trafilatura defaults with comments, plus the thread posts).
DEFAULT_VARIANTS = (
    "thresher_precision", "thresher_default_comments", "thresher_recall", "thresher_recall_comments", "thresher_comments_posts_line20",
)


@dataclass
class Page:
    url: str
    source: str
    truth: dict
    payload: bytes
    charset: str


def load_pages(crawl: Path, ground_truth: Path) -> list[Page]:
    """Every crawl page that has ground truth, in URL order."""
    from pipeline.inputs import open_input
    from pipeline.warc import WarcRecord, iter_records

    truth = json.loads(ground_truth.read_text(encoding="utf-8"))
    source_of = {url: (source, record) for source in SOURCES for url, record in truth.get(source, {}).items()}
    pages = {}
    for path in sorted(crawl.glob("*.warc.gz")):
        with open_input(str(path)) as raw:
            for event in iter_records(raw, 5_000_000, lambda header: header.url in source_of):
                if isinstance(event, WarcRecord) and event.payload is not None and event.url in source_of:
                    source, record = source_of[event.url]
                    pages[event.url] = Page(event.url, source, record, event.payload, event.charset)
    return [pages[url] for url in sorted(pages)]


def extract_variant(name: str, pages: list[Page]) -> dict[str, dict]:
    """{url: {"text", "origins", "cpu_s"}} of one extraction variant, cached on disk."""
    cache = WORK / f"{name}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    import trafilatura

    from pipeline.config import ThreadPostsConfig
    from pipeline.extract import decode_html, extract_with_origins

    results = {}
    for page in pages:
        started = time.process_time()
        try:
            if name in BASELINES:
                text, origins = trafilatura.extract(page.payload, url=page.url, **BASELINES[name]) or "", []
            else:
                posts = ThreadPostsConfig(**THREAD_POSTS[name][1]) if name in THREAD_POSTS else None
                text, origins = extract_with_origins(decode_html(page.payload, page.charset).html, page.url, THRESHER[name], posts)
        except Exception as exc:  # noqa: BLE001 - a page the extractor fails on scores as empty
            print(f"  {name}: {page.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            text, origins = "", []
        results[page.url] = {"text": text, "origins": origins, "cpu_s": time.process_time() - started}
    WORK.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    return results


def score(pages: list[Page], texts: dict[str, str]) -> dict[str, dict]:
    """Each source's scores of `texts` ({url: text}) over its pages; magic_html also per kind."""
    from pipeline import extraction_eval as ev

    out = {}
    snippet = [ev.snippet_counts(texts[p.url], p.truth["with"], p.truth["without"]) for p in pages if p.source == "trafilatura"]
    out["trafilatura"] = ev.snippet_scores(snippet)
    magic = [p for p in pages if p.source == "magic_html"]
    out["magic_html"] = ev.bigram_scores([ev.bigram_prf(p.truth["content"], texts[p.url]) for p in magic])
    for kind in sorted({p.truth.get("kind", "") for p in magic} - {""}):
        out[f"magic_html:{kind}"] = ev.bigram_scores([ev.bigram_prf(p.truth["content"], texts[p.url]) for p in magic if p.truth.get("kind") == kind])
    out["scrapinghub"] = ev.shingle_scores([ev.shingle_tp_fp_fn(p.truth["articleBody"], texts[p.url]) for p in pages if p.source == "scrapinghub"])
    return out


def label_rows(pages: list[Page], extraction: dict[str, dict]) -> list[dict]:
    """Training rows (the clutter task's format) of every labelled line of every page."""
    from classifiers.line_labels import page_line_labels

    rows = []
    for page in pages:
        lines = extraction[page.url]["text"].split("\n")
        origins = extraction[page.url]["origins"]
        for index, label in enumerate(page_line_labels(lines, page.source, page.truth)):
            if label is not None:
                origin = origins[index] if index < len(origins) else ""
                rows.append({"url": page.url, "text": lines[index], "line_index": index, "line_count": len(lines), "origin": origin, "label": label})
    return rows


def train_lines(rows: list[dict], params: dict, use_origins: bool = False):
    from classifiers.fasttext_backend import FastTextClassifier
    from classifiers.tasks import model_input

    texts = [model_input("clutter", row if use_origins else {**row, "origin": ""}) for row in rows]
    return FastTextClassifier.train(texts, [row["label"] for row in rows], params, seed=0)


def cross_validated_cleaning(
    pages: list[Page],
    extraction: dict[str, dict],
    thresholds: list[float],
    params: dict,
    use_origins: bool = False,
    training_extraction: dict[str, dict] | None = None,
) -> tuple[dict[float, dict[str, str]], dict]:
    """{threshold: {url: cleaned text}} with every page cleaned by the model of the other folds,
    trained on the lines of `training_extraction` (default: `extraction` itself)."""
    from classifiers.clutter import line_scores
    from pipeline.extraction_eval import cv_splits

    rows = label_rows(pages, training_extraction or extraction)
    cleaned: dict[float, dict[str, str]] = {t: {} for t in thresholds}
    stats = {"labelled_lines": len(rows), "keep_lines": sum(r["label"] == "keep" for r in rows), "scoring_cpu_s": 0.0, "lines_scored": 0}
    for train_urls, held_urls in cv_splits((page.url for page in pages), FOLDS):
        train = [row for row in rows if row["url"] in train_urls]
        held = [page for page in pages if page.url in held_urls]
        model = train_lines(train, params, use_origins)
        texts = [extraction[page.url]["text"] for page in held]
        origins = [extraction[page.url]["origins"] if use_origins else None for page in held]
        started = time.process_time()
        scores = line_scores(texts, model, origins=origins)
        stats["scoring_cpu_s"] += time.process_time() - started
        stats["lines_scored"] += sum(score is not None for doc in scores for score in doc)
        for page, text, doc_scores in zip(held, texts, scores, strict=True):
            lines = text.split("\n")
            for threshold in thresholds:
                kept = [line for line, score in zip(lines, doc_scores, strict=True) if score is None or score >= threshold]
                cleaned[threshold][page.url] = "\n".join(kept).strip()
    stats["documents"] = len(pages)
    return cleaned, stats


def stage1_cpu(pages: list[Page], names: list[str], rounds: int = 2) -> dict[str, float]:
    """CPU ms per page of stage 1's extraction call with each named THRESHER option set, interleaved
    page by page so that load on a shared machine hits all alike; the best of `rounds`."""
    from pipeline.config import ThreadPostsConfig
    from pipeline.extract import decode_html, extract_with_origins

    htmls = [(decode_html(page.payload, page.charset).html, page.url) for page in pages]
    best = {name: float("inf") for name in names}
    for _ in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for html, url in htmls:
            for name in names:
                started = time.process_time()
                extract_with_origins(html, url, THRESHER[name], ThreadPostsConfig(**THREAD_POSTS[name][1]) if name in THREAD_POSTS else None)
                spent[name] += time.process_time() - started
        best = {name: min(best[name], spent[name] * 1000 / len(htmls)) for name in names}
    return best


def format_row(name: str, scores: dict) -> str:
    cells = []
    for key in ("trafilatura", "magic_html", "magic_html:article", "magic_html:forum", "scrapinghub"):
        if key in scores:
            s = scores[key]
            cells.append(f"{s.precision:.3f} {s.recall:.3f} {s.f1:.3f}")
        else:
            cells.append("-")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> int:
    from pipeline.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", default=str(DATA / "crawl"), help="folder of the dev crawl's WARC files")
    parser.add_argument("--ground-truth", default=str(DATA / "extraction" / "ground-truth.json"), help="ground-truth JSON")
    parser.add_argument(
        "--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(THRESHER), help="stage 1 variants to clean and score"
    )
    parser.add_argument("--thresholds", nargs="+", type=float, help="clutter thresholds (default: the configured select.line_thresholds.clutter)")
    parser.add_argument(
        "--with-origins", action="store_true", help="also score models that see the line origins (stage 1 does not store them)"
    )
    parser.add_argument("--stage1-cpu", action="store_true", help="only time stage 1's extraction with each of --variants")
    parser.add_argument(
        "--train-on",
        choices=list(THRESHER),
        help="train the cross-validated line models on this variant's lines (as the shipped model, trained on "
        "stage 1's extraction, would meet a changed extraction) instead of each variant's own",
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fastText option, e.g. dim=16")
    args = parser.parse_args()

    import yaml

    from bench.build_clutter_model import MODEL_PARAMS

    config = load_config(str(REPO / "configs" / "default.yaml"))
    thresholds = args.thresholds or [config.select.line_thresholds["clutter"]]
    params = {**MODEL_PARAMS, **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.param)}}
    pages = load_pages(Path(args.crawl), Path(args.ground_truth))
    if args.stage1_cpu:
        for name, ms in stage1_cpu(pages, args.variants).items():
            print(f"{name}: {ms:.1f} ms CPU per page ({THRESHER[name]})")
        return 0
    counts = {source: sum(p.source == source for p in pages) for source in SOURCES}
    print(f"dev pages: {len(pages)} {counts}; folds: {FOLDS} by URL hash; fastText {params}")
    header = "| extraction | trafilatura snippets P R F1 | magic-html bigram P R F1 | magic article | magic forum | scrapinghub shingles P R F1 |"
    print(header)
    print("|" + "---|" * 6)
    for name in BASELINES:
        print(format_row(name, score(pages, {url: r["text"] for url, r in extract_variant(name, pages).items()})), flush=True)
    for name in args.variants:
        extraction = extract_variant(name, pages)
        cpu = sum(r["cpu_s"] for r in extraction.values()) / len(extraction)
        print(format_row(f"{name} (stage 1, {cpu * 1000:.0f} ms CPU/page)", score(pages, {url: r["text"] for url, r in extraction.items()})), flush=True)
        training = extract_variant(args.train_on, pages) if args.train_on else None
        for use_origins in (False, True) if args.with_origins else (False,):
            cleaned, stats = cross_validated_cleaning(pages, extraction, thresholds, params, use_origins, training)
            per_doc = stats["scoring_cpu_s"] / stats["documents"] * 1000
            for threshold in thresholds:
                trained = f" trained on {args.train_on}" if args.train_on else ""
                label = f"{name} + clutter{' (with origins)' if use_origins else ''}{trained} @ {threshold:g}, CV"
                print(format_row(label, score(pages, cleaned[threshold])), flush=True)
            print(f"  ({stats['labelled_lines']} labelled lines, {stats['keep_lines']} keep; clutter scoring {per_doc:.2f} ms CPU/document)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
