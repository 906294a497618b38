"""Rebuild the shipped clutter model (classifiers/default_models/clutter/) from the dev set.

Stage 1 extracts each dev page of the crawl as `thresher prepare` does (pipeline.prepare.extract); each line
is labelled keep/clutter against the page's ground truth (classifiers.line_labels); every non-blank
line is written as a clutter-task training row (bench/work/clutter-labels.jsonl, not in the
repository; lines the ground truth says nothing about have no label: context for a model over the
page's lines, skipped by fastText) and `thresher classifiers train --task clutter --backend BACKEND`
fits the model.

    .venv/bin/python bench/build_clutter_model.py [--backend fasttext] [--output classifiers/default_models/clutter]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

DATA = REPO.parent / "shared" / "data"

# fastText options of the shipped model, chosen with bench/bench_extraction.py (cross-validated):
# 50 epochs and dim 16 score as well as dim 32; quantizing keeps the model near 1 MB.
MODEL_PARAMS = {"epoch": 25, "lr": 0.5, "dim": 16, "wordNgrams": 2, "bucket": 100_000, "minCount": 1, "quantize": True}
# line_sequence options over classifiers/line_sequence.py's DEFAULT_PARAMS, which are the best
# cross-validated variant (bench/RESULTS.md, "Issue 14, third pass": epochs 6, length_weight 0.5); it ties
# the fastText model, which stays the shipped backend.
SEQUENCE_PARAMS: dict = {}
SHIPPED_BACKEND = "fasttext"


def main() -> int:
    from bench.bench_extraction import label_rows, load_pages
    from thresher.classifiers.base import METRICS_NAME
    from thresher.jobs import classifier_cli as cli
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.extract import decode_html, extract_with_origins

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crawl", default=str(DATA / "crawl"), help="folder of the dev crawl's WARC files")
    parser.add_argument("--ground-truth", default=str(DATA / "extraction" / "ground-truth.json"), help="ground-truth JSON")
    parser.add_argument("--labels", default=str(REPO / "bench" / "work" / "clutter-labels.jsonl"), help="training rows to write")
    parser.add_argument("--output", default=str(REPO / "classifiers" / "default_models" / "clutter"), help="model directory")
    parser.add_argument(
        "--backend", choices=("fasttext", "line_sequence"), default=SHIPPED_BACKEND, help=f"line model (default: {SHIPPED_BACKEND})"
    )
    add_smoke_flag(parser)
    args = parser.parse_args()
    chosen = MODEL_PARAMS if args.backend == "fasttext" else SEQUENCE_PARAMS
    if args.smoke:  # never over the shipped model; unquantized, which trains in a fraction of the time
        announce()
        data, work = tiny_data(), scratch_directory()
        args.crawl, args.ground_truth = str(data / "crawl"), str(data / "extraction" / "ground-truth.json")
        args.labels, args.output = str(work / "clutter-labels.jsonl"), str(work / "clutter")
        chosen = {**chosen, "quantize": False} if args.backend == "fasttext" else {**chosen, "epochs": 1}

    pages = load_pages(Path(args.crawl), Path(args.ground_truth))
    thread_posts = load_config(str(REPO / "configs" / "default.yaml")).prepare.thread_posts
    extraction = {}
    for page in pages:
        html = decode_html(page.payload, page.charset).html
        text, origins = extract_with_origins(html, page.url, thread_posts=thread_posts if thread_posts.enabled else None)
        extraction[page.url] = {"text": text, "origins": origins}
    rows = label_rows(pages, extraction, context=True)
    labels = Path(args.labels)
    labels.parent.mkdir(parents=True, exist_ok=True)
    with labels.open("w", encoding="utf-8") as out:
        for row in rows:
            # stage 1 does not store line origins (they did not help, see bench/RESULTS.md), so the
            # model must not learn them either
            out.write(json.dumps({**row, "origin": ""}, ensure_ascii=False) + "\n")
    labelled = sum(row["label"] is not None for row in rows)
    print(f"{labelled} labelled lines ({len(rows)} with context) from {len(pages)} pages -> {labels}", file=sys.stderr)
    params = [f"--param={key}={json.dumps(value)}" for key, value in chosen.items()]
    status = cli.main(["train", "--task", "clutter", "--backend", args.backend, "--data", str(labels), "--output", args.output, *params])
    # metrics.json names the training data relative to the model, so that `thresher classifiers eval
    # classifiers/default_models/clutter` finds it in any checkout after this script has run there
    metrics_path = Path(args.output) / METRICS_NAME
    metrics = json.loads(metrics_path.read_text())
    metrics["data"] = [os.path.relpath(labels.resolve(), Path(args.output).resolve())]
    metrics_path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
