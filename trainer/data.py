"""Streaming reader of token shards (schemas/tokens.py): seeded order, split by rank, resumable.

The unit of reading is one Parquet row group; only the row group being consumed is in memory.
Each epoch, the seed and epoch number shuffle the order of the shards, of the row groups inside
each shard, and of the rows inside each row group. The epoch's row groups are dealt round-robin
to the ranks (rank r takes units r, r + world_size, ...), so ranks never read the same sequence.
The position is a small dict (`state_dict()`): epoch, index of the unit in this rank's list,
rows already taken from it. Loading it and reading on gives exactly the batches an
uninterrupted reader would have given.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from schemas.tokens import MANIFEST_FORMAT


def read_manifest(data_dir: str | Path) -> dict:
    """The manifest.json of a shards directory (or the manifest file itself), with its format checked."""
    path = Path(data_dir)
    if path.is_dir():
        path = path / "manifest.json"
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    manifest["_dir"] = str(path.parent)
    return manifest


def token_rows(table_or_batch: pa.Table | pa.RecordBatch, seq_len: int) -> torch.Tensor:
    """The `tokens` column as an int64 tensor [rows, seq_len + 1], without a Python list in between."""
    column = table_or_batch.column("tokens")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.flatten()
    if len(values) != len(column) * (seq_len + 1):
        raise ValueError(f"token rows must hold seq_len + 1 = {seq_len + 1} tokens each")
    flat = torch.frombuffer(values.buffers()[1], dtype=torch.int32, offset=values.offset * 4, count=len(values))
    return flat.view(len(column), seq_len + 1).long()


class TokenShardReader:
    """Sequences of one split in seeded order, this rank's share only.

    `loop=True` (training) starts a new, differently shuffled epoch when one ends; `loop=False`
    (validation) stops after one epoch.
    """

    def __init__(self, data_dir: str | Path, split: str = "train", seed: int = 0, rank: int = 0,
                 world_size: int = 1, loop: bool = True):
        self.manifest = read_manifest(data_dir)
        if split not in self.manifest["splits"]:
            raise ValueError(f"split {split!r} not in manifest (has {sorted(self.manifest['splits'])})")
        self.seq_len = int(self.manifest["seq_len"])
        base = Path(self.manifest["_dir"])
        self.shard_paths = [base / shard["path"] for shard in self.manifest["splits"][split]["shards"]]
        self.row_groups_per_shard = [pq.ParquetFile(path).num_row_groups for path in self.shard_paths]
        if sum(self.row_groups_per_shard) < world_size:
            raise ValueError(f"{split}: {sum(self.row_groups_per_shard)} row groups cannot feed {world_size} ranks")
        self.seed, self.rank, self.world_size, self.loop = seed, rank, world_size, loop
        self.epoch, self.unit_index, self.rows_taken = 0, 0, 0
        self._units: list[tuple[int, int]] | None = None  # this rank's (shard, row group) list for self.epoch
        self._rows: torch.Tensor | None = None  # the current unit's rows, shuffled

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "unit_index": self.unit_index, "rows_taken": self.rows_taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.unit_index, self.rows_taken = state["epoch"], state["unit_index"], state["rows_taken"]
        self._units, self._rows = None, None

    def _epoch_units(self, epoch: int) -> list[tuple[int, int]]:
        rng = random.Random(f"{self.seed}/{epoch}")
        shard_order = list(range(len(self.shard_paths)))
        rng.shuffle(shard_order)
        units = []
        for shard in shard_order:
            row_groups = list(range(self.row_groups_per_shard[shard]))
            rng.shuffle(row_groups)
            units.extend((shard, row_group) for row_group in row_groups)
        return units[self.rank::self.world_size]

    def _load_unit(self) -> None:
        shard, row_group = self._units[self.unit_index]
        rows = token_rows(pq.ParquetFile(self.shard_paths[shard]).read_row_group(row_group, columns=["tokens"]), self.seq_len)
        generator = torch.Generator().manual_seed(hash_ints(self.seed, self.epoch, shard, row_group))
        self._rows = rows[torch.randperm(len(rows), generator=generator)]

    def next_rows(self, count: int) -> torch.Tensor | None:
        """The next `count` sequences [count, seq_len + 1] (int64); fewer at the end of a non-looping
        reader, None when it has nothing left."""
        taken: list[torch.Tensor] = []
        needed = count
        while needed > 0:
            if self._units is None:
                self._units = self._epoch_units(self.epoch)
            if self.unit_index >= len(self._units):
                if not self.loop:
                    break
                self.epoch, self.unit_index, self.rows_taken = self.epoch + 1, 0, 0
                self._units, self._rows = None, None
                continue
            if self._rows is None:
                self._load_unit()
            chunk = self._rows[self.rows_taken:self.rows_taken + needed]
            taken.append(chunk)
            needed -= len(chunk)
            self.rows_taken += len(chunk)
            if self.rows_taken >= len(self._rows):
                self.unit_index, self.rows_taken, self._rows = self.unit_index + 1, 0, None
        return torch.cat(taken) if taken else None


def hash_ints(*values: int) -> int:
    """A 63-bit seed from a few integers (FNV-1a style), the same in every process and Python version."""
    seed = 1469598103934665603
    for value in values:
        seed = ((seed ^ (value & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return seed
