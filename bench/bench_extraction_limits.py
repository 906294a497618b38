"""Where stage 1 + line-level clutter removal stops on the extraction dev set, and why.

Three measurements over the same pages, folds and scoring as bench/bench_extraction.py:

- `ceiling`: each benchmark's scores of the page's whole visible text (scripts and styles dropped:
  how much of the ground truth is in the HTML at all), of stage 1's text, and of stage 1's text with
  every line that the ground truth labels clutter removed (a perfect line remover).
- `curve`: the cross-validated fastText line model (the shipped parameters) trained on a share of
  each fold's training pages (a second URL hash picks them): line AUC and page scores by size.
- `context`: the same model told more than the shipped one sees: the benchmark that judges the
  page (an oracle: no run knows it), one model per benchmark (also an oracle), and the line's HTML
  context (`html_context_tokens`: the tag and the class/id words of its element and ancestors).

Every model-based figure is cross-validated by URL hash: no page is scored by a model that saw it.

    .venv/bin/python bench/bench_extraction_limits.py [--parts ceiling curve context] [--thresholds 0.02 0.05 0.1]
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from bench.bench_extraction import DATA, FOLDS, SOURCES, WORK, Page, extract_variant, load_pages, mean_f1, score  # noqa: E402

STAGE1_VARIANT = "thresher_comments_posts_line20"  # stage 1's extraction (bench_extraction.py)
SHARE_SEED = 1414  # not the folds' seed: the shares cut across folds
_NO_TEXT = ("script", "style", "noscript", "template")
_CONTEXT_DEPTH = 6  # the element and five ancestors
_WORD = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SPACE = re.compile(r"\s+")
_PROBE_CHARS = 40  # a line not equal to any element's text is looked up by this prefix

# Extra tokens of one page's lines: (page, lines) -> one string per line ("" for none).
ExtraTokens = Callable[[Page, list[str]], list[str]]


def visible_text(html: str) -> str:
    """All text of the page a reader could see: the parsed document without scripts, styles,
    noscript and template bodies."""
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return ""
    for element in tree.xpath("|".join(f"//{tag}" for tag in _NO_TEXT)):
        element.drop_tree()
    return tree.text_content()


def _class_words(value: str) -> list[str]:
    words = _WORD.split(_CAMEL.sub(" ", value).lower())
    return [word for word in words if 2 <= len(word) <= 20 and not word.isdigit()]


def _context_of(element) -> list[str]:
    tokens: list[str] = []
    for level, node in enumerate([element, *element.iterancestors()][:_CONTEXT_DEPTH]):
        if node.tag in ("html", "body"):
            break
        tokens.append(f"{'t' if level == 0 else 'a'}_{node.tag}")
        prefix = "d0_" if level == 0 else "d_"
        tokens += [prefix + word for word in _class_words(f"{node.get('class') or ''} {node.get('id') or ''}")]
    return list(dict.fromkeys(tokens))


def html_context_tokens(html: str, lines: Sequence[str]) -> list[str]:
    """For each line, tokens naming where in the HTML it came from: `t_TAG` of the innermost element
    whose whole text is the line (else the smallest one holding the line's first 40 characters),
    `a_TAG` of its ancestors, `d0_WORD`/`d_WORD` for the words of their class and id attributes,
    and `ctx_exact`/`ctx_prefix`/`ctx_none` for how the element was found. "" for blank lines."""
    from trafilatura.utils import load_html

    tree = load_html(html)
    exact, by_length = {}, []
    for element in tree.iter() if tree is not None else ():
        if not isinstance(element.tag, str) or element.tag in (*_NO_TEXT, "head", "title"):
            continue
        text = _SPACE.sub(" ", element.text_content()).strip()
        if text:
            exact[text] = element  # document order: a later (inner) element with the same text wins
            by_length.append((len(text), text, element))
    by_length.sort(key=lambda item: item[0])
    tokens = []
    for line in lines:
        wanted = _SPACE.sub(" ", line).strip()
        if not wanted:
            tokens.append("")
            continue
        element, how = exact.get(wanted), "ctx_exact"
        if element is None:
            probe, how = wanted[:_PROBE_CHARS], "ctx_prefix"
            start = bisect.bisect_left(by_length, len(probe), key=lambda item: item[0])
            element = next((e for _, text, e in by_length[start:] if probe in text), None)
        tokens.append("ctx_none" if element is None else " ".join([how, *_context_of(element)]))
    return tokens


def training_share(urls: set[str], share: float) -> set[str]:
    """The `share` of `urls` picked by a URL hash independent of the folds (1.0: all of them)."""
    from thresher.pipeline.seeded_hash import unit_hash

    return set(urls) if share >= 1 else {url for url in urls if unit_hash(SHARE_SEED, url) < share}


def cross_validated_scores(
    pages: Sequence[Page],
    lines_of: dict[str, list[str]],
    labels_of: dict[str, list[str | None]],
    params: dict,
    extra: ExtraTokens | None = None,
    share: float = 1.0,
    per_source: bool = False,
) -> dict[str, list[float | None]]:
    """P(keep) of every non-blank line of every page from a fastText line model that never saw the
    page: trained, for each fold, on the labelled lines of `share` of the other folds' pages (with
    `per_source`, one model per benchmark on its own pages). `extra` adds tokens after the line."""
    from thresher.classifiers.clutter import line_input
    from thresher.classifiers.fasttext_backend import FastTextClassifier
    from thresher.pipeline.prepare.extraction_eval import cv_splits

    def inputs(page: Page) -> list[str]:
        lines = lines_of[page.url]
        added = extra(page, lines) if extra else [""] * len(lines)
        return [f"{line_input(line, i, len(lines))} {more}".rstrip() for i, (line, more) in enumerate(zip(lines, added, strict=True))]

    model_input = {page.url: inputs(page) for page in pages}
    scores: dict[str, list[float | None]] = {}
    for train_urls, held_urls in cv_splits((page.url for page in pages), FOLDS):
        chosen = training_share(train_urls, share)
        groups = [[s] for s in SOURCES] if per_source else [list(SOURCES)]
        for sources in groups:
            train = [p for p in pages if p.url in chosen and p.source in sources]
            texts = [model_input[p.url][i] for p in train for i, label in enumerate(labels_of[p.url]) if label is not None]
            targets = [label for p in train for label in labels_of[p.url] if label is not None]
            model = FastTextClassifier.train(texts, targets, params, seed=0)
            for page in (p for p in pages if p.url in held_urls and p.source in sources):
                where = [i for i, line in enumerate(lines_of[page.url]) if line.strip()]
                found = model.label_scores([model_input[page.url][i] for i in where], "keep") if where else []
                row: list[float | None] = [None] * len(lines_of[page.url])
                for i, value in zip(where, found, strict=True):
                    row[i] = float(value)
                scores[page.url] = row
    return scores


def cleaned_texts(lines_of: dict[str, list[str]], scores: dict[str, list[float | None]], threshold: float) -> dict[str, str]:
    """Each page's text without its lines scoring under `threshold`."""
    from thresher.pipeline.select.batches import remove_lines

    return {url: remove_lines("\n".join(lines), scores[url], threshold).text for url, lines in lines_of.items()}


