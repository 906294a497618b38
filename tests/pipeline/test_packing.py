"""Packing, splits, keys and the seeded permutation, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.packing import (
    PACKED,
    PACKED_TALLIED,
    TALLY_FIELDS,
    TALLY_RANGE,
    TOKENIZED,
    TOKENIZED_TALLIED,
    Packer,
    Placement,
    ShardPlan,
    document_key,
    is_validation,
    pack_batches,
    pack_tallied_batches,
    permute,
    place_batches,
    shuffle_seed,
    tally_batch,
    token_bytes,
    token_parts,
    with_zero_tally,
)

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


def as_bytes(tokens):
    return np.asarray(tokens, dtype="<i4").tobytes()


def as_tokens(data):
    return np.frombuffer(data, dtype="<i4").tolist()


def tokenized_batch(rows):
    return pa.RecordBatch.from_pylist(
        [{"split": s, "range_id": r, "doc_key": k, "tokens": as_bytes(t)} for s, r, k, t in rows], schema=TOKENIZED
    )


def test_token_bytes_round_trip_including_slices_and_empty_items():
    values = np.arange(10, dtype=np.int32)
    offsets = np.array([0, 3, 3, 7, 10])
    column = token_bytes(values, offsets)
    assert [as_tokens(b) for b in column.to_pylist()] == [[0, 1, 2], [], [3, 4, 5, 6], [7, 8, 9]]
    flat, flat_offsets = token_parts(column.slice(1, 2))
    assert flat.tolist() == [3, 4, 5, 6] and flat_offsets.tolist() == [0, 0, 4]
    empty, empty_offsets = token_parts(token_bytes(values, np.array([2, 2])))
    assert len(empty) == 0 and empty_offsets.tolist() == [0, 0]


def test_pack_batches_packs_each_range_on_its_own_and_carries_dropped_counts():
    rows = [(0, 0, 1, [5, 5, 0]), (0, 0, 2, [6, 6, 6, 0]), (0, 1, 3, [7, 0]), (1, 0, 4, [8, 8, 8, 8, 8, 0])]
    batches = [tokenized_batch(rows[:2]), tokenized_batch(rows[2:])]
    out = pa.Table.from_batches(list(pack_batches(iter(batches), capacity=4, mode="concat", pad_id=PAD, tail="drop")),
                                schema=PACKED).to_pylist()
    kept = [r for r in out if r["tokens"]]
    assert [(r["split"], r["range_id"], r["seq_index"], as_tokens(r["tokens"])) for r in kept] == [
        (0, 0, 0, [5, 5, 0, 6]),
        (1, 0, 0, [8, 8, 8, 8]),
    ]
    dropped = {(r["split"], r["range_id"]): (r["dropped_tokens"], r["dropped_documents"]) for r in out if not r["tokens"]}
    assert dropped == {(0, 0): (3, 0), (0, 1): (2, 1), (1, 0): (2, 0)}


def test_pack_tallied_batches_packs_like_pack_batches_and_sums_the_tally_rows():
    rows = [(0, 0, 1, [5, 5, 0]), (0, 0, 2, [6, 6, 6, 0]), (0, 1, 3, [7, 0]), (1, 0, 4, [8, 8, 8, 8, 8, 0])]
    batches = [tokenized_batch(rows[:2]), tokenized_batch(rows[2:])]
    tallies = [tally_batch({0: [2, 3, 1, 0], 1: [1, 1, 0, 0]}, TOKENIZED_TALLIED),
               tally_batch({0: [1, 1, 4, 2]}, TOKENIZED_TALLIED)]
    # Tally rows sort first in their split (range_id -1) and may share a batch with data rows.
    tallied = [pa.concat_batches([tallies[0], with_zero_tally(batches[0], TOKENIZED_TALLIED)]),
               tallies[1], with_zero_tally(batches[1], TOKENIZED_TALLIED)]
    options = {"capacity": 4, "mode": "concat", "pad_id": PAD, "tail": "pad"}
    plain = pa.Table.from_batches(list(pack_batches(iter(batches), **options)), schema=PACKED)
    out = pa.Table.from_batches(list(pack_tallied_batches(iter(tallied), **options)), schema=PACKED_TALLIED)
    is_tally = [r == TALLY_RANGE for r in out.column("range_id").to_pylist()]
    assert out.filter(pa.array([not t for t in is_tally])).select(PACKED.names).equals(plain)
    sums = {r["split"]: [r[name] for name in TALLY_FIELDS] for r in out.filter(pa.array(is_tally)).to_pylist()}
    assert sums == {0: [3, 4, 5, 2], 1: [1, 1, 0, 0]}


def test_place_batches_gives_each_row_a_unique_position_and_its_shard():
    plans = {0: ShardPlan(sequences=7, sequences_per_shard=3), 1: ShardPlan(sequences=0, sequences_per_shard=3)}
    placement = Placement(range_starts={0: {0: 0, 3: 4}, 1: {}}, plans=plans, seed=5)
    rows = [{"split": 0, "range_id": r, "seq_index": i, "tokens": as_bytes([i]), "doc_offsets": [0], "documents": 1,
             "padding": 0, "dropped_tokens": 0, "dropped_documents": 0}
            for r, n in ((0, 4), (3, 3)) for i in range(n)]
    batch = pa.RecordBatch.from_pylist(rows, schema=PACKED)
    placed = pa.Table.from_batches(list(place_batches(iter([batch.slice(0, 2), batch.slice(2)]), placement))).to_pylist()
    positions = [p["pos"] for p in placed]
    assert sorted(positions) == list(range(7))
    assert all(p["shard"] == p["pos"] // 3 for p in placed)
    expected = permute(np.arange(7), 7, shuffle_seed(5, "train")).tolist()
    assert positions == expected  # canonical order: range 0's rows, then range 3's
