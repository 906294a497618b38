"""A top-50% quality cut on DCLM's human labels: does it keep more label-1 than label-0 documents?

agreement_data.jsonl (281 documents where the annotators agreed) is a subset of majority_data.jsonl
(499), so the quality model is trained with `thresher classifiers train --task plain` on
majority_data minus every document whose text (SHA-256) is in agreement_data; it then scores the 281
agreement documents, none of which it saw, and `pipeline.select.mix.top_fraction_cut` keeps the top
half by P(label 1), as the select step's global percentile rule does.

    .venv/bin/python bench/bench_quality_cut.py [--fraction 0.5] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.classifiers.base import load_classifier  # noqa: E402
from thresher.classifiers.metrics import classification_metrics  # noqa: E402
from thresher.pipeline.select.mix import top_fraction_cut  # noqa: E402

DCLM = REPO.parent / "shared" / "data" / "quality" / "dclm"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.5, help="fraction of documents the cut keeps (default: 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for training, hold-out split and tie-breaks (default: 0)")
    parser.add_argument("--work", help="directory for the training file and the model (default: a temporary one)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    dclm = DCLM
    if args.smoke:
        announce()
        dclm = tiny_data() / "quality" / "dclm"
    if not dclm.is_dir():
        print(f"DCLM data not found at {dclm}", file=sys.stderr)
        return 1
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        return run(Path(args.work), args.fraction, args.seed, dclm)
    with tempfile.TemporaryDirectory(prefix="bench_quality_cut_") as work:
        return run(Path(work), args.fraction, args.seed, dclm)


def run(work: Path, fraction: float, seed: int, dclm: Path = DCLM) -> int:
    agreement = read_jsonl(dclm / "agreement_data.jsonl")
    majority = read_jsonl(dclm / "majority_data.jsonl")
    held_out = {text_hash(row["text"]) for row in agreement}
    train_rows = [row for row in majority if text_hash(row["text"]) not in held_out]
    train_file = work / "majority_minus_agreement.jsonl"
    train_file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in train_rows), encoding="utf-8")
    model_dir = work / "quality"
    command = ["classifiers", "train", "--task", "plain", "--data", str(train_file), "--output", str(model_dir), "--seed", str(seed)]
    print(f"majority_data: {len(majority)} docs; {len(majority) - len(train_rows)} also in agreement_data dropped by text hash; "
          f"training on {len(train_rows)} ({sum(str(r['label']) == '1' for r in train_rows)} labelled 1)")
    print("$ thresher " + " ".join(command))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "thresher.jobs.classifier_cli", *command[1:]], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)

    model = load_classifier(model_dir)
    texts = [row["text"] for row in agreement]
    labels = [str(row["label"]) for row in agreement]
    probs = model.predict_proba(texts)
    scores = probs[:, model.labels.index("1")].tolist()
    keys = [text_hash(text) for text in texts]
    cut = top_fraction_cut(scores, keys, fraction, seed)
    kept = [cut.keeps(score, key) for score, key in zip(scores, keys, strict=True)]
    metrics = classification_metrics(labels, model.labels, probs)
    print(f"agreement_data: {len(texts)} unseen docs, AUC {metrics['auc']:.3f}, accuracy {metrics['accuracy']:.3f}")
    print(f"top {fraction:.0%} cut: P(1) >= {cut.threshold:.4f}, {cut.kept} of {len(texts)} kept")
    shares = {}
    for label in ("1", "0"):
        rows = [k for k, y in zip(kept, labels, strict=True) if y == label]
        shares[label] = sum(rows) / len(rows)
        print(f"  label {label}: {sum(rows)} of {len(rows)} kept = {shares[label]:.3f}")
    print(f"label-1 share kept - label-0 share kept = {shares['1'] - shares['0']:+.3f} (must be > 0)")
    return 0 if shares["1"] > shares["0"] else 1


if __name__ == "__main__":
    sys.exit(main())
