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

Extraction: stage 1 (`thresher_comments_posts_line20`) and `trafilatura_default`, from
bench/bench_extraction.py's cache (bench/work/extraction/, made there when missing).

    .venv/bin/python bench/bench_clutter_guards.py [--quick] [--smoke]
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


def model_scores(pages, extraction, rows, train_urls: set[str], score_urls: list[str], params: dict) -> dict[str, np.ndarray]:
    """Line P(keep) of each page in `score_urls` from a model trained on the labelled lines of `train_urls`
    (cached in bench/work/clutter-guards/ by training pages, scored pages and options)."""
    import hashlib
    import json

    from bench.bench_extraction import WORK, train_lines
    from thresher.classifiers.clutter import line_scores

    key = hashlib.sha256(json.dumps([sorted(train_urls), score_urls, params], sort_keys=True).encode()).hexdigest()[:16]
    cached = WORK.parent / "clutter-guards" / f"{key}.json"
    if cached.exists():
        scored = json.loads(cached.read_text())
    else:
        model = train_lines([row for row in rows if row["url"] in train_urls], params)
        scored = line_scores([extraction[url]["text"] for url in score_urls], model)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(scored))
    return {url: np.array([np.nan if s is None else s for s in doc], float) for url, doc in zip(score_urls, scored, strict=True)}


def choose(gains: dict[tuple, list[float]]) -> tuple:
    """The setting with the best mean gain among those with no gain under -TOLERANCE; else the best
    worst gain. Ties: the earlier setting of the grid (lower threshold, more protective guards)."""
    safe = [s for s, g in gains.items() if min(g) >= -TOLERANCE]
    if safe:
        return max(safe, key=lambda s: sum(gains[s]) / len(gains[s]))
    return max(gains, key=lambda s: min(gains[s]))


def main() -> int:
    from bench.build_clutter_model import MODEL_PARAMS
    from thresher.pipeline.prepare.extraction_eval import cv_splits
    from thresher.pipeline.select.batches import remove_lines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (a smoke run of the procedure)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fastText option over the shipped ones")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # the small grid on tiny generated pages, every cache in a scratch directory
        import bench.bench_extraction as extraction_bench

        announce()
        extraction_bench.DATA, extraction_bench.WORK = tiny_data(), scratch_directory() / "extraction"
        args.quick = True
    import yaml

    from bench.bench_extraction import DATA, SOURCES, WORK, extract_variant, label_rows, load_pages, pages_from_truth

    params = {**MODEL_PARAMS, **{k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.param)}}
    truth = DATA / "extraction" / "ground-truth.json"
    if all((WORK / f"{name}.json").exists() for name in (STAGE1, BASELINE)):
        import json

        pages = pages_from_truth(truth, set(json.loads((WORK / f"{STAGE1}.json").read_text(encoding="utf-8"))))
    else:
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

    outer: dict[str, np.ndarray] = {}
    chosen: dict[str, tuple] = {}
    for held in SOURCES:
        train_sources = [s for s in SOURCES if s != held]
        train_urls = [url for s in train_sources for url in urls_of[s]]
        outer.update(model_scores(pages, extraction, rows, set(train_urls), urls_of[held], params))
        inner: dict[str, np.ndarray] = {}
        for fit, rest in cv_splits(train_urls, FOLDS):
            inner.update(model_scores(pages, extraction, rows, fit, sorted(rest), params))
        gains = {s: [stage1.source_f1(src, inner, s) - base_f1[src] for src in train_sources] for s in grid}
        chosen[held] = choose(gains)
        print(f"  held out {held}: chose {describe(chosen[held])} (inner gains {[round(g, 4) for g in gains[chosen[held]]]})", flush=True)

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

    print("\n| held-out source -> | trafilatura snippets F1 | magic-html bigram F1 | scrapinghub shingle F1 | mean F1 | mean gain vs plain |")
    print("|---|---|---|---|---|---|")
    base_mean = sum(base_f1.values()) / len(SOURCES)
    for label, f1 in rows_out:
        mean = sum(f1[s] for s in SOURCES) / len(SOURCES)
        print(f"| {label} | " + " | ".join(f"{f1[s]:.4f} ({f1[s] - base_f1[s]:+.4f})" for s in SOURCES) + f" | {mean:.4f} | {mean - base_mean:+.4f} |")
    print("\nchosen per held-out source: " + "; ".join(f"{s}: {describe(chosen[s])}" for s in SOURCES))
    top = sorted(all_gains, key=lambda s: -sum(all_gains[s]))[:8]
    print("best mean gains on the held-out scores (not the rule; for reading):")
    for s in top:
        print(f"  {describe(s)}: " + ", ".join(f"{g:+.4f}" for g in all_gains[s]) + f"; mean {sum(all_gains[s]) / 3:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
