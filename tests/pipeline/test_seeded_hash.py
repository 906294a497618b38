"""The one seeded-hash recipe reproduces, bit for bit, the values each old copy gave: they decide
which documents a sample takes, the export's split, order and shard placement, and the report's samples."""

from __future__ import annotations

import hashlib

import numpy as np

from thresher.pipeline.export.plan import document_key, is_validation, shuffle_seed
from thresher.pipeline.seeded_hash import hash64, unit_hash

KEYS = ["doc-a", "文档", "doc/\udcff", "", "x" * 300]


def _old_packing_hash64(*parts: object) -> int:  # pipeline/packing.py before the shared module
    data = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _old_unit_hash(seed: int, key: str) -> float:  # classifiers/base.py before the shared module
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _old_report_hash64(text: str) -> int:  # pipeline/report.py's sample order
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def test_every_old_recipe_is_reproduced():
    for seed in (0, 7, 2**40):
        for key in KEYS:
            assert hash64("order", seed, key, 3) == _old_packing_hash64("order", seed, key, 3)
            assert unit_hash(seed, key) == _old_unit_hash(seed, key)
            assert hash64(key) == _old_report_hash64(key)


def test_values_recorded_before_the_change_still_come_out():
    # Printed by the pre-change code (commit c7c73a3): export order keys, permutation and shuffle seeds, unit hashes.
    assert document_key("doc-a", 0, 7) == 886422839622500438
    assert document_key("文档", 2, 0) == 2803268573078688248
    assert hash64("permute", 3, 100, 1) == 14150159900962842006
    assert shuffle_seed(0, "train") == 9210687515970194785
    assert is_validation("doc-a", 7, 0.5)
    assert unit_hash(0, "a") == 0.08533998760926992
    assert unit_hash(42, "doc/\udcff") == 0.8358131995350715
    assert hash64("doc-a") == 14072285520848675134


def test_unit_hash_is_uniform_and_stable():
    values = [unit_hash(0, str(i)) for i in range(4000)]
    assert all(0 <= v < 1 for v in values)
    assert abs(np.mean(values) - 0.5) < 0.02
    assert unit_hash(0, "a") == unit_hash(0, "a") != unit_hash(1, "a")
