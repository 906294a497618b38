"""Splits, keys, the seeded permutation and shard placement, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from thresher.pipeline.export.plan import (
    Placement,
    ShardPlan,
    document_key,
    is_validation,
    permute,
    place_batches,
    shuffle_seed,
)
from thresher.schemas.export_wire import PACKED


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
