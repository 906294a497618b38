"""MinHash signature throughput at 2048 hashes: thresher's numpy path beside datasketch's fastest.

    .venv/bin/python bench/bench_minhash_speed.py [--docs N] [--repeats R]

Same texts, same tokens, same shingle hash (pipeline.rules.minhash.shingle_hash32) for both; datasketch is
also timed with its default sha1_hash32. One process, one core. Signatures are checked bit-identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from datasketch import MinHash

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.pipeline.rules.minhash import MinHasher, shingle_hash32, shingles, tokenize  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def best_rate(function, count, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="documents from the DCLM files")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data, args.docs, args.repeats = tiny_data(), 10, 1
    dclm = data / "quality" / "dclm"
    texts = [json.loads(line)["text"] for name in ("agreement", "majority") for line in (dclm / f"{name}_data.jsonl").open()]
    texts = texts[: args.docs]
    tokens = [tokenize(text, "en") for text in texts]
    shingle_bytes = [[s.encode() for s in shingles(t, 5)] for t in tokens]
    hasher = MinHasher(2048, seed=1, ngram=5)

    ours = [hasher.signature(t) for t in tokens]
    reference = MinHash.bulk(shingle_bytes, num_perm=2048, seed=1, hashfunc=shingle_hash32)
    identical = all(np.array_equal(a, b.hashvalues) for a, b in zip(ours, reference, strict=True))

    rate_ours = best_rate(lambda: [hasher.signature(t) for t in tokens], len(tokens), args.repeats)
    rate_ours_text = best_rate(lambda: [hasher.signature_of_text(t, "en") for t in texts], len(texts), args.repeats)
    rate_ds_same = best_rate(
        lambda: MinHash.bulk(shingle_bytes, num_perm=2048, seed=1, hashfunc=shingle_hash32), len(texts), args.repeats
    )

    def datasketch_update_batch():
        for batch in shingle_bytes:
            MinHash(num_perm=2048, seed=1, hashfunc=shingle_hash32).update_batch(batch)

    rate_ds_batch = best_rate(datasketch_update_batch, len(texts), args.repeats)
    rate_ds_sha1 = best_rate(lambda: MinHash.bulk(shingle_bytes, num_perm=2048, seed=1), len(texts), args.repeats)
    mean_shingles = sum(map(len, shingle_bytes)) / len(shingle_bytes)
    print(f"documents: {len(texts)}, mean 5-shingles per document: {mean_shingles:.0f}, 2048 hashes, 1 core")
    print(f"bit-identical to datasketch (same seed, perms, hashfunc): {identical}")
    print(f"thresher MinHasher.signature (tokens in):        {rate_ours:8.1f} docs/s")
    print(f"thresher signature_of_text (normalize+tokenize): {rate_ours_text:8.1f} docs/s")
    print(
        f"datasketch MinHash.bulk, same shingle hash:      {rate_ds_same:8.1f} docs/s  (x{rate_ours / rate_ds_same:.2f})"
    )
    print(
        f"datasketch update_batch, same shingle hash:      {rate_ds_batch:8.1f} docs/s  (x{rate_ours / rate_ds_batch:.2f})"
    )
    print(
        f"datasketch MinHash.bulk, default sha1_hash32:    {rate_ds_sha1:8.1f} docs/s  (x{rate_ours / rate_ds_sha1:.2f})"
    )


if __name__ == "__main__":
    main()
