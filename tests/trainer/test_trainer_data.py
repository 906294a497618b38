import json

import pytest
import torch

from trainer.data import TokenShardReader, read_manifest


def numbered_rows(count, seq_len):
    """Row i starts with token i, so rows can be told apart."""
    return [[i] + [7] * seq_len for i in range(count)]


@pytest.fixture
def numbered_shards(tmp_path, make_shards):
    # 3 shards of 20 rows in row groups of 6 (6, 6, 6, 2): 12 row groups, 60 rows.
    return make_shards(tmp_path / "shards", {"train": numbered_rows(60, 4), "validation": numbered_rows(10, 4)},
                       seq_len=4, vocab_size=100, rows_per_shard=20, rows_per_group=6)


def row_ids(rows):
    return rows[:, 0].tolist()


def test_one_epoch_reads_every_row_once_shuffled(numbered_shards):
    reader = TokenShardReader(numbered_shards, seed=3)
    rows = reader.next_rows(60)
    assert rows.shape == (60, 5) and rows.dtype == torch.int64
    assert sorted(row_ids(rows)) == list(range(60))
    assert row_ids(rows) != list(range(60))


def test_order_depends_on_seed_and_epoch_only(numbered_shards):
    first = row_ids(TokenShardReader(numbered_shards, seed=3).next_rows(120))
    assert first == row_ids(TokenShardReader(numbered_shards, seed=3).next_rows(120))
    assert first != row_ids(TokenShardReader(numbered_shards, seed=4).next_rows(120))
    assert first[:60] != first[60:] and sorted(first[60:]) == list(range(60))  # next epoch: reshuffled


def test_ranks_split_the_data_without_overlap(numbered_shards):
    shares = [TokenShardReader(numbered_shards, seed=3, rank=r, world_size=3, loop=False) for r in range(3)]
    ids = [row_ids(reader.next_rows(1000)) for reader in shares]
    assert sorted(sum(ids, [])) == list(range(60))
    assert all(len(share) >= 12 for share in ids)


def test_resume_from_state_continues_exactly(numbered_shards):
    uninterrupted = TokenShardReader(numbered_shards, seed=5)
    expected = row_ids(uninterrupted.next_rows(77))
    first = TokenShardReader(numbered_shards, seed=5)
    head = row_ids(first.next_rows(31))
    state = json.loads(json.dumps(first.state_dict()))  # plain, serialisable
    resumed = TokenShardReader(numbered_shards, seed=5)
    resumed.load_state_dict(state)
    assert head + row_ids(resumed.next_rows(46)) == expected


def test_non_looping_reader_ends(numbered_shards):
    reader = TokenShardReader(numbered_shards, split="validation", loop=False)
    assert len(reader.next_rows(8)) == 8
    assert len(reader.next_rows(8)) == 2
    assert reader.next_rows(8) is None


def test_reads_one_row_group_at_a_time(numbered_shards, monkeypatch):
    import pyarrow.parquet as pq

    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kw: reads.append(i) or original(self, i, **kw))
    TokenShardReader(numbered_shards).next_rows(7)
    assert len(reads) == 2  # 7 rows span two row groups of at most 6 rows


def test_manifest_checks(numbered_shards, tmp_path):
    assert read_manifest(numbered_shards / "manifest.json")["seq_len"] == 4
    with pytest.raises(ValueError, match="split"):
        TokenShardReader(numbered_shards, split="test")
    with pytest.raises(ValueError, match="row groups cannot feed"):
        TokenShardReader(numbered_shards, split="validation", world_size=3)
    bad = json.loads((numbered_shards / "manifest.json").read_text())
    bad["format"] = "other/2"
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="format"):
        read_manifest(tmp_path)
