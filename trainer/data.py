"""Streaming reader of token shards (schemas/tokens.py): seeded order, split by rank, resumable at any world size.

The unit of reading is one Parquet row group; only the row group being consumed is in memory.
Each epoch, the seed and epoch number shuffle the order of the shards, of the row groups inside
each shard, and of the rows inside each row group; concatenated, the epochs form one global
stream of sequences that does not depend on the number of ranks. Reading is in global
micro-batches: `next_rows(count)` on each of W ranks takes the next count x W sequences of the
stream, rank r the r-th block of count, so ranks never read the same sequence and the step's
sequences are the same whatever W (at one rank, the stream itself). The position is one number,
the global count of sequences consumed (`state_dict()`); a reader at any world size loaded with
it continues the same stream, so a run resumed on another number of ranks sees no sequence
twice and skips none. Every rank reads (and discards most of) the row groups its blocks fall in:
token rows are cheap to read next to a training step.
"""

from __future__ import annotations

import bisect
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir import COMMITTED_MARKER, PARTS_LIST
from thresher.schemas.tokens import MANIFEST_FORMAT


def read_manifest(data_dir: str | Path) -> dict:
    """The manifest.json of a shards directory (or the manifest file itself), with its format checked."""
    path = Path(data_dir)
    if path.is_dir():
        path = path / "manifest.json"
    if (path.parent / PARTS_LIST).exists() and not (path.parent / COMMITTED_MARKER).exists():
        raise ConfigError(f"{path.parent} is an export cut short (no {COMMITTED_MARKER} marker): rerun thresher export")
    if not path.is_file():
        raise ConfigError(f"--data {data_dir}: no manifest.json there: point it at a thresher export directory")
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
        metadata = [pq.ParquetFile(path).metadata for path in self.shard_paths]
        self.rows_per_group = [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in metadata]
        self.epoch_rows = sum(map(sum, self.rows_per_group))
        if self.epoch_rows == 0:
            raise ValueError(f"{split}: the shards hold no sequences")
        self.seed, self.rank, self.world_size, self.loop = seed, rank, world_size, loop
        self.sequences_read = 0  # global: all ranks' sequences, all epochs
        self._epoch: tuple[int, list[tuple[int, int]], list[int]] | None = None  # epoch, its units, their first rows
        self._unit: tuple[int, int, torch.Tensor] | None = None  # epoch, unit index, its rows shuffled

    def state_dict(self) -> dict[str, int]:
        return {"sequences_read": self.sequences_read}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sequences_read = int(state["sequences_read"])

    def _epoch_units(self, epoch: int) -> tuple[list[tuple[int, int]], list[int]]:
        """The epoch's (shard, row group) units in reading order, and the stream offset where each starts."""
        rng = random.Random(f"{self.seed}/{epoch}")
        shard_order = list(range(len(self.shard_paths)))
        rng.shuffle(shard_order)
        units, starts, offset = [], [], 0
        for shard in shard_order:
            row_groups = list(range(len(self.rows_per_group[shard])))
            rng.shuffle(row_groups)
            for row_group in row_groups:
                units.append((shard, row_group))
                starts.append(offset)
                offset += self.rows_per_group[shard][row_group]
        return units, starts

    def _unit_rows(self, epoch: int, index: int, unit: tuple[int, int]) -> torch.Tensor:
        if self._unit is None or self._unit[:2] != (epoch, index):
            shard, row_group = unit
            table = pq.ParquetFile(self.shard_paths[shard]).read_row_group(row_group, columns=["tokens"])
            rows = token_rows(table, self.seq_len)
            generator = torch.Generator().manual_seed(hash_ints(self.seed, epoch, shard, row_group))
            self._unit = (epoch, index, rows[torch.randperm(len(rows), generator=generator)])
        return self._unit[2]

    def _stream(self, start: int, count: int) -> list[torch.Tensor]:
        """Rows start ... start + count - 1 of the global stream (cut at the first epoch's end without loop)."""
        end = start + count if self.loop else min(start + count, self.epoch_rows)
        taken, position = [], start
        while position < end:
            epoch, offset = divmod(position, self.epoch_rows)
            if self._epoch is None or self._epoch[0] != epoch:
                self._epoch = (epoch, *self._epoch_units(epoch))
            _, units, starts = self._epoch
            index = bisect.bisect_right(starts, offset) - 1
            rows = self._unit_rows(epoch, index, units[index])
            chunk = rows[offset - starts[index]:offset - starts[index] + end - position]
            taken.append(chunk)
            position += len(chunk)
        return taken

    def next_rows(self, count: int) -> torch.Tensor | None:
        """This rank's `count` sequences [count, seq_len + 1] (int64) of the next global micro-batch of
        count x world_size; fewer at the end of a non-looping reader, None when it has nothing left."""
        taken = self._stream(self.sequences_read + self.rank * count, count)
        self.sequences_read += count * self.world_size
        return torch.cat(taken) if taken else None


def hash_ints(*values: int) -> int:
    """A 63-bit seed from a few integers (FNV-1a style), the same in every process and Python version."""
    seed = 1469598103934665603
    for value in values:
        seed = ((seed ^ (value & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return seed
