"""Clutter removal's threshold and guards (pipeline.select.batches.LineGuards) by leave-one-source-out
cross-validation on the extraction dev set (issue 25).

The dev set has three sources (trafilatura snippets, magic-html, scrapinghub), each scored as its own
benchmark scores it (bench/bench_extraction.py `score`). For each held-out source S:

- the outer line model (fastText, the shipped options of bench/build_clutter_model.py) is trained on
  the lines of the other two sources' pages only and scores S's lines;
- the threshold and guard settings are chosen on the other two sources alone, from out-of-fold
  scores (5 folds by URL hash inside those two sources: inner models that never saw the page), by
  the rule `choose`: the best mean F1 gain over plain trafilatura among the settings at or above it
  on both sources (or, when none is, the setting whose worst gain is best);
- S is cleaned with the outer model and the chosen setting, and scored.

No page is scored by a model or a setting that saw its source. The last row applies the same rule to
the held-out (outer) scores of all three sources: the setting shipped as the defaults.

With --context the same nested run is also made for two more line models: the HTML-context model
(the shipped input followed by bench/bench_extraction_limits.py `html_context_tokens`: the tag and the
class/id words of the line's element and its ancestors) and the average of its P(keep) and the
shipped-input model's; with their held-out line AUC, the snippets' precision / recall, and the CPU
per page of html_context_tokens beside stage 1's own on the same pages.

Extraction: stage 1 (`thresher_comments_posts_line20`) and `trafilatura_default`, from
bench/bench_extraction.py's cache (bench/work/extraction/, made there when missing).

    .venv/bin/python bench/bench_clutter_guards.py [--context] [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

STAGE1 = "thresher_comments_posts_line20"
BASELINE = "trafilatura_default"
FOLDS = 5

# threshold 0: no line removed (stage 1 alone). Guard values listed most protective first: exact ties
# between settings (common: most guards change few dev pages) go to the more protective one.
THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
DOMINANT = (0.3, 0.5, 1.0)
PROSE = (15, 25, 40, 0)
TABLE = (300, 1000, 0)
CAP = (0.3, 0.5, 0.7, 0.9, 1.0)
TOLERANCE = 0.001  # "at or above plain trafilatura": a gain of -0.001 or more (stage 1 alone: -0.0001 on scrapinghub)


def settings(quick: bool = False) -> list[tuple]:
    """(threshold, dominant_share, prose_min_words, table_min_chars, max_removed_share) of the grid."""
    if quick:
        return list(itertools.product((0.05, 0.2), (1.0, 0.5), (0, 25), (0, 300), (1.0, 0.5)))
    return list(itertools.product(THRESHOLDS, DOMINANT, PROSE, TABLE, CAP))


def describe(setting: tuple) -> str:
    threshold, dominant, prose, table, cap = setting[:5]
    if threshold == 0:
        return "@ 0 (no line removed)"
    if len(setting) > 5 and not setting[5]:
        return f"@ {threshold:g}, no guards"
    parts = [f"@ {threshold:g}"]
    parts.append(f"dominant>{dominant:g}" if dominant < 1 else "no dominant")
    parts.append(f"prose>={prose}w" if prose else "no prose")
    parts.append(f"table>={table}c" if table else "no table")
    parts.append(f"cap {cap:g}" if cap < 1 else "no cap")
    return ", ".join(parts)


class PageLines:
    """One page's lines as arrays, so that a setting's removal mask is a few numpy operations."""

    def __init__(self, text: str):
        from thresher.pipeline.lexicon import ends_sentence, estimated_words
        from thresher.pipeline.select.batches import TABLE_CELL

        self.lines = text.split("\n")
        stripped = [line.strip() for line in self.lines]
        self.chars = np.array([len(line) for line in stripped], float)
        self.total = self.chars.sum()
        self.words = np.array([estimated_words(line) for line in stripped])
        self.ends = np.array([bool(line) and ends_sentence(line) for line in stripped])
        self.table = np.array([line.startswith("|") or TABLE_CELL in line for line in stripped])

    def mask(self, scores: np.ndarray, setting: tuple) -> np.ndarray:
        """Lines removed: the same decisions as pipeline.select.batches.remove_lines (asserted in `main`)."""
        threshold, dominant, prose, table, cap = setting[:5]
        never_empty = setting[5] if len(setting) > 5 else True
        going = scores < threshold  # NaN (blank line) compares False
        if dominant < 1:
            going &= ~(self.chars > dominant * self.total)
        if table:
            going &= ~((self.chars >= table) & self.table)
        if prose:
            going &= ~((self.words >= prose) & self.ends)
        if going.any() and (self.chars[going].sum() > cap * self.total or (never_empty and self.chars[going].sum() >= self.total)):
            going[:] = False
        return going


def guards_of(setting: tuple):
    from thresher.pipeline.select.batches import LineGuards

    _, dominant, prose, table, cap = setting[:5]
    never_empty = setting[5] if len(setting) > 5 else True
    return LineGuards(dominant_share=dominant, prose_min_words=prose, table_min_chars=table, max_removed_share=cap, never_empty=never_empty)


class Scorer:
    """Per-page scoring inputs of cleaned texts, memoized on (page, removal mask)."""

    def __init__(self, pages, extraction):
        self.pages = {page.url: page for page in pages}
        self.lines = {url: PageLines(extraction[url]["text"]) for url in self.pages}
        self.memo: dict[tuple[str, bytes], object] = {}

    def page_stat(self, url: str, going: np.ndarray):
        key = (url, np.packbits(going).tobytes())
        if key not in self.memo:
            lines = self.lines[url].lines
            text = "\n".join(line for line, gone in zip(lines, going, strict=True) if not gone)
            self.memo[key] = page_stat(self.pages[url], text.strip() if going.any() else text)
        return self.memo[key]

    def source_f1(self, source: str, scores: dict[str, np.ndarray], setting: tuple | None) -> float:
        urls = [url for url, page in self.pages.items() if page.source == source]
        stats = []
        for url in urls:
            going = np.zeros(len(self.lines[url].lines), bool) if setting is None else self.lines[url].mask(scores[url], setting)
            stats.append(self.page_stat(url, going))
        return subset_f1(source, stats)


def page_stat(page, text: str):
    from thresher.pipeline.prepare import extraction_eval as ev

    if page.source == "trafilatura":
        return ev.snippet_counts(text, page.truth["with"], page.truth["without"])
    if page.source == "magic_html":
        return ev.bigram_prf(page.truth["content"], text)
    return ev.shingle_tp_fp_fn(page.truth["articleBody"], text)


def subset_f1(source: str, stats: list) -> float:
    from bench.bench_extraction import _subset_f1

    return _subset_f1(source, stats)


def model_scores(extraction, rows, train_urls: set[str], score_urls: list[str], params: dict,
                 context: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """Line P(keep) of each page in `score_urls` from a model trained on the labelled lines of `train_urls`
    (cached in bench/work/clutter-guards/ by training pages, scored pages, options and input). The input
    is the shipped one (classifiers.clutter.line_input without stage 1's origins); with `context`
    ({url: html_context_tokens of its lines}), the line's HTML context tokens follow it."""
    import hashlib
    import json

    from bench.bench_extraction import WORK
    from thresher.classifiers.clutter import KEEP, line_input
    from thresher.classifiers.fasttext_backend import FastTextClassifier

    def model_input(url: str, line: str, index: int, count: int) -> str:
        shipped = line_input(line, index, count)
        more = context[url][index] if context else ""
        return f"{shipped} {more}" if more else shipped

    # the shipped input keeps the cache key of the runs before --context existed
    key_parts = [sorted(train_urls), score_urls, params] + (["html_context_tokens"] if context else [])
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    cached = WORK.parent / "clutter-guards" / f"{key}.json"
    if cached.exists():
        scored = json.loads(cached.read_text())
    else:
        train = [row for row in rows if row["url"] in train_urls]
        model = FastTextClassifier.train([model_input(r["url"], r["text"], r["line_index"], r["line_count"]) for r in train],
                                         [r["label"] for r in train], params, seed=0)
        inputs, where = [], []
        scored = []
        for doc, url in enumerate(score_urls):
            lines = extraction[url]["text"].split("\n")
            scored.append([None] * len(lines))
            for index, line in enumerate(lines):
                if line.strip():
                    inputs.append(model_input(url, line, index, len(lines)))
                    where.append((doc, index))
        for (doc, index), value in zip(where, model.label_scores(inputs, KEEP) if inputs else [], strict=True):
            scored[doc][index] = float(value)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(scored))
    return {url: np.array([np.nan if s is None else s for s in doc], float) for url, doc in zip(score_urls, scored, strict=True)}