def aucs(pages: Sequence[Page], labels_of: dict[str, list[str | None]], scores: dict[str, list[float | None]]) -> dict[str, float]:
    """Line AUC (keep as the positive class) per benchmark and over all labelled lines."""
    from thresher.classifiers.metrics import roc_auc

    pairs: dict[str, list[tuple[float, bool]]] = {source: [] for source in SOURCES}
    for page in pages:
        for label, value in zip(labels_of[page.url], scores[page.url], strict=True):
            if label is not None and value is not None:
                pairs[page.source].append((value, label == "keep"))
    pairs["all"] = [pair for source in SOURCES for pair in pairs[source]]
    return {key: roc_auc([keep for _, keep in found], [value for value, _ in found]) for key, found in pairs.items()}


HEADER = (
    "| {what} | snippets P | R | F1 | magic-html P | R | F1 | article F1 | forum R | forum F1 | scrapinghub P | R | F1 | mean F1 |{more}\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|{dashes}"
)


def score_row(label: str, pages: Sequence[Page], texts: dict[str, str], more: str = "") -> str:
    from thresher.pipeline.prepare.extraction_eval import Scores

    s = score(list(pages), texts)
    empty = Scores(0.0, 0.0, 0.0, 0)  # a magic-html kind without pages
    article, forum = s.get("magic_html:article", empty), s.get("magic_html:forum", empty)
    figures = [*_prf(s["trafilatura"]), *_prf(s["magic_html"]), article.f1, forum.recall, forum.f1, *_prf(s["scrapinghub"])]
    return f"| {label} | {' | '.join(f'{value:.3f}' for value in figures)} | {mean_f1(s):.4f} |{more}"


