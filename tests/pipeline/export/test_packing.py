"""The packers (concat and boundary modes) and the export's packing task, without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.export.packing import Packer, pack_and_summarize, pack_batches
from thresher.pipeline.export.spill import SpillReader, SpillWriter
from thresher.schemas.export_wire import PACKED, RANGE_SUMMARY, TOKENIZED

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


@pytest.mark.parametrize(("mode", "tail"), [("concat", "pad"), ("boundary", "pad"), ("concat", "drop")])
@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_each_document_s_start_points_at_its_tokens_in_the_rows_laid_end_to_end(mode, tail, batch_size):
    values, offsets = make_documents([3, 4, 6, 8, 2, 20, 1, 5, 5, 13])
    packer = Packer(8, mode, PAD, tail)
    starts = []
    rows = []
    for start in range(0, len(offsets) - 1, batch_size):
        rows.append(packer.add(values, offsets[start : min(start + batch_size, len(offsets) - 1) + 1]).tokens)
        starts.append(packer.take_starts())
    rows.append(packer.finish().tokens)
    stream, starts = np.concatenate(rows).reshape(-1), np.concatenate(starts)
    assert packer.rows_out * 8 == len(stream) and len(starts) == len(offsets) - 1
    for i, start in enumerate(starts.tolist()):
        document = values[offsets[i] : offsets[i + 1]]
        if start + len(document) <= len(stream):  # else in the dropped tail
            assert np.array_equal(stream[start : start + len(document)], document)
        else:
            assert tail == "drop" and start + len(document) > packer.rows_out * 8


def test_packer_rejects_bad_settings():
    with pytest.raises(ValueError, match="pack mode"):
        Packer(8, mode="zigzag")
    with pytest.raises(ValueError, match="tail"):
        Packer(8, tail="keep")


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


def test_pack_batches_packs_each_range_on_its_own_and_counts_the_dropped_tails_apart(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batches = [tokenized_batch(PACK_ROWS[:2], spill), tokenized_batch(PACK_ROWS[2:], spill)]
    spill.close()
    counts = {}
    out = pa.Table.from_batches(list(pack_batches(iter(batches), capacity=4, mode="concat", pad_id=PAD, tail="drop",
                                                  spill_dir=str(tmp_path), counts=counts)), schema=PACKED).to_pylist()
    kept = [r for r in out if r["start"] >= 0]
    assert kept == out  # every row holds tokens
    assert [(r["split"], r["range_id"], r["seq_index"]) for r in kept] == [(0, 0, 0), (1, 0, 0)]
    assert row_tokens(tmp_path, kept, 4) == [[5, 5, 0, 6], [8, 8, 8, 8]]
    assert len({r["file"] for r in kept}) == 1 and kept[0]["file"] != spill.name  # the task's own spill file
    dropped = {key: (c.dropped_tokens, c.dropped_documents) for key, c in counts.items() if c.dropped_tokens}
    assert dropped == {(0, 0): (3, 0), (0, 1): (2, 1), (1, 0): (2, 0)}
    assert {key: (c.sequences, c.documents) for key, c in counts.items()} == {(0, 0): (1, 2), (0, 1): (0, 0),
                                                                              (1, 0): (1, 1)}


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


def test_pack_and_summarize_reports_each_range(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batches = [tokenized_batch(PACK_ROWS[:2], spill), tokenized_batch(PACK_ROWS[2:], spill)]
    spill.close()
    options = {"capacity": 4, "mode": "concat", "pad_id": PAD, "tail": "pad", "spill_dir": str(tmp_path)}
    summary = pa.Table.from_batches(list(pack_and_summarize(iter(batches), **options)), schema=RANGE_SUMMARY)
    ranges = {(r["split"], r["range_id"]): r for r in summary.to_pylist()}
    counts = {key: (r["sequences"], r["documents"], r["padding"]) for key, r in ranges.items()}
    assert counts == {(0, 0): (2, 2, 1), (0, 1): (1, 1, 2), (1, 0): (2, 1, 2)}
    (packed_file,) = {r["file"] for r in ranges.values()}
    packed = pq.read_table(tmp_path / packed_file)
    assert packed.schema.equals(PACKED) and len(packed) == 5 and min(packed.column("start").to_pylist()) >= 0
    plain = pa.Table.from_batches(list(pack_batches(iter(batches), **options)), schema=PACKED)
    assert row_tokens(tmp_path, packed.to_pylist(), 4) == row_tokens(tmp_path, plain.to_pylist(), 4)


def test_pack_and_summarize_reports_a_range_that_only_dropped(tmp_path):
    spill = SpillWriter(tmp_path, "documents")
    batch = tokenized_batch(PACK_ROWS, spill)
    spill.close()
    summary = list(pack_and_summarize(iter([batch]), capacity=4, mode="concat", pad_id=PAD, tail="drop",
                                      spill_dir=str(tmp_path)))
    rows = {(r["split"], r["range_id"]): r for r in pa.Table.from_batches(summary).to_pylist()}
    assert (rows[0, 1]["file"], rows[0, 1]["sequences"]) == ("", 0)  # no rows: no file to read
    assert (rows[0, 1]["dropped_tokens"], rows[0, 1]["dropped_documents"]) == (2, 1)
    assert rows[0, 0]["file"] != "" and rows[0, 0]["dropped_tokens"] == 3
