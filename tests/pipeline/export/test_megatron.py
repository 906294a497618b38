"""Megatron shards: the .idx bytes, the dtype, where each document copy goes, and the shard writer, read back with
a reader written from Megatron's published format description (tests/megatron_reader.py)."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest
from megatron_reader import read_indexed_dataset, read_prefix

from thresher.pipeline.export.megatron import (
    index_bytes,
    megatron_documents,
    megatron_dtype,
    megatron_prefix,
    token_chunks,
    write_megatron_batches,
)
from thresher.pipeline.export.plan import Placement, ShardPlan
from thresher.pipeline.export.spill import SpillWriter
from thresher.schemas.export_wire import MEGATRON_DOCUMENTS, MEGATRON_WRITTEN, PACKED_DOCUMENTS


def test_the_index_header_and_arrays_are_megatron_s_layout():
    index = index_bytes(np.dtype("<u2"), np.array([3, 1, 2]))
    header = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8) + struct.pack("<QQ", 3, 4)
    assert index[:34] == header and len(index) == 34 + 3 * 4 + 3 * 8 + 4 * 8
    dataset = read_indexed_dataset(index, bytes(12))
    assert dataset.sequence_lengths.tolist() == [3, 1, 2]
    assert dataset.sequence_pointers.tolist() == [0, 6, 8]  # bytes: uint16 tokens
    assert dataset.document_indices.tolist() == [0, 1, 2, 3]  # one sequence per document
    wide = read_indexed_dataset(index_bytes(np.dtype("<i4"), np.array([3, 1, 2])), bytes(24))
    assert wide.dtype == np.int32 and wide.sequence_pointers.tolist() == [0, 12, 16]
    assert index_bytes(np.dtype("<u2"), np.zeros(0, np.int64))[18:34] == struct.pack("<QQ", 0, 1)


def test_the_dtype_is_uint16_below_megatron_s_cardinality_bound_else_int32():
    assert megatron_dtype(1000) == np.uint16 and megatron_dtype(65_499) == np.uint16
    assert megatron_dtype(65_500) == np.int32 and megatron_dtype(152_064) == np.int32


def test_each_copy_goes_where_its_first_token_lies_and_keeps_what_the_rows_keep():
    capacity = 4
    placement = Placement(range_starts={0: {0: 0, 1: 3}}, plans={0: ShardPlan(5, 2)}, seed=3)
    # Range 0 packed 3 rows and dropped a partial fourth: a copy running into the dropped row is cut where the
    # kept rows end, one starting in it is left out.
    pieces = pa.RecordBatch.from_pylist(
        [{"split": 0, "range_id": 0, "doc_key": 1, "range_start": 0, "length": 5},
         {"split": 0, "range_id": 0, "doc_key": 2, "range_start": 5, "length": 2},
         {"split": 0, "range_id": 0, "doc_key": 3, "range_start": 7, "length": 6},
         {"split": 0, "range_id": 0, "doc_key": 4, "range_start": 13, "length": 1},
         {"split": 0, "range_id": 1, "doc_key": 5, "range_start": 0, "length": 8}], schema=PACKED_DOCUMENTS)
    rows = pa.Table.from_batches(list(megatron_documents(
        iter([pieces]), placement, capacity, range_sequences={(0, 0): 3, (0, 1): 2},
        range_rows={(0, 0): ("rows-a.i32", 100), (0, 1): ("rows-b.i32", 40)})), schema=MEGATRON_DOCUMENTS).to_pylist()
    positions = placement.positions(0, np.array([0, 0, 0, 1]), np.array([0, 1, 1, 0]))
    assert [(r["shard"], r["sequence"]) for r in rows] == [(int(p) // 2, int(p) % 2) for p in positions]
    assert [(r["file"], r["start"], r["length"], r["token_start"]) for r in rows] == [
        ("rows-a.i32", 100, 5, 0), ("rows-a.i32", 105, 2, 1), ("rows-a.i32", 107, 5, 3), ("rows-b.i32", 40, 8, 0)]


def test_token_chunks_hold_at_most_the_budget_or_one_document():
    assert token_chunks(np.array([3, 2, 4, 9, 1]), 5) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert token_chunks(np.array([3, 2]), 100) == [(0, 2)] and token_chunks(np.zeros(0, np.int64), 5) == []


def spilled_documents(spill_dir, rows):
    """MEGATRON_DOCUMENTS rows for (split, shard, sequence, token_start, tokens), the tokens spilled."""
    spill = SpillWriter(spill_dir, "rows")
    out = [{"split": split, "shard": shard, "sequence": sequence, "token_start": token_start, "file": spill.name,
            "start": spill.append(np.asarray(tokens, np.int32)), "length": len(tokens)}
           for split, shard, sequence, token_start, tokens in rows]
    spill.close()
    return pa.RecordBatch.from_pylist(out, schema=MEGATRON_DOCUMENTS)


def test_the_writer_writes_a_pair_per_shard_in_order_with_document_boundaries(tmp_path):
    documents = [(0, 0, 0, 0, [5, 6, 7, 0]), (0, 0, 0, 4, [8, 0]), (0, 0, 2, 1, [9] * 700 + [0]),
                 (0, 1, 0, 0, [65_000, 0]), (1, 0, 1, 3, [1, 2, 0])]
    batch = spilled_documents(tmp_path / "spill", documents)
    plans = {0: ShardPlan(6, 3), 1: ShardPlan(2, 3)}
    written = pa.Table.from_batches(list(write_megatron_batches(
        iter([batch.slice(0, 2), batch.slice(2)]), str(tmp_path / "out"), str(tmp_path / "spill"), np.dtype("<u2"),
        plans, batch_tokens=5)), schema=MEGATRON_WRITTEN).to_pylist()  # 5: a document or two at a time
    assert [(r["prefix"], r["documents"], r["tokens"]) for r in written] == [
        (megatron_prefix("train", 0), 3, 707), (megatron_prefix("train", 1), 1, 2),
        (megatron_prefix("validation", 0), 1, 3)]
    for row, expected in zip(written, [documents[:3], documents[3:4], documents[4:]], strict=True):
        dataset = read_prefix(tmp_path / "out" / row["prefix"])
        assert dataset.dtype == np.uint16
        assert dataset.documents() == [tokens for *_, tokens in expected]
        assert dataset.document_indices.tolist() == list(range(len(expected) + 1))
        assert row["bin_size"] == (tmp_path / "out" / f"{row['prefix']}.bin").stat().st_size == 2 * row["tokens"]
        assert row["idx_size"] == (tmp_path / "out" / f"{row['prefix']}.idx").stat().st_size


def test_the_writer_refuses_documents_out_of_order_and_ids_its_dtype_cannot_hold(tmp_path):
    plans = {0: ShardPlan(6, 3)}
    unordered = spilled_documents(tmp_path / "spill", [(0, 0, 1, 0, [1, 0]), (0, 0, 0, 2, [2, 0])])
    with pytest.raises(RuntimeError, match="documents out of order"):
        list(write_megatron_batches(iter([unordered]), str(tmp_path / "a"), str(tmp_path / "spill"),
                                    np.dtype("<u2"), plans, 100))
    wide = spilled_documents(tmp_path / "spill", [(0, 0, 0, 0, [70_000, 0])])
    with pytest.raises(ValueError, match="token id 70000 does not fit uint16"):
        list(write_megatron_batches(iter([wide]), str(tmp_path / "b"), str(tmp_path / "spill"), np.dtype("<u2"),
                                    plans, 100))
    written = list(write_megatron_batches(iter([wide]), str(tmp_path / "c"), str(tmp_path / "spill"),
                                          np.dtype("<i4"), plans, 100))
    assert read_prefix(tmp_path / "c" / megatron_prefix("train", 0)).documents() == [[70_000, 0]]
    assert written[0].column("tokens").to_pylist() == [2]
