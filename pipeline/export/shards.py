"""Writing token shards (schemas/tokens.py SHARD) as Parquet, streaming, one row group at a time.

A shard goes straight to its committed name in the export's directory, a local path or any fsspec URL,
through fsspec: on an object store it is one object, which appears whole when its upload completes (a
task that fails discards its upload); the job names every shard in the commit's `_PARTS` before any is
written, and readers trust only the `_COMMITTED` marker, so no reader sees a half-committed export.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.pipeline.export.plan import SPLITS, ShardPlan, shard_path
from thresher.pipeline.export.spill import WRITE_BLOCK_BYTES, SpillReader
from thresher.pipeline.stagedir import is_local, storage
from thresher.schemas.export_wire import WRITTEN, list_array
from thresher.schemas.tokens import SHARD


class ShardWriter:
    """One shard file: rows are buffered up to `row_group_sequences`, then written as a row group.

    Memory holds at most one row group plus the incoming batch, whatever the shard's size.
    """

    def __init__(self, path: str | os.PathLike, row_group_sequences: int):
        self.path = str(path)
        fs, located = storage(path)
        fs.makedirs(located.rsplit("/", 1)[0], exist_ok=True)  # a local directory; nothing on an object store
        self.row_group_sequences = row_group_sequences
        self._file = fs.open(located, "wb", block_size=WRITE_BLOCK_BYTES)
        # Tokens are near-uniform ids: dictionaries and min/max statistics buy nothing; zstd still does.
        self._writer = pq.ParquetWriter(self._file, SHARD, compression="zstd", use_dictionary=False,
                                        write_statistics=False)
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self.sequences = 0
        self.tokens = 0
        self.size = 0  # bytes, once closed

    def write(self, batch: pa.RecordBatch) -> None:
        """Append SHARD rows."""
        self.sequences += batch.num_rows
        self.tokens += len(batch.column("tokens").flatten())  # flatten honours slicing
        while batch.num_rows:
            take = min(batch.num_rows, self.row_group_sequences - self._buffered)
            self._buffer.append(batch.slice(0, take))
            self._buffered += take
            batch = batch.slice(take)
            if self._buffered == self.row_group_sequences:
                self._flush()

    def _flush(self) -> None:
        if self._buffered:
            table = pa.Table.from_batches(self._buffer, schema=SHARD).combine_chunks()
            self._writer.write_table(table, row_group_size=self.row_group_sequences)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self.size = self._file.tell()
        self._file.close()  # on an object store: the upload completes, the object appears whole

    def discard(self) -> None:
        """Give up the shard (its task failed): on an object store the upload is aborted and nothing appears;
        on local disk the partial file stays at its name, which `_PARTS` names, until a retry or rerun."""
        try:
            self._writer.close()  # its footer, into what is thrown away (else the writer writes it when collected)
        except Exception:  # noqa: BLE001 - the task's own error is the one to report
            pass
        abandon(self._file)


def abandon(file) -> None:
    """Give up a file opened for writing through fsspec: on an object store the upload is aborted and nothing
    appears; on local disk the partial file stays at its name (which `_PARTS` names) until a retry or rerun."""
    if is_local(file.fs):
        file.close()
    else:
        file.discard()  # aborts a multipart upload begun; a smaller file was never sent
        file.closed = True  # closing it would upload what is left


def write_shard_batches(batches: Iterator[pa.RecordBatch], output_dir: str, spill_dir: str, capacity: int,
                        plans: dict[int, ShardPlan], row_group_sequences: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: PLACED rows sorted by (split, shard, pos) -> shard files, and a WRITTEN row for each.

    Each row's `capacity` tokens are read from its spill file in `spill_dir`. Checks that each
    shard receives exactly its planned positions, in order: a shard with a gap or a duplicate is
    an error, never a silently different file.
    """
    reader = SpillReader(spill_dir)
    try:
        yield from _write_shards(batches, output_dir, reader, capacity, plans, row_group_sequences)
    finally:
        reader.close()


def shard_runs(batch: pa.RecordBatch) -> Iterator[tuple[tuple[int, int], int, int]]:
    """((split, shard), start, end) for each run of consecutive rows of `batch` in one shard."""
    splits, shards = batch.column("split").to_numpy(), batch.column("shard").to_numpy()
    change = (np.flatnonzero((splits[1:] != splits[:-1]) | (shards[1:] != shards[:-1])) + 1).tolist()
    for start, end in zip([0, *change], [*change, batch.num_rows], strict=True):
        if start < end:
            yield (int(splits[start]), int(shards[start])), start, end


def _shard_rows(batch: pa.RecordBatch, reader: SpillReader, capacity: int) -> pa.RecordBatch:
    """PLACED rows as SHARD rows, their tokens read from the spill files."""
    values, offsets = reader.gather(batch.column("file").to_pylist(), batch.column("start").to_numpy(),
                                    np.full(batch.num_rows, capacity, dtype=np.int64))
    return pa.RecordBatch.from_arrays([list_array(values, offsets), batch.column("doc_offsets")], schema=SHARD)


def _write_shards(batches: Iterator[pa.RecordBatch], output_dir: str, reader: SpillReader, capacity: int,
                  plans: dict[int, ShardPlan], row_group_sequences: int) -> Iterator[pa.RecordBatch]:
    writer: ShardWriter | None = None
    current: tuple[int, int] | None = None
    expected_pos = 0

    def finish() -> pa.RecordBatch:
        split, shard = current
        writer.close()
        planned = plans[split].shard_sequences(shard)
        if writer.sequences != planned:
            raise RuntimeError(f"{writer.path}: {writer.sequences} sequences written, {planned} planned")
        return pa.RecordBatch.from_pylist(
            [{"split": split, "shard": shard, "path": shard_path(SPLITS[split], shard),
              "sequences": writer.sequences, "tokens": writer.tokens, "size": writer.size}],
            schema=WRITTEN,
        )

    try:
        for batch in batches:
            positions = batch.column("pos").to_numpy()
            for key, start, end in shard_runs(batch):
                if key != current:
                    if writer is not None:
                        yield finish()
                    current = key
                    writer = ShardWriter(f"{output_dir.rstrip('/')}/{shard_path(SPLITS[key[0]], key[1])}",
                                         row_group_sequences)
                    expected_pos = key[1] * plans[key[0]].sequences_per_shard
                expected = np.arange(expected_pos, expected_pos + end - start)
                if not np.array_equal(positions[start:end], expected):
                    raise RuntimeError(f"{writer.path}: positions out of order or missing near {expected_pos}")
                expected_pos += end - start
                writer.write(_shard_rows(batch.slice(start, end - start), reader, capacity))
    except BaseException:
        if writer is not None and writer.size == 0:
            writer.discard()  # the shard this attempt was writing: nothing of it appears
        raise
    if writer is not None:
        yield finish()
