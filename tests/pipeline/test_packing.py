"""Packing, splits, keys and the seeded permutation, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.packing import (
    PACKED,
    RANGE_SUMMARY,
    TALLY_FIELDS,
    TALLY_RANGE,
    TOKENIZED,
    TOKENIZED_TALLIED,
    Packer,
    Placement,
    ShardPlan,
    document_key,
    is_validation,
    pack_and_summarize,
    pack_batches,
    permute,
    place_batches,
    shuffle_seed,
    tally_batch,
    with_zero_tally,
)
from pipeline.spill import SpillReader, SpillWriter

EOS, PAD = 0, 1


def make_documents(lengths, start=2):
    """Flat values and offsets of documents with distinct non-special tokens, each ending in EOS."""
    docs = []
    for i, n in enumerate(lengths):
        docs.append(np.concatenate([np.full(n - 1, start + i, dtype=np.int32), [EOS]]).astype(np.int32))
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return np.concatenate(docs), offsets


def pack_all(packer, values, offsets, batch_size):
    parts = []
    for start in range(0, len(offsets) - 1, batch_size):
        parts.append(packer.add(values, offsets[start : min(start + batch_size, len(offsets) - 1) + 1]))
    parts.append(packer.finish())
    return parts


def test_split_depends_on_doc_id_and_seed_and_has_the_configured_share():
    ids = [f"doc-{i}" for i in range(20000)]
    validation = [is_validation(d, 0, 0.1) for d in ids]
    assert 0.09 < sum(validation) / len(ids) < 0.11
    assert validation == [is_validation(d, 0, 0.1) for d in ids]
    assert validation != [is_validation(d, 1, 0.1) for d in ids]
    assert not any(is_validation(d, 0, 0.0) for d in ids)


def test_document_keys_are_63_bit_and_differ_per_copy_and_seed():
    keys = {document_key("a", c, 0) for c in range(100)}
    assert len(keys) == 100 and all(0 <= k < 2**63 for k in keys)
    assert document_key("a", 0, 0) != document_key("a", 0, 1)


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_concat_packs_full_rows_and_keeps_every_token_in_order(batch_size):
    lengths = [5, 17, 1, 9, 30, 2, 11]
    values, offsets = make_documents(lengths)
    packer = Packer(capacity=8, mode="concat", pad_id=PAD, tail="pad")
    parts = pack_all(packer, values, offsets, batch_size)
    tokens = np.concatenate([p.tokens for p in parts])
    assert tokens.shape[1] == 8
    padding = sum(int(p.padding.sum()) for p in parts)
    assert padding == 8 * len(tokens) - len(values)
    assert np.array_equal(tokens.reshape(-1)[: len(values)], values)
    assert (tokens.reshape(-1)[len(values) :] == PAD).all()
    assert sum(int(p.documents.sum()) for p in parts) == len(lengths)
    assert all((o == [0]).all() for p in parts for o in p.doc_offsets)
    # documents counted in the row where they start
    documents = np.concatenate([p.documents for p in parts])
    assert np.array_equal(documents, np.bincount(offsets[:-1] // 8, minlength=len(tokens)))


def test_tail_drop_drops_only_the_partial_row_and_counts_it():
    values, offsets = make_documents([5, 6, 7])  # 18 tokens: two rows of 8, 2 left
    packer = Packer(capacity=8, mode="concat", pad_id=PAD, tail="drop")
    parts = pack_all(packer, values, offsets, 10)
    tokens = np.concatenate([p.tokens for p in parts])
    assert len(tokens) == 2 and np.array_equal(tokens.reshape(-1), values[:16])
    assert packer.dropped_tokens == 2 and packer.dropped_documents == 0


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_boundary_mode_never_splits_a_document_that_fits_and_records_offsets(batch_size):
    lengths = [3, 4, 6, 8, 2, 20, 1, 5, 5]
    capacity = 8
    values, offsets = make_documents(lengths)
    packer = Packer(capacity=capacity, mode="boundary", pad_id=PAD, tail="pad")
    parts = pack_all(packer, values, offsets, batch_size)
    rows = np.concatenate([p.tokens for p in parts])
    row_offsets = [o for p in parts for o in p.doc_offsets]
    stream = rows.reshape(-1)
    assert np.array_equal(stream[stream != PAD], values)
    real = np.flatnonzero(stream != PAD)  # where each document token landed
    for i, n in enumerate(lengths):
        first, last = real[offsets[i]], real[offsets[i + 1] - 1]
        if n <= capacity:
            assert first // capacity == last // capacity, f"document {i} straddles rows"
        assert first % capacity in row_offsets[first // capacity].tolist()
    starts = real[offsets[:-1]]
    for row, row_offset in enumerate(row_offsets):
        in_row = {int(x) % capacity for x in starts if x // capacity == row}
        assert row_offset.tolist() == sorted({0} | in_row)
    assert all(o[0] == 0 for o in row_offsets)
    assert sum(int(p.documents.sum()) for p in parts) == len(lengths)


def test_rows_do_not_depend_on_how_documents_are_batched():
    values, offsets = make_documents([7, 3, 12, 1, 9, 4, 4, 30, 2])
    for mode in ("concat", "boundary"):
        results = []
        for batch_size in (1, 2, 5, 100):
            parts = pack_all(Packer(8, mode, PAD, "pad"), values, offsets, batch_size)
            results.append(np.concatenate([p.tokens for p in parts]))
        assert all(np.array_equal(results[0], r) for r in results[1:])


def test_packer_rejects_bad_settings():
    with pytest.raises(ValueError, match="pack mode"):
        Packer(8, mode="zigzag")
    with pytest.raises(ValueError, match="tail"):
        Packer(8, tail="keep")


@pytest.mark.parametrize("n", [1, 2, 3, 10, 255, 256, 257, 1000, 4097])
def test_permute_is_a_bijection(n):
    out = permute(np.arange(n), n, seed=7)
    assert sorted(out.tolist()) == list(range(n))


def test_permute_depends_on_seed_and_is_not_identity():
    n = 1000
    a, b = permute(np.arange(n), n, 1), permute(np.arange(n), n, 2)
    assert not np.array_equal(a, b)
    assert (a == np.arange(n)).mean() < 0.05
    assert np.array_equal(permute(np.arange(n)[::-1], n, 1), a[::-1])  # pointwise: any order, any piece


def test_shard_plan():
    plan = ShardPlan.for_split(sequences=10, capacity=100, shard_tokens=350)
    assert plan.sequences_per_shard == 3 and plan.shards == 4
    assert [plan.shard_sequences(s) for s in range(4)] == [3, 3, 3, 1]
    assert ShardPlan.for_split(5, 100, 10).sequences_per_shard == 1  # at least one sequence per shard


def tokenized_batch(rows, spill):
    """TOKENIZED rows (split, range_id, doc_key, tokens), their tokens appended to `spill` (a SpillWriter)."""
    return pa.RecordBatch.from_pylist(
        [{"split": s, "range_id": r, "doc_key": k, "content_key": 0, "file": spill.name,
          "start": spill.append(np.asarray(t, dtype=np.int32)), "length": len(t)} for s, r, k, t in rows],
        schema=TOKENIZED,
    )


def row_tokens(spill_dir, rows, capacity):
    reader = SpillReader(spill_dir)
    values, _ = reader.gather([r["file"] for r in rows], np.array([r["start"] for r in rows]),
                              np.full(len(rows), capacity))
    reader.close()
    return values.reshape(len(rows), capacity).tolist()


PACK_ROWS = [(0, 0, 1, [5, 5, 0]), (0, 0, 2, [6, 6, 6, 0]), (0, 1, 3, [7, 0]), (1, 0, 4, [8, 8, 8, 8, 8, 0])]


def test_pack_batches_packs_each_range_on_its_own_and_carries_dropped_counts(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batches = [tokenized_batch(PACK_ROWS[:2], spill), tokenized_batch(PACK_ROWS[2:], spill)]
    spill.close()
    out = pa.Table.from_batches(list(pack_batches(iter(batches), capacity=4, mode="concat", pad_id=PAD, tail="drop",
                                                  spill_dir=str(tmp_path))), schema=PACKED).to_pylist()
    kept = [r for r in out if r["start"] >= 0]
    assert [(r["split"], r["range_id"], r["seq_index"]) for r in kept] == [(0, 0, 0), (1, 0, 0)]
    assert row_tokens(tmp_path, kept, 4) == [[5, 5, 0, 6], [8, 8, 8, 8]]
    assert len({r["file"] for r in kept}) == 1 and kept[0]["file"] != spill.name  # the task's own spill file
    dropped = {(r["split"], r["range_id"]): (r["dropped_tokens"], r["dropped_documents"]) for r in out
               if r["start"] < 0}
    assert dropped == {(0, 0): (3, 0), (0, 1): (2, 1), (1, 0): (2, 0)}


def test_pack_batches_reads_each_copy_from_the_shared_tokens(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batch = tokenized_batch([(0, 0, 1, [5, 5, 0])], spill)
    spill.close()
    copies = pa.concat_batches([batch, batch.slice(0, 1)])  # a second copy: same pointer, e.g. a larger doc_key
    out = pa.Table.from_batches(list(pack_batches(iter([copies]), capacity=3, mode="concat", pad_id=PAD, tail="pad",
                                                  spill_dir=str(tmp_path))), schema=PACKED).to_pylist()
    assert row_tokens(tmp_path, out, 3) == [[5, 5, 0], [5, 5, 0]]


def test_a_missing_or_truncated_spill_file_is_an_error(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batch = tokenized_batch(PACK_ROWS, spill)
    spill.close()
    options = {"capacity": 4, "mode": "concat", "pad_id": PAD, "tail": "pad", "spill_dir": str(tmp_path)}
    path = tmp_path / spill.name
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(RuntimeError, match="ends before token"):
        list(pack_batches(iter([batch]), **options))
    path.unlink()
    with pytest.raises(FileNotFoundError):
        list(pack_batches(iter([batch]), **options))


def test_pack_and_summarize_reports_each_range_and_sums_the_tally_rows(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batches = [tokenized_batch(PACK_ROWS[:2], spill), tokenized_batch(PACK_ROWS[2:], spill)]
    spill.close()
    tallies = [tally_batch({0: [2, 3, 1, 0], 1: [1, 1, 0, 0]}, TOKENIZED_TALLIED),
               tally_batch({0: [1, 1, 4, 2]}, TOKENIZED_TALLIED)]
    # Tally rows sort first in their split (range_id -1) and may share a batch with data rows.
    tallied = [pa.concat_batches([tallies[0], with_zero_tally(batches[0], TOKENIZED_TALLIED)]),
               tallies[1], with_zero_tally(batches[1], TOKENIZED_TALLIED)]
    options = {"capacity": 4, "mode": "concat", "pad_id": PAD, "tail": "pad", "spill_dir": str(tmp_path)}
    summary = pa.Table.from_batches(list(pack_and_summarize(iter(tallied), **options)), schema=RANGE_SUMMARY)
    ranges = {(r["split"], r["range_id"]): r for r in summary.to_pylist() if r["range_id"] != TALLY_RANGE}
    counts = {key: (r["sequences"], r["documents"], r["padding"]) for key, r in ranges.items()}
    assert counts == {(0, 0): (2, 2, 1), (0, 1): (1, 1, 2), (1, 0): (2, 1, 2)}
    (packed_file,) = {r["file"] for r in ranges.values()}
    packed = pq.read_table(tmp_path / packed_file)
    assert packed.schema.equals(PACKED) and len(packed) == 5 and min(packed.column("start").to_pylist()) >= 0
    plain = pa.Table.from_batches(list(pack_batches(iter(batches), **options)), schema=PACKED)
    assert row_tokens(tmp_path, packed.to_pylist(), 4) == row_tokens(tmp_path, plain.to_pylist(), 4)
    sums = {r["split"]: [r[name] for name in TALLY_FIELDS] for r in summary.to_pylist() if r["range_id"] == TALLY_RANGE}
    assert sums == {0: [3, 4, 5, 2], 1: [1, 1, 0, 0]}


def test_place_batches_gives_each_row_a_unique_position_and_its_shard():
    plans = {0: ShardPlan(sequences=7, sequences_per_shard=3), 1: ShardPlan(sequences=0, sequences_per_shard=3)}
    placement = Placement(range_starts={0: {0: 0, 3: 4}, 1: {}}, plans=plans, seed=5)
    rows = [{"split": 0, "range_id": r, "seq_index": i, "file": "rows-x.i32", "start": 10 * i, "doc_offsets": [0],
             "documents": 1, "padding": 0, "dropped_tokens": 0, "dropped_documents": 0}
            for r, n in ((0, 4), (3, 3)) for i in range(n)]
    batch = pa.RecordBatch.from_pylist(rows, schema=PACKED)
    placed = pa.Table.from_batches(list(place_batches(iter([batch.slice(0, 2), batch.slice(2)]), placement))).to_pylist()
    positions = [p["pos"] for p in placed]
    assert sorted(positions) == list(range(7))
    assert all(p["shard"] == p["pos"] // 3 for p in placed)
    assert [p["start"] for p in placed] == [10 * i for _, n in ((0, 4), (3, 3)) for i in range(n)]  # pointers kept
    expected = permute(np.arange(7), 7, shuffle_seed(5, "train")).tolist()
    assert positions == expected  # canonical order: range 0's rows, then range 3's
