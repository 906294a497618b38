"""MinHash: bit-identical to datasketch, and the LSH detection curve at 2048 = 128 x 16."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from datasketch import MinHash

from thresher.pipeline.rules.minhash import (
    MinHasher,
    band_keys,
    collision_probability,
    combine_token_hashes,
    shingle_hash32,
    shingles,
    token_hash32,
    tokenize,
)


@pytest.fixture(scope="module")
def hasher():
    return MinHasher(2048, seed=1, ngram=5)


def test_shingle_hash_matches_its_vectorised_form():
    tokens = ["the", "quick", "brown", "fox", "jumps", "over"]
    hashes = np.array([token_hash32(t.encode()) for t in tokens], dtype=np.uint32)
    vectorised = combine_token_hashes(hashes, 5)
    assert [shingle_hash32(s.encode()) for s in shingles(tokens, 5)] == vectorised.tolist()


@pytest.mark.parametrize("seed", [1, 7])
def test_signatures_bit_identical_to_datasketch(shared_data, seed):
    english = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:8]
    chinese = [json.loads(line)["text"] for line in (shared_data / "quality/chinesewebtext/clean.jsonl").open()][:4]
    hasher = MinHasher(2048, seed=seed, ngram=5)
    for text, lang in [*((t, "en") for t in english), *((t, "zh") for t in chinese), ("two words", "en")]:
        tokens = tokenize(text, lang)
        reference = MinHash(num_perm=2048, seed=seed, hashfunc=shingle_hash32)
        reference.update_batch([s.encode() for s in shingles(tokens, 5)])
        assert np.array_equal(hasher.signature(tokens), reference.hashvalues)


def test_empty_document_has_datasketch_empty_signature(hasher):
    assert np.array_equal(hasher.signature([]), MinHash(num_perm=2048, seed=1).hashvalues)


def test_collision_probability_matches_design_numbers():
    assert collision_probability(0.8, 128, 16) == pytest.approx(0.974, abs=0.001)
    assert 0.5 < collision_probability(0.75, 128, 16) and collision_probability(0.72, 128, 16) < 0.5


def _pair_at(rng, jaccard, length=300, ngram=5):
    """Two token lists whose 5-shingle sets have Jaccard close to `jaccard`: a shared prefix and
    disjoint tails (tokens drawn from a vocabulary large enough that shingles never repeat)."""
    shingles_per_doc = length - ngram + 1
    # shared = S - k, union = S + k  =>  J = (S - k) / (S + k)
    k = round(shingles_per_doc * (1 - jaccard) / (1 + jaccard))
    prefix = [f"w{rng.randrange(10**9)}" for _ in range(length - k)]
    return prefix + [f"a{rng.randrange(10**9)}" for _ in range(k)], prefix + [f"b{rng.randrange(10**9)}" for _ in range(k)]


def _flagged(hasher, left, right):
    return bool(np.any(band_keys(hasher.signature(left), 128, 16) == band_keys(hasher.signature(right), 128, 16)))


def test_detection_curve_follows_theory(hasher):
    rng = random.Random(0)
    pairs = 80
    for target in (0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        flagged, expected = 0, 0.0
        for _ in range(pairs):
            left, right = _pair_at(rng, target)
            a, b = set(hasher.shingle_hashes(left).tolist()), set(hasher.shingle_hashes(right).tolist())
            expected += collision_probability(len(a & b) / len(a | b), 128, 16) / pairs
            flagged += _flagged(hasher, left, right)
        # 80 pairs: binomial standard error up to 0.056; allow 3.5 of them (the bench runs 1,000 pairs at 0.05).
        tolerance = 3.5 * math.sqrt(max(expected * (1 - expected), 0.01) / pairs) + 0.01
        assert abs(flagged / pairs - expected) <= tolerance, (target, flagged / pairs, expected)


def test_unrelated_real_documents_are_not_flagged(hasher, shared_data):
    rows = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/majority_data.jsonl").open()][:150]
    keys = [band_keys(hasher.signature(tokenize(text, "en")), 128, 16) for text in rows]
    flagged = sum(
        bool(np.any(keys[i] == keys[j])) for i in range(len(keys)) for j in range(i + 1, len(keys))
    )
    pairs = len(keys) * (len(keys) - 1) // 2
    assert flagged / pairs < 0.001
