"""The export's plan: which split each document goes to, its seeded order, and where each packed row lands.

- Each document goes to train or validation by a seeded hash of its doc_id alone, so every copy of
  a document lands in the same split.
- Each document copy gets a seeded 63-bit key; sorting by it is a seeded shuffle of the documents,
  and `key % ranges` deals them into independent packing ranges.
- `permute` is a seeded bijection of [0, n): a sequence's position in the shuffled split, computed
  from its index alone, so the global shuffle needs no global sort. The position gives the shard
  (`ShardPlan`) and the row in it.

Everything here is a pure function of doc_ids, counts and the seed, never of how the input is
partitioned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from thresher.pipeline.seeded_hash import hash64
from thresher.schemas.export_wire import PLACED

SPLITS = ("train", "validation")  # split codes 0 and 1


def is_validation(doc_id: str, seed: int, validation_fraction: float) -> bool:
    """Whether `doc_id` belongs to the validation split (depends on doc_id and seed only)."""
    return hash64("split", seed, doc_id) < validation_fraction * 2.0**64


def document_key(doc_id: str, copy_index: int, seed: int) -> int:
    """The seeded, non-negative 63-bit sort key of one copy of a document."""
    return hash64("order", seed, doc_id, copy_index) >> 1


def _mix64(x: np.ndarray, key: int) -> np.ndarray:
    """splitmix64's finaliser over uint64 `x` xor `key`: the Feistel round function."""
    with np.errstate(over="ignore"):
        z = x ^ np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def permute(indices: np.ndarray, n: int, seed: int, rounds: int = 6) -> np.ndarray:
    """A seeded bijection of [0, n) applied to `indices`: a Feistel network with cycle walking.

    Each index maps to its own position without materialising the permutation, so positions of
    a billion sequences can be computed in pieces, anywhere.
    """
    indices = np.asarray(indices, dtype=np.uint64)
    if n <= 1:
        return indices.astype(np.int64)
    half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half_bits) - 1)
    keys = [hash64("permute", seed, n, r) for r in range(rounds)]

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half_bits), x & mask
        for key in keys:
            left, right = right, left ^ (_mix64(right, key) & mask)
        return (left << np.uint64(half_bits)) | right

    out = feistel(indices)
    outside = out >= np.uint64(n)
    while outside.any():  # cycle walking: the domain is at most 4n, so this ends in a few steps
        out[outside] = feistel(out[outside])
        outside = out >= np.uint64(n)
    return out.astype(np.int64)


def shuffle_seed(seed: int, split: str) -> int:
    """The `permute` seed of a split: row i of the split (ranges in order) goes to permute(i, n, this)."""
    return hash64("shuffle", seed, split)


@dataclass(frozen=True)
class ShardPlan:
    """Where the sequence at shuffled position `pos` of a split goes: a shard and a row in it."""

    sequences: int  # in the split
    sequences_per_shard: int

    @staticmethod
    def for_split(sequences: int, capacity: int, shard_tokens: int) -> ShardPlan:
        return ShardPlan(sequences, max(1, shard_tokens // capacity))

    @property
    def shards(self) -> int:
        return -(-self.sequences // self.sequences_per_shard)

    def shard_sequences(self, shard: int) -> int:
        return min(self.sequences_per_shard, self.sequences - shard * self.sequences_per_shard)


def shard_path(split: str, shard: int) -> str:
    """A shard's path relative to the output directory."""
    return f"{split}/shard-{shard:05d}.parquet"


@dataclass(frozen=True)
class Placement:
    """What a task needs to place packed rows: per split, the rows before each range, and the plan."""

    range_starts: dict[int, dict[int, int]]  # split code -> range_id -> index of its first row
    plans: dict[int, ShardPlan]  # split code -> plan
    seed: int

    def positions(self, split: int, range_ids: np.ndarray, seq_index: np.ndarray) -> np.ndarray:
        starts = self.range_starts[split]
        canonical = np.fromiter((starts[r] for r in range_ids.tolist()), dtype=np.int64, count=len(range_ids))
        canonical += seq_index
        return permute(canonical, self.plans[split].sequences, shuffle_seed(self.seed, SPLITS[split]))


def place_batches(batches: Iterator[pa.RecordBatch], placement: Placement) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PACKED rows -> PLACED rows."""
    for batch in batches:
        splits = batch.column("split").to_numpy()
        ranges = batch.column("range_id").to_numpy()
        seq_index = batch.column("seq_index").to_numpy()
        pos = np.empty(len(batch), dtype=np.int64)
        shard = np.empty(len(batch), dtype=np.int32)
        for split in np.unique(splits).tolist():
            rows = splits == split
            pos[rows] = placement.positions(split, ranges[rows], seq_index[rows])
            shard[rows] = pos[rows] // placement.plans[split].sequences_per_shard
        yield pa.RecordBatch.from_arrays(
            [batch.column("split"), pa.array(shard), pa.array(pos), batch.column("file"), batch.column("start"),
             batch.column("doc_offsets")],
            schema=PLACED,
        )
