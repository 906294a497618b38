"""Shard files: streaming row groups, the SHARD schema, and the checks on what a shard receives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.export.plan import ShardPlan
from thresher.pipeline.export.shards import ShardWriter, write_shard_batches
from thresher.pipeline.export.spill import SpillWriter
from thresher.schemas.export_wire import PLACED, WRITTEN
from thresher.schemas.tokens import SHARD

CAPACITY = 5


def placed_batch(spill_dir, split, shard, positions):
    """PLACED rows whose CAPACITY tokens all equal their position, spilled to a new file in `spill_dir`."""
    spill = SpillWriter(spill_dir, "rows")
    rows = [{"split": split, "shard": shard, "pos": p, "file": spill.name,
             "start": spill.append(np.full(CAPACITY, p, np.int32)), "doc_offsets": [0]} for p in positions]
    spill.close()
    return pa.RecordBatch.from_pylist(rows, schema=PLACED)


def shard_batch(positions):
    return pa.RecordBatch.from_pylist([{"tokens": [p] * CAPACITY, "doc_offsets": [0]} for p in positions], schema=SHARD)


def write_shards(batches, output_dir, spill_dir, plans):
    return list(write_shard_batches(iter(batches), str(output_dir), str(spill_dir), CAPACITY, plans, 2))


def test_writer_writes_row_groups_of_the_configured_size(tmp_path):
    writer = ShardWriter(tmp_path / "x/shard.parquet", row_group_sequences=4)
    for start in (0, 3, 10):  # batches of 3, 7 and 1 rows
        n = {0: 3, 3: 7, 10: 1}[start]
        writer.write(shard_batch(range(start, start + n)))
    writer.close()
    parquet = pq.ParquetFile(tmp_path / "x/shard.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [4, 4, 3]
    table = parquet.read()
    assert table.schema.equals(SHARD)
    assert table.column("tokens").to_pylist() == [[p] * CAPACITY for p in range(11)]
    assert (writer.sequences, writer.tokens) == (11, 11 * CAPACITY)


def test_shards_read_back_with_pyarrow_and_pandas_as_int32(tmp_path):
    writer = ShardWriter(tmp_path / "s.parquet", row_group_sequences=2)
    writer.write(shard_batch(range(3)))
    writer.close()
    assert pq.read_schema(tmp_path / "s.parquet").field("tokens").type == pa.list_(pa.int32())
    frame = pd.read_parquet(tmp_path / "s.parquet")
    assert len(frame) == 3 and np.asarray(frame["tokens"][2]).dtype == np.int32
    assert frame["tokens"][2].tolist() == [2] * CAPACITY


def test_write_shard_batches_writes_each_planned_shard_and_reports_it(tmp_path):
    plans = {0: ShardPlan(sequences=5, sequences_per_shard=2), 1: ShardPlan(sequences=1, sequences_per_shard=2)}
    spill = tmp_path / "spill"
    batches = [placed_batch(spill, 0, 0, [0, 1]), placed_batch(spill, 0, 1, [2]), placed_batch(spill, 0, 1, [3]),
               placed_batch(spill, 0, 2, [4]), placed_batch(spill, 1, 0, [0])]
    written = pa.Table.from_batches(write_shards(batches, tmp_path, spill, plans), schema=WRITTEN).to_pylist()
    assert [(r["path"], r["sequences"], r["tokens"]) for r in written] == [
        ("train/shard-00000.parquet", 2, 10),
        ("train/shard-00001.parquet", 2, 10),
        ("train/shard-00002.parquet", 1, 5),
        ("validation/shard-00000.parquet", 1, 5),
    ]
    assert pq.read_table(tmp_path / "train/shard-00001.parquet").column("tokens").to_pylist() == [[2] * 5, [3] * 5]
    assert all(r["size"] == (tmp_path / r["path"]).stat().st_size for r in written)


@pytest.mark.parametrize("positions", [[0, 2], [1, 0], [0, 0]])
def test_a_shard_with_a_gap_or_duplicate_is_an_error(tmp_path, positions):
    plans = {0: ShardPlan(sequences=2, sequences_per_shard=2)}
    with pytest.raises(RuntimeError, match="positions"):
        write_shards([placed_batch(tmp_path, 0, 0, positions)], tmp_path, tmp_path, plans)


def test_a_short_shard_is_an_error(tmp_path):
    plans = {0: ShardPlan(sequences=4, sequences_per_shard=2)}
    with pytest.raises(RuntimeError, match="planned"):
        write_shards([placed_batch(tmp_path, 0, 0, [0])], tmp_path, tmp_path, plans)


def test_shards_on_s3_appear_whole_and_a_failed_shard_leaves_no_object(tmp_path, s3_url, copies_and_renames):
    from thresher.pipeline.stagedir import storage

    plans = {0: ShardPlan(sequences=6, sequences_per_shard=4)}
    written = write_shards([placed_batch(f"{s3_url}/spill", 0, 0, range(4)),
                            placed_batch(f"{s3_url}/spill", 0, 1, range(4, 6))], s3_url, f"{s3_url}/spill", plans)
    fs, root = storage(s3_url)
    fs.invalidate_cache(root)
    for row in pa.Table.from_batches(written).to_pylist():
        with fs.open(f"{root}/{row['path']}", "rb") as file:
            table = pq.read_table(file)
        assert row["size"] == fs.size(f"{root}/{row['path']}") and table.num_rows == row["sequences"]
    with pytest.raises(RuntimeError, match="positions"):
        write_shards([placed_batch(f"{s3_url}/spill", 0, 0, [0, 2])], f"{s3_url}/failed", f"{s3_url}/spill",
                     {0: ShardPlan(sequences=2, sequences_per_shard=2)})
    fs.invalidate_cache(root)
    assert not fs.exists(f"{root}/failed")
    assert copies_and_renames == []