def averaged(*found: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The mean P(keep) of several models' scores of the same pages (blank lines stay NaN)."""
    return {url: np.mean([scores[url] for scores in found], axis=0) for url in found[0]}


def nested(score, stage1: Scorer, base_f1: dict[str, float], urls_of: dict[str, list[str]], grid: list[tuple]):
    """The nested leave-one-source-out run of one line model: `score(train_urls, score_urls)` gives the
    line scores of a model trained on `train_urls`. Returns the outer (held-out) scores of every page,
    the setting chosen for each held-out source on the other two, and its inner gains there."""
    from bench.bench_extraction import SOURCES
    from thresher.pipeline.prepare.extraction_eval import cv_splits

    outer: dict[str, np.ndarray] = {}
    chosen: dict[str, tuple] = {}
    inner_gains: dict[str, list[float]] = {}
    for held in SOURCES:
        train_sources = [s for s in SOURCES if s != held]
        train_urls = [url for s in train_sources for url in urls_of[s]]
        outer.update(score(set(train_urls), urls_of[held]))
        inner: dict[str, np.ndarray] = {}
        for fit, rest in cv_splits(train_urls, FOLDS):
            inner.update(score(fit, sorted(rest)))
        gains = {s: [stage1.source_f1(src, inner, s) - base_f1[src] for src in train_sources] for s in grid}
        chosen[held] = choose(gains)
        inner_gains[held] = gains[chosen[held]]
    return outer, chosen, inner_gains


def line_aucs(rows, source_of: dict[str, str], outer: dict[str, np.ndarray]) -> dict[str, float]:
    """Line AUC (keep as the positive class) of held-out scores, per source and over all labelled lines."""
    from bench.bench_extraction import SOURCES
    from thresher.classifiers.metrics import roc_auc

    pairs: dict[str, list[tuple[bool, float]]] = {source: [] for source in (*SOURCES, "all")}
    for row in rows:
        value = outer[row["url"]][row["line_index"]]
        pairs[source_of[row["url"]]].append((row["label"] == "keep", value))
        pairs["all"].append((row["label"] == "keep", value))
    return {key: roc_auc([keep for keep, _ in found], [value for _, value in found]) for key, found in pairs.items()}


def context_cpu(pages, extraction, rounds: int = 2) -> tuple[float, float, int]:
    """(stage 1 CPU ms per page, html_context_tokens CPU ms per page, pages): over the pages stage 1
    keeps text of, interleaved page by page so that load on a shared machine hits both alike; the best
    of `rounds`. Stage 1 is decoding plus `extract_with_origins` with its shipped options."""
    import time

    from bench.bench_extraction import THREAD_POSTS, THRESHER
    from bench.bench_extraction_limits import html_context_tokens
    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import decode_html, extract_with_origins

    kept = [page for page in pages if extraction[page.url]["text"].strip()]
    posts = ThreadPostsConfig(**THREAD_POSTS[STAGE1][1])
    best_stage1 = best_context = float("inf")
    for _ in range(rounds):
        stage1 = context = 0.0
        for page in kept:
            started = time.process_time()
            html = decode_html(page.payload, page.charset).html
            text, _ = extract_with_origins(html, page.url, THRESHER[STAGE1], posts)
            middle = time.process_time()
            html_context_tokens(html, text.split("\n"))
            context += time.process_time() - middle
            stage1 += middle - started
        best_stage1, best_context = min(best_stage1, stage1), min(best_context, context)
    return best_stage1 * 1000 / len(kept), best_context * 1000 / len(kept), len(kept)


def choose(gains: dict[tuple, list[float]]) -> tuple:
    """The setting with the best mean gain among those with no gain under -TOLERANCE; else the best
    worst gain. Ties: the earlier setting of the grid (lower threshold, more protective guards)."""
    safe = [s for s, g in gains.items() if min(g) >= -TOLERANCE]
    if safe:
        return max(safe, key=lambda s: sum(gains[s]) / len(gains[s]))
    return max(gains, key=lambda s: min(gains[s]))


def main() -> int:
    from bench.build_clutter_model import MODEL_PARAMS
    from thresher.pipeline.select.batches import remove_lines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (a smoke run of the procedure)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fastText option over the shipped ones")
    parser.add_argument("--context", action="store_true",
                        help="also the HTML-context line model and its average with the shipped-input one, and html_context_tokens' CPU cost")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # the small grid on tiny generated pages, every cache in a scratch directory
        import bench.bench_extraction as extraction_bench

        announce()
        extraction_bench.DATA, extraction_bench.WORK = tiny_data(), scratch_directory() / "extraction"
        args.quick = args.context = True
    import yaml

    from bench.bench_extraction import DATA, SOURCES, WORK, extract_variant, label_rows, load_pages, pages_from_truth

    params = {**MODEL_PARAMS, **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.param)}}
    if args.smoke:  # quantizing takes seconds a model, even on tiny input
        params["quantize"] = False
    truth = DATA / "extraction" / "ground-truth.json"
    if not args.context and all((WORK / f"{name}.json").exists() for name in (STAGE1, BASELINE)):
        import json

        pages = pages_from_truth(truth, set(json.loads((WORK / f"{STAGE1}.json").read_text(encoding="utf-8"))))
    else:  # the HTML is needed (extraction, or the context tokens)
        pages = load_pages(DATA / "crawl", truth)
    extraction = extract_variant(STAGE1, pages, WORK)
    baseline = extract_variant(BASELINE, pages, WORK)
    rows = label_rows(pages, extraction)
    grid = settings(args.quick)
    source_of = {page.url: page.source for page in pages}
    urls_of = {source: [page.url for page in pages if page.source == source] for source in SOURCES}
    stage1 = Scorer(pages, extraction)
    plain = Scorer(pages, baseline)
    base_f1 = {source: plain.source_f1(source, {}, None) for source in SOURCES}
    stage1_f1 = {source: stage1.source_f1(source, {}, None) for source in SOURCES}
    print(f"dev pages {len(pages)} {({s: len(u) for s, u in urls_of.items()})}; {len(grid)} settings; fastText {params}", flush=True)

    def shipped_input(train_urls, score_urls):
        return model_scores(extraction, rows, train_urls, score_urls, params)

    models = {"shipped input": shipped_input}
    if args.context:
        import time

        from bench.bench_extraction_limits import html_context_tokens
        from thresher.pipeline.prepare.extract import decode_html

        started = time.perf_counter()
        context = {page.url: html_context_tokens(decode_html(page.payload, page.charset).html, extraction[page.url]["text"].split("\n"))
                   for page in pages}
        print(f"html_context_tokens of {len(pages)} pages: {time.perf_counter() - started:.0f} s", flush=True)

        def context_input(train_urls, score_urls):
            return model_scores(extraction, rows, train_urls, score_urls, params, context)

        models["HTML context"] = context_input
        models["shipped input and HTML context, averaged"] = lambda train_urls, score_urls: averaged(
            shipped_input(train_urls, score_urls), context_input(train_urls, score_urls))
    runs = {}
    for name, score in models.items():
        runs[name] = nested(score, stage1, base_f1, urls_of, grid)
        outer, chosen, inner_gains = runs[name]
        for held in SOURCES:
            print(f"  {name}: held out {held}: chose {describe(chosen[held])} (inner gains {[round(g, 4) for g in inner_gains[held]]})", flush=True)
    outer, chosen, _ = runs["shipped input"]

    shipped_before = (0.05, 1.0, 0, 0, 1.0, False)  # select's setting before issue 25: threshold 0.05, no guards
    # the array masks make the same decisions as remove_lines itself
    for url in list(outer)[:60]:
        for setting in (chosen[source_of[url]], (0.5, 0.3, 15, 300, 0.5), shipped_before, (0.3, 1.0, 0, 0, 1.0)):
            cleaned = remove_lines(extraction[url]["text"], [None if np.isnan(x) else x for x in outer[url]], setting[0], guards_of(setting))
            assert sorted(cleaned.removed_index) == list(np.flatnonzero(stage1.lines[url].mask(outer[url], setting))), url

    rows_out = [
        ("plain trafilatura (`trafilatura_default`)", base_f1),
        ("stage 1, no line removal", stage1_f1),
        ("stage 1 + clutter @ 0.05, no guards (before)", {s: stage1.source_f1(s, outer, shipped_before) for s in SOURCES}),
        ("stage 1 + clutter, setting chosen on the other two sources (nested)", {s: stage1.source_f1(s, outer, chosen[s]) for s in SOURCES}),
    ]
    all_gains = {s: [stage1.source_f1(src, outer, s) - base_f1[src] for src in SOURCES] for s in grid}
    final = choose(all_gains)
    rows_out.append((f"stage 1 + clutter, {describe(final)} (rule on all three held-out scores: shipped)", {s: stage1.source_f1(s, outer, final) for s in SOURCES}))
    removing = choose({s: g for s, g in all_gains.items() if s[0] > 0})
    rows_out.append((f"stage 1 + clutter, {describe(removing)} (the same rule over settings that remove lines: guard defaults)",
                     {s: stage1.source_f1(s, outer, removing) for s in SOURCES}))
    for fixed in ((0.05, 0.5, 0, 0, 1.0), (0.05, 0.5, 25, 300, 0.5), (0.02, 0.5, 25, 300, 0.3), (0.01, 0.5, 25, 300, 0.3)):
        rows_out.append((f"stage 1 + clutter, {describe(fixed)}", {s: stage1.source_f1(s, outer, fixed) for s in SOURCES}))
    guard_defaults = (0.02, 0.3, 25, 300, 0.3)  # the shipped guards at the recommended threshold
    for name in list(runs)[1:]:
        other_outer, other_chosen, _ = runs[name]
        rows_out.append((f"stage 1 + clutter, {name} model, setting chosen on the other two sources (nested)",
                         {s: stage1.source_f1(s, other_outer, other_chosen[s]) for s in SOURCES}))
        for fixed in (shipped_before, (0.05, 0.3, 25, 300, 0.3), guard_defaults):
            rows_out.append((f"stage 1 + clutter, {name} model, {describe(fixed)}", {s: stage1.source_f1(s, other_outer, fixed) for s in SOURCES}))

    print("\n| held-out source -> | trafilatura snippets F1 | magic-html bigram F1 | scrapinghub shingle F1 | mean F1 | mean gain vs plain |")
    print("|---|---|---|---|---|---|")
    base_mean = sum(base_f1.values()) / len(SOURCES)
    for label, f1 in rows_out:
        mean = sum(f1[s] for s in SOURCES) / len(SOURCES)
        print(f"| {label} | " + " | ".join(f"{f1[s]:.4f} ({f1[s] - base_f1[s]:+.4f})" for s in SOURCES) + f" | {mean:.4f} | {mean - base_mean:+.4f} |")
    print("\nchosen per held-out source: " + "; ".join(f"{s}: {describe(chosen[s])}" for s in SOURCES))
    for name in list(runs)[1:]:
        print(f"chosen per held-out source, {name}: " + "; ".join(f"{s}: {describe(runs[name][1][s])}" for s in SOURCES))
    if args.context:
        print("\nheld-out line AUC (snippets / magic-html / scrapinghub / all), each source scored by the model of the other two:")
        for name, (found, _, _) in runs.items():
            auc = line_aucs(rows, source_of, found)
            print(f"  {name}: " + " / ".join(f"{auc[key]:.3f}" for key in (*SOURCES, "all")))
        print("snippets held out, precision / recall (what the fourth pass lost was recall):")
        print(f"  stage 1: {snippet_pr(stage1, {}, None)}")
        for name, (found, picked, _) in runs.items():
            for label, setting in (("nested choice", picked["trafilatura"]), (describe(shipped_before), shipped_before),
                                   (describe(guard_defaults), guard_defaults)):
                print(f"  {name}, {label}: {snippet_pr(stage1, found, setting)}")
        stage1_ms, context_ms, kept = context_cpu(pages, extraction)
        print(f"CPU per kept page ({kept} pages, best of 2 interleaved rounds): stage 1 (decode + extract_with_origins) {stage1_ms:.1f} ms, "
              f"html_context_tokens {context_ms:.1f} ms: +{100 * context_ms / stage1_ms:.0f}% (limit +20%)")
    top = sorted(all_gains, key=lambda s: -sum(all_gains[s]))[:8]
    print("best mean gains on the held-out scores (not the rule; for reading):")
    for s in top:
        print(f"  {describe(s)}: " + ", ".join(f"{g:+.4f}" for g in all_gains[s]) + f"; mean {sum(all_gains[s]) / 3:+.4f}")
    return 0


def snippet_pr(stage1: Scorer, scores: dict[str, np.ndarray], setting: tuple | None) -> str:
    """Precision / recall over the snippet pages' cleaned texts."""
    from thresher.pipeline.prepare import extraction_eval as ev

    urls = [url for url, page in stage1.pages.items() if page.source == "trafilatura"]
    stats = [stage1.page_stat(url, np.zeros(len(stage1.lines[url].lines), bool) if setting is None else stage1.lines[url].mask(scores[url], setting))
             for url in urls]
    found = ev.snippet_scores(stats)
    return f"{found.precision:.3f} / {found.recall:.3f}"


if __name__ == "__main__":
    sys.exit(main())
