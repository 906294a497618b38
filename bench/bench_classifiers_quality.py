"""Cross-validated AUC of a binary quality classifier on DCLM's human 0/1 quality labels.

Proves the training path on real labels: the same interface, reader and metrics as
`thresher classifiers train`, k-fold over ../shared/data/quality/dclm/majority_data.jsonl (499
documents; agreement_data.jsonl is the 281 of them where annotators agreed, reported separately).

    .venv/bin/python bench/bench_classifiers_quality.py [--folds 5] [--backend fasttext]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.classifiers.training import cross_validate, read_labelled  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="k of k-fold cross-validation (default: 5)")
    parser.add_argument("--backend", default="fasttext", help="classifier backend (default: fasttext)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the folds and training (default: 0)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        announce()
        args.folds = 2
    dclm = (tiny_data() if args.smoke else DATA) / "quality" / "dclm"
    for name in ("majority_data.jsonl", "agreement_data.jsonl"):
        data = read_labelled([dclm / name])
        started = time.perf_counter()
        result = cross_validate(args.backend, data, folds=args.folds, seed=args.seed)
        seconds = time.perf_counter() - started
        positives = sum(label == "1" for label in data.labels)
        print(
            f"{name}: {len(data)} docs ({positives} labelled 1), {args.backend}, {args.folds}-fold: "
            f"AUC {result['auc_mean']:.3f} +- {result['auc_std']:.3f}, accuracy {result['accuracy_mean']:.3f}, "
            f"macro-F1 {result['macro_f1_mean']:.3f}  ({seconds:.1f}s; per-fold AUC "
            + ", ".join(f"{fold['auc']:.3f}" for fold in result["per_fold"])
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