def _prf(scores) -> tuple[float, float, float]:
    return scores.precision, scores.recall, scores.f1


def model_rows(label: str, pages, lines_of, labels_of, scores, thresholds) -> list[str]:
    found = aucs(pages, labels_of, scores)
    auc = " " + " / ".join(f"{found[key]:.3f}" for key in (*SOURCES, "all")) + " |"
    return [score_row(f"{label} @ {t:g}", pages, cleaned_texts(lines_of, scores, t), auc) for t in thresholds]


def main() -> int:
    from bench.build_clutter_model import MODEL_PARAMS
    from thresher.classifiers.line_labels import page_line_labels
    from thresher.pipeline.prepare.extract import decode_html

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", default=str(DATA / "crawl"), help="folder of the dev crawl's WARC files")
    parser.add_argument("--ground-truth", default=str(DATA / "extraction" / "ground-truth.json"), help="ground-truth JSON")
    parser.add_argument("--parts", nargs="+", default=["ceiling", "curve", "context"], choices=("ceiling", "curve", "context"), help="what to measure")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.02, 0.05, 0.1], help="clutter thresholds of the model rows")
    parser.add_argument("--shares", nargs="+", type=float, default=[0.25, 0.5, 0.75, 1.0], help="shares of the training pages (curve)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    params, cache = MODEL_PARAMS, WORK
    if args.smoke:
        announce()
        data, cache = tiny_data(), scratch_directory()
        args.crawl, args.ground_truth = str(data / "crawl"), str(data / "extraction" / "ground-truth.json")
        args.thresholds, args.shares, params = [0.05], [1.0], {**MODEL_PARAMS, "quantize": False}
    if not Path(args.ground_truth).is_file():
        parser.error(f"no ground truth at {args.ground_truth}: pass --ground-truth (see ../shared/data/README.md)")

    pages = load_pages(Path(args.crawl), Path(args.ground_truth))
    extraction = extract_variant(STAGE1_VARIANT, pages, cache)
    lines_of = {p.url: extraction[p.url]["text"].split("\n") for p in pages}
    labels_of = {p.url: page_line_labels(lines_of[p.url], p.source, p.truth) for p in pages}
    print(f"dev pages: {len(pages)}; stage 1 = {STAGE1_VARIANT}; folds: {FOLDS} by URL hash; fastText {params}")
    auc_header = " line AUC (snippets / magic-html / scrapinghub / all) |"
    if "ceiling" in args.parts:
        html_of = {p.url: decode_html(p.payload, p.charset).html for p in pages}
        oracle = {url: "\n".join(line for line, label in zip(lines, labels_of[url], strict=True) if label != "clutter").strip()
                  for url, lines in lines_of.items()}
        print(HEADER.format(what="text", more="", dashes=""))
        print(score_row("the page's whole visible text (recall: what the HTML holds)", pages, {u: visible_text(h) for u, h in html_of.items()}))
        print(score_row("stage 1", pages, {u: "\n".join(lines) for u, lines in lines_of.items()}))
        print(score_row("stage 1, every clutter-labelled line removed (a perfect line model)", pages, oracle), flush=True)
    if "curve" in args.parts:
        print(HEADER.format(what="training pages (share of each fold's)", more=auc_header, dashes="---|"))
        for share in args.shares:
            scores = cross_validated_scores(pages, lines_of, labels_of, params, share=share)
            print("\n".join(model_rows(f"{share:.0%}", pages, lines_of, labels_of, scores, args.thresholds)), flush=True)
    if "context" in args.parts:
        html_of = {p.url: decode_html(p.payload, p.charset).html for p in pages}
        context = {p.url: html_context_tokens(html_of[p.url], lines_of[p.url]) for p in pages}
        variants: list[tuple[str, dict]] = [
            ("line text and markers (the shipped model's input)", {}),
            ("+ the benchmark's name (oracle)", {"extra": lambda page, lines: [f"src_{page.source}"] * len(lines)}),
            ("one model per benchmark (oracle)", {"per_source": True}),
            ("+ HTML context of the line", {"extra": lambda page, lines: context[page.url]}),
        ]
        print(HEADER.format(what="model input", more=auc_header, dashes="---|"))
        for label, options in variants:
            scores = cross_validated_scores(pages, lines_of, labels_of, params, **options)
            print("\n".join(model_rows(label, pages, lines_of, labels_of, scores, args.thresholds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
