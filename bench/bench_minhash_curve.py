"""LSH detection curve at 2048 hashes = 128 bands x 16 rows, measured against 1-(1-J^16)^128.

    .venv/bin/python bench/bench_minhash_curve.py [--pairs N]

Pairs are generated at a known Jaccard similarity of the pipeline's own 5-shingle sets (shared
prefix, disjoint tails; the exact Jaccard of each pair's shingle hashes is what the theory uses).
Unrelated documents: every pair of the 780 DCLM documents, flagged when they share a band key.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.pipeline.rules.minhash import MinHasher, band_keys, collision_probability, tokenize  # noqa: E402

DATA = REPO.parent / "shared" / "data"
LEVELS = (0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def pair_at(rng, jaccard, length=300, ngram=5):
    shingles_per_doc = length - ngram + 1
    k = round(shingles_per_doc * (1 - jaccard) / (1 + jaccard))  # J = (S - k) / (S + k)
    prefix = [f"w{rng.randrange(10**9)}" for _ in range(length - k)]
    return prefix + [f"a{rng.randrange(10**9)}" for _ in range(k)], prefix + [
        f"b{rng.randrange(10**9)}" for _ in range(k)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000, help="generated pairs per Jaccard level")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.pairs = tiny_data(), 5
    hasher = MinHasher(2048, seed=1, ngram=5)
    rng = random.Random(0)
    print(f"{'J target':>8} {'J mean':>7} {'theory':>7} {'flagged':>8} {'|diff|':>7}")
    worst = 0.0
    for target in LEVELS:
        flagged, expected, jaccards = 0, 0.0, []
        for _ in range(args.pairs):
            left, right = pair_at(rng, target)
            a, b = set(hasher.shingle_hashes(left).tolist()), set(hasher.shingle_hashes(right).tolist())
            jaccard = len(a & b) / len(a | b)
            jaccards.append(jaccard)
            expected += collision_probability(jaccard, 128, 16) / args.pairs
            keys_left = band_keys(hasher.signature(left), 128, 16)
            flagged += bool(np.any(keys_left == band_keys(hasher.signature(right), 128, 16)))
        rate = flagged / args.pairs
        worst = max(worst, abs(rate - expected))
        print(f"{target:8.2f} {np.mean(jaccards):7.3f} {expected:7.3f} {rate:8.3f} {abs(rate - expected):7.3f}")
    print(f"largest |flagged - theory|: {worst:.3f} ({args.pairs} pairs per level)")

    # The two DCLM files share documents: keep one copy of each text.
    texts = list(
        dict.fromkeys(
            json.loads(line)["text"]
            for name in ("agreement", "majority")
            for line in (data / "quality" / "dclm" / f"{name}_data.jsonl").open()
        )
    )
    shingle_sets, buckets = [], defaultdict(list)
    for index, text in enumerate(texts):
        tokens = tokenize(text, "en")
        shingle_sets.append(set(hasher.shingle_hashes(tokens).tolist()))
        for band, key in enumerate(band_keys(hasher.signature(tokens), 128, 16).tolist()):
            buckets[(band, key)].append(index)
    flagged_pairs = {(i, j) for members in buckets.values() for i in members for j in members if i < j}
    total = len(texts) * (len(texts) - 1) // 2

    def jaccard(i, j):
        return len(shingle_sets[i] & shingle_sets[j]) / max(1, len(shingle_sets[i] | shingle_sets[j]))

    unrelated = [(i, j) for i, j in flagged_pairs if jaccard(i, j) < 0.5]
    print(f"distinct DCLM documents: {len(texts)}, pairs: {total}")
    print(
        f"flagged pairs: {len(flagged_pairs)} ({len(flagged_pairs) / total:.5%}); of them with true Jaccard < 0.5: "
        f"{len(unrelated)} ({len(unrelated) / total:.5%} of all pairs)"
    )
    for i, j in sorted(flagged_pairs)[:3]:
        print(f"  flagged: J={jaccard(i, j):.2f} {texts[i][:50]!r} / {texts[j][:50]!r}")


if __name__ == "__main__":
    main()
