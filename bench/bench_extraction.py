"""Extraction quality on the dev set (../shared/data/extraction/ground-truth.json), scored as each
source benchmark scores it (pipeline.prepare.extraction_eval): thresher's stage 1 text, and stage 1 + the
clutter remover, beside plain trafilatura (default, favor_precision, favor_recall) on the same pages.

Clutter-removal figures are cross-validated: pages are split into 5 folds by a hash of their URL
(pipeline.prepare.extraction_eval.url_fold); for each fold a fastText line model is trained on the lines of
the other four folds' pages (labels: classifiers.line_labels) and removes clutter from the held-out
fold's pages only. No page is ever scored by a model that saw it.

Extractions are cached under bench/work/extraction/ (delete the folder after changing extraction).

    .venv/bin/python bench/bench_extraction.py [--variants thresher_recall_comments ...] [--thresholds 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

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
# Variants that also append the thread posts trafilatura missed (pipeline.prepare.extract.missing_thread_posts),
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
    from thresher.pipeline.prepare.inputs import open_input
    from thresher.pipeline.prepare.warc import WarcRecord, iter_records

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


def cached_variants(cache: Path = WORK) -> list[str]:
    return sorted(path.stem for path in cache.glob("*.json"))


def pages_from_truth(ground_truth: Path, urls: set[str]) -> list[Page]:
    """The dev pages among `urls` (a cached extraction's pages) without their HTML: enough to score
    and label cached extractions without reading the crawl again."""
    truth = json.loads(ground_truth.read_text(encoding="utf-8"))
    pages = [Page(url, source, record, b"", "") for source in SOURCES for url, record in truth.get(source, {}).items() if url in urls]
    return sorted(pages, key=lambda page: page.url)


def extract_variant(name: str, pages: list[Page], cache: Path = WORK) -> dict[str, dict]:
    """{url: {"text", "origins", "cpu_s"}} of one extraction variant, cached on disk in `cache`."""
    cached = cache / f"{name}.json"
    if cached.exists():
        return json.loads(cached.read_text(encoding="utf-8"))
    import trafilatura

    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import decode_html, extract_with_origins

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
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")
    return results


def score(pages: list[Page], texts: dict[str, str]) -> dict[str, dict]:
    """Each source's scores of `texts` ({url: text}) over its pages; magic_html also per kind."""
    from thresher.pipeline.prepare import extraction_eval as ev

    out = {}
    snippet = [ev.snippet_counts(texts[p.url], p.truth["with"], p.truth["without"]) for p in pages if p.source == "trafilatura"]
    out["trafilatura"] = ev.snippet_scores(snippet)
    magic = [p for p in pages if p.source == "magic_html"]
    out["magic_html"] = ev.bigram_scores([ev.bigram_prf(p.truth["content"], texts[p.url]) for p in magic])
    for kind in sorted({p.truth.get("kind", "") for p in magic} - {""}):
        out[f"magic_html:{kind}"] = ev.bigram_scores([ev.bigram_prf(p.truth["content"], texts[p.url]) for p in magic if p.truth.get("kind") == kind])
    out["scrapinghub"] = ev.shingle_scores([ev.shingle_tp_fp_fn(p.truth["articleBody"], texts[p.url]) for p in pages if p.source == "scrapinghub"])
    return out


def label_rows(pages: list[Page], extraction: dict[str, dict], context: bool = False) -> list[dict]:
    """Training rows (the clutter task's format) of every labelled line of every page; with `context`,
    also every other non-blank line, without a label (a model over the whole page sees them)."""
    from thresher.classifiers.line_labels import page_line_labels

    rows = []
    for page in pages:
        lines = extraction[page.url]["text"].split("\n")
        origins = extraction[page.url]["origins"]
        for index, label in enumerate(page_line_labels(lines, page.source, page.truth)):
            if label is not None or (context and lines[index].strip()):
                origin = origins[index] if index < len(origins) else ""
                rows.append({"url": page.url, "text": lines[index], "line_index": index, "line_count": len(lines), "origin": origin, "label": label})
    return rows


def train_lines(rows: list[dict], params: dict, use_origins: bool = False):
    from thresher.classifiers.fasttext_backend import FastTextClassifier
    from thresher.classifiers.tasks import model_input

    texts = [model_input("clutter", row if use_origins else {**row, "origin": ""}) for row in rows]
    return FastTextClassifier.train(texts, [row["label"] for row in rows], params, seed=0)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (fastText trains in a child process)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def train_sequence(pages: list[Page], extraction: dict[str, dict], params: dict):
    """A line_sequence model on whole pages: every line as context, the labelled ones as targets."""
    from thresher.classifiers.line_labels import page_line_labels
    from thresher.classifiers.line_sequence import LineSequenceClassifier

    documents = []
    for page in pages:
        lines = extraction[page.url]["text"].split("\n")
        documents.append((lines, page_line_labels(lines, page.source, page.truth)))
    return LineSequenceClassifier.train_documents(documents, params, seed=0)


def cross_validated_cleaning(
    pages: list[Page],
    extraction: dict[str, dict],
    thresholds: list[float],
    params: dict,
    use_origins: bool = False,
    training_extraction: dict[str, dict] | None = None,
    backend: str = "fasttext",
) -> tuple[dict[float, dict[str, str]], dict]:
    """{threshold: {url: cleaned text}} with every page cleaned by the model of the other folds,
    trained on the lines of `training_extraction` (default: `extraction` itself)."""
    from thresher.classifiers.clutter import line_scores
    from thresher.pipeline.prepare.extraction_eval import cv_splits

    rows = label_rows(pages, training_extraction or extraction)
    cleaned: dict[float, dict[str, str]] = {t: {} for t in thresholds}
    stats = {"labelled_lines": len(rows), "keep_lines": sum(r["label"] == "keep" for r in rows), "scoring_cpu_s": 0.0, "lines_scored": 0}
    stats["train_cpu_s"] = 0.0
    for train_urls, held_urls in cv_splits((page.url for page in pages), FOLDS):
        train = [row for row in rows if row["url"] in train_urls]
        held = [page for page in pages if page.url in held_urls]
        started = cpu_seconds()
        if backend == "line_sequence":
            model = train_sequence([page for page in pages if page.url in train_urls], training_extraction or extraction, params)
        else:
            model = train_lines(train, params, use_origins)
        stats["train_cpu_s"] += cpu_seconds() - started
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
    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import decode_html, extract_with_origins

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


def page_stats(pages: list[Page], texts: dict[str, str]) -> dict[str, list]:
    """Each subset's per-page scoring inputs of `texts`, so that resampled page sets rescore fast."""
    from thresher.pipeline.prepare import extraction_eval as ev

    return {
        "trafilatura": [ev.snippet_counts(texts[p.url], p.truth["with"], p.truth["without"]) for p in pages if p.source == "trafilatura"],
        "magic_html": [ev.bigram_prf(p.truth["content"], texts[p.url]) for p in pages if p.source == "magic_html"],
        "scrapinghub": [ev.shingle_tp_fp_fn(p.truth["articleBody"], texts[p.url]) for p in pages if p.source == "scrapinghub"],
    }


def _subset_f1(source: str, stats: list) -> float:
    from thresher.pipeline.prepare import extraction_eval as ev

    scorer = {"trafilatura": ev.snippet_scores, "magic_html": ev.bigram_scores, "scrapinghub": ev.shingle_scores}[source]
    return scorer(stats).f1


def paired_bootstrap(pages: list[Page], texts_a: dict[str, str], texts_b: dict[str, str], resamples: int = 500, seed: int = 14) -> dict:
    """F1 of A minus F1 of B per subset and their mean, with a 90% interval from resampling each
    subset's pages with replacement (the same pages for A and B: a paired bootstrap)."""
    import random

    stats_a, stats_b = page_stats(pages, texts_a), page_stats(pages, texts_b)
    rng = random.Random(seed)
    deltas: dict[str, list[float]] = {source: [] for source in (*SOURCES, "mean")}
    for _ in range(resamples):
        total = 0.0
        for source in SOURCES:
            picks = [rng.randrange(len(stats_a[source])) for _ in stats_a[source]]
            delta = _subset_f1(source, [stats_a[source][i] for i in picks]) - _subset_f1(source, [stats_b[source][i] for i in picks])
            deltas[source].append(delta)
            total += delta
        deltas["mean"].append(total / len(SOURCES))
    observed = {source: _subset_f1(source, stats_a[source]) - _subset_f1(source, stats_b[source]) for source in SOURCES}
    observed["mean"] = sum(observed.values()) / len(SOURCES)
    result = {}
    for key, values in deltas.items():
        values.sort()
        result[key] = (observed[key], values[int(0.05 * len(values))], values[int(0.95 * len(values)) - 1])
    return result


def format_bootstrap(label: str, result: dict) -> str:
    cells = ", ".join(f"{key} {d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for key, (d, lo, hi) in result.items())
    return f"  bootstrap F1 {label}: {cells}"


def mean_f1(scores: dict) -> float:
    return sum(scores[source].f1 for source in SOURCES) / len(SOURCES)


def main() -> int:
    from thresher.pipeline.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", default=str(DATA / "crawl"), help="folder of the dev crawl's WARC files")
    parser.add_argument("--ground-truth", default=str(DATA / "extraction" / "ground-truth.json"), help="ground-truth JSON")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help=f"stage 1 variants to clean and score: {', '.join(THRESHER)}, or any extraction cached in {WORK} (its file name without .json)",
    )
    parser.add_argument("--thresholds", nargs="+", type=float, help="clutter thresholds (default: the configured select.line_thresholds.clutter)")
    parser.add_argument(
        "--with-origins", action="store_true", help="also score fastText models that see the line origins (stage 1 does not store them)"
    )
    parser.add_argument("--stage1-cpu", action="store_true", help="only time stage 1's extraction with each of --variants")
    parser.add_argument(
        "--train-on",
        choices=list(THRESHER),
        help="train the cross-validated line models on this variant's lines (as the shipped model, trained on "
        "stage 1's extraction, would meet a changed extraction) instead of each variant's own",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["fasttext"],
        choices=("fasttext", "line_sequence"),
        help="line models to cross-validate (default: fasttext); with two or more, each later one is compared with the first by a paired bootstrap",
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fastText option, e.g. dim=16")
    parser.add_argument("--sequence-param", action="append", default=[], metavar="KEY=VALUE", help="line_sequence option, e.g. hidden=64")
    parser.add_argument("--resamples", type=int, default=500, help="paired bootstrap resamples (default: 500)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    cache = WORK
    if args.smoke:  # stage 1's variant and both line models (the bootstrap compares them), trained briefly
        announce()
        data, cache = tiny_data(), scratch_directory()
        args.crawl, args.ground_truth = str(data / "crawl"), str(data / "extraction" / "ground-truth.json")
        args.variants, args.backends, args.resamples = [DEFAULT_VARIANTS[-1]], ["fasttext", "line_sequence"], 20
        args.param = ["quantize=false", *args.param]
        args.sequence_param = ["epochs=1", "buckets=1024", *args.sequence_param]

    import yaml

    from bench.build_clutter_model import MODEL_PARAMS, SEQUENCE_PARAMS

    unknown = sorted(set(args.variants) - set(THRESHER) - set(cached_variants(cache)))
    if unknown:
        parser.error(f"unknown variants {unknown}: name one of {', '.join(THRESHER)} or an extraction cached in {cache}")
    config = load_config(str(REPO / "configs" / "default.yaml"))
    thresholds = args.thresholds or [config.select.line_thresholds["clutter"]]
    params = {
        "fasttext": {**MODEL_PARAMS, **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.param)}},
        "line_sequence": {**SEQUENCE_PARAMS, **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.sequence_param)}},
    }
    needed = [*BASELINES, *args.variants]
    if args.stage1_cpu or not all((cache / f"{name}.json").exists() for name in needed):
        pages = load_pages(Path(args.crawl), Path(args.ground_truth))
    else:
        pages = pages_from_truth(Path(args.ground_truth), set(json.loads((cache / f"{args.variants[0]}.json").read_text(encoding="utf-8"))))
    if args.stage1_cpu:
        for name, ms in stage1_cpu(pages, args.variants).items():
            print(f"{name}: {ms:.1f} ms CPU per page ({THRESHER[name]})")
        return 0
    counts = {source: sum(p.source == source for p in pages) for source in SOURCES}
    print(f"dev pages: {len(pages)} {counts}; folds: {FOLDS} by URL hash; " + "; ".join(f"{b} {params[b]}" for b in args.backends))
    header = "| extraction | trafilatura snippets P R F1 | magic-html bigram P R F1 | magic article | magic forum | scrapinghub shingles P R F1 | mean F1 |"
    print(header)
    print("|" + "---|" * 7)
    baseline_texts = {}
    for name in BASELINES:
        baseline_texts[name] = {url: r["text"] for url, r in extract_variant(name, pages, cache).items()}
        scores = score(pages, baseline_texts[name])
        print(format_row(name, scores) + f" {mean_f1(scores):.4f} |", flush=True)
    for name in args.variants:
        extraction = extract_variant(name, pages, cache)
        cpu = sum(r["cpu_s"] for r in extraction.values()) / len(extraction)
        scores = score(pages, {url: r["text"] for url, r in extraction.items()})
        print(format_row(f"{name} (stage 1, {cpu * 1000:.0f} ms CPU/page)", scores) + f" {mean_f1(scores):.4f} |", flush=True)
        training = extract_variant(args.train_on, pages, cache) if args.train_on else None
        trained = f" trained on {args.train_on}" if args.train_on else ""
        runs = [(backend, False) for backend in args.backends] + ([("fasttext", True)] if args.with_origins else [])
        reference = None
        for backend, use_origins in runs:
            cleaned, stats = cross_validated_cleaning(pages, extraction, thresholds, params[backend], use_origins, training, backend)
            per_doc = stats["scoring_cpu_s"] / stats["documents"] * 1000
            for threshold in thresholds:
                label = f"{name} + {backend}{' (with origins)' if use_origins else ''}{trained} @ {threshold:g}, CV"
                scores = score(pages, cleaned[threshold])
                print(format_row(label, scores) + f" {mean_f1(scores):.4f} |", flush=True)
            print(
                f"  ({stats['labelled_lines']} labelled lines, {stats['keep_lines']} keep; training {stats['train_cpu_s']:.0f} s CPU "
                f"for {FOLDS} folds; clutter scoring {per_doc:.2f} ms CPU/document)",
                flush=True,
            )
            if reference is None:
                # the first backend at the configured threshold (or the first one given)
                reference = (backend, cleaned.get(config.select.line_thresholds["clutter"], cleaned[thresholds[0]]))
                continue
            for threshold in thresholds:
                against = [(f"{reference[0]}", reference[1]), ("trafilatura_default", baseline_texts["trafilatura_default"])]
                for other, texts in against:
                    result = paired_bootstrap(pages, cleaned[threshold], texts, args.resamples)
                    print(format_bootstrap(f"{backend} @ {threshold:g} minus {other}", result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
