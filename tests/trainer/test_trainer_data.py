import json

import pytest
import torch

from thresher.trainer.data import TokenShardReader, read_manifest


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
    stream = row_ids(TokenShardReader(numbered_shards, seed=3).next_rows(120))  # two epochs at one rank
    shares = [TokenShardReader(numbered_shards, seed=3, rank=r, world_size=3) for r in range(3)]
    together = []
    for _ in range(10):  # ten global micro-batches of 3 x 4 sequences
        blocks = [row_ids(reader.next_rows(4)) for reader in shares]
        assert len(set(sum(blocks, []))) == 12  # no sequence on two ranks
        together += sum(blocks, [])
    assert together == stream  # rank r takes the r-th block: the one-rank order whatever the world size
    assert all(reader.state_dict() == {"sequences_read": 120} for reader in shares)


def test_resume_at_another_world_size_skips_and_repeats_nothing(numbered_shards):
    stream = row_ids(TokenShardReader(numbered_shards, seed=5).next_rows(100))
    two = [TokenShardReader(numbered_shards, seed=5, rank=r, world_size=2) for r in range(2)]
    seen = [row_ids(reader.next_rows(5)) for _ in range(3) for reader in two]  # 30 sequences
    state = json.loads(json.dumps(two[0].state_dict()))
    assert state == two[1].state_dict() == {"sequences_read": 30}
    three = [TokenShardReader(numbered_shards, seed=5, rank=r, world_size=3) for r in range(3)]
    for reader in three:
        reader.load_state_dict(state)
    seen += [row_ids(reader.next_rows(7)) for _ in range(2) for reader in three]  # 42 more, across an epoch end
    assert sum(seen, []) == stream[:72]


def test_non_looping_reader_shares_the_last_micro_batch(numbered_shards):
    shares = [TokenShardReader(numbered_shards, split="validation", rank=r, world_size=2, loop=False) for r in range(2)]
    assert [len(reader.next_rows(4)) for reader in shares] == [4, 4]
    assert [len(reader.next_rows(4)) for reader in shares[:1]] == [2]  # rows 8, 9 of 10
    assert shares[1].next_rows(4) is None


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
    bad = json.loads((numbered_shards / "manifest.json").read_text())
    bad["format"] = "other/2"
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="format"):
        read_manifest(tmp_path)


def test_an_export_cut_short_or_a_directory_without_a_manifest_is_one_line(numbered_shards, tmp_path):
    from thresher.pipeline.config import ConfigError

    (numbered_shards / "_PARTS").write_text('["train/shard-00000.parquet"]')  # the export died before its marker
    with pytest.raises(ConfigError, match=rf"^{numbered_shards} is an export cut short \(no _COMMITTED marker\): rerun"):
        read_manifest(numbered_shards)
    with pytest.raises(ConfigError, match=rf"^--data {tmp_path}: no manifest.json there: point it at a thresher export"):
        read_manifest(tmp_path)
