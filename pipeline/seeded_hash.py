"""Seeded hashing: the one recipe behind every choice thresher makes "at random" yet repeatably
(which documents a sample or a fold takes, ties at a cut, the export's split, order, permutation
and shard shuffle, the report's samples).

A key is its parts as text, joined by a separator and encoded as UTF-8 (lone surrogates passed,
so any doc_id hashes), hashed with BLAKE2b to 8 bytes: the same on every machine, in every
process and Python version (unlike `hash()`). Two readings of those bytes decide outputs today
and are kept bit for bit:

- `hash64(*parts)`: parts joined by U+001F, the digest read little-endian (export, report);
- `unit_hash(seed, key)`: "<seed>\\x00<key>", read big-endian and scaled to [0, 1) (classifiers).
"""

from __future__ import annotations

import hashlib
from typing import Literal

PART_SEPARATOR = "\x1f"
UNIT_SEPARATOR = "\x00"


def hash64(*parts: object, separator: str = PART_SEPARATOR, byteorder: Literal["little", "big"] = "little") -> int:
    """The unsigned 64-bit hash of `parts` (each turned into text) joined by `separator`."""
    data = separator.join(str(part) for part in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), byteorder)


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from `seed` and `key`: the same on every machine and in every run."""
    return hash64(seed, key, separator=UNIT_SEPARATOR, byteorder="big") / 2**64
