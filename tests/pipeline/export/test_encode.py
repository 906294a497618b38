"""Reading the export's documents, encoding them into spilled tokens and pointer rows, and the input counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.export.encode import (
    EncoderSpec,
    InputTally,
    content_key,
    document_parts,
    read_document_parts,
    read_input_tally,
    tokenize_batches,
    tokenize_parts,
    write_input_tally,
)
from thresher.pipeline.export.plan import document_key, is_validation
from thresher.pipeline.export.spill import SpillReader
from thresher.pipeline.export.tokenize import load_tokenizer
from thresher.schemas.errors import InputError
from thresher.schemas.export_wire import DOCUMENTS, PARTS, TOKENIZED


def test_tokenize_batches_emits_one_row_per_copy_with_split_key_and_range(tokenizer_dir, tmp_path):
    docs = pa.RecordBatch.from_pylist(
        [
            {"doc_id": "a", "text": "first document", "copies": 1},
            {"doc_id": "b", "text": "second", "copies": 3},
            {"doc_id": "c", "text": "sampled out", "copies": 0},
            {"doc_id": "d", "text": "", "copies": 2},
            {"doc_id": "e", "text": None, "copies": 1},
            {"doc_id": "f", "text": "last one", "copies": 2},
        ]
    )
    loaded = load_tokenizer(tokenizer_dir)
    out = list(tokenize_batches(iter([docs]), EncoderSpec.of(loaded), seed=3, validation_fraction=0.5, pack_ranges=4,
                                batch_documents=2, spill_dir=str(tmp_path)))
    rows = pa.Table.from_batches(out, schema=TOKENIZED).to_pylist()
    reader = SpillReader(tmp_path)
    expected = [(d, c, t) for d, t, n in (("a", "first document", 1), ("b", "second", 3), ("f", "last one", 2))
                for c in range(n)]
    assert len(rows) == len(expected)
    for row, (doc_id, copy_index, text) in zip(rows, expected, strict=True):
        assert row["doc_key"] == document_key(doc_id, copy_index, 3)
        assert row["range_id"] == row["doc_key"] % 4
        assert row["split"] == int(is_validation(doc_id, 3, 0.5))
        tokens = reader.gather([row["file"]], np.array([row["start"]]), np.array([row["length"]]))[0].tolist()
        assert tokens[-1] == loaded.eos_id and loaded.decode(tokens[:-1]) == text
        assert row["content_key"] == content_key(np.asarray(tokens, dtype=np.int32))
    # One spill file, holding each document's tokens once however many copies point at them.
    (spill_file,) = tmp_path.iterdir()
    assert {row["file"] for row in rows} == {spill_file.name}
    unique = {(row["start"], row["length"]) for row in rows}
    assert len(unique) == 3 and spill_file.stat().st_size == 4 * sum(length for _, length in unique)


def parts_batch(parts):
    return pa.RecordBatch.from_pylist([dict(zip(PARTS.names, part, strict=True)) for part in parts], schema=PARTS)


def test_document_parts_take_row_groups_together_up_to_the_part_size_and_check_the_columns(tmp_path):
    table = pa.table({"doc_id": [f"d{i}" for i in range(10)], "text": ["x" * 1000] * 10})
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=2)  # 5 row groups of about 3 kB
    pq.write_table(table.slice(0, 1), tmp_path / "one.parquet")
    pq.write_table(table.drop_columns(["text"]), tmp_path / "bad.parquet")
    files = [tmp_path / "groups.parquet", tmp_path / "one.parquet"]
    groups, one = str(files[0]), str(files[1])
    assert document_parts(files, part_bytes=1) == [*((groups, g, 1) for g in range(5)), (one, 0, 1)]
    assert document_parts(files, part_bytes=6000) == [(groups, 0, 2), (groups, 2, 2), (groups, 4, 1), (one, 0, 1)]
    assert document_parts(files) == [(groups, 0, 5), (one, 0, 1)]  # never across files
    with pytest.raises(InputError, match=r"bad.parquet lacks column\(s\) \['text'\]"):
        document_parts([*files, tmp_path / "bad.parquet"])


def test_read_document_parts_reads_row_groups_in_batches_with_their_copies(tmp_path):
    rebalanced = pa.table({"doc_id": ["a", "b", "c", "d"], "text": ["1", "2", None, "4"],
                           "sample_copies": pa.array([2, None, 0, 3], pa.int64()), "other": [1, 2, 3, 4]})
    pq.write_table(rebalanced, tmp_path / "rebalanced.parquet", row_group_size=3)
    pq.write_table(pa.table({"text": ["5"], "doc_id": ["e"]}), tmp_path / "plain.parquet")
    parts = document_parts([tmp_path / "rebalanced.parquet", tmp_path / "plain.parquet"], part_bytes=1)
    batches = list(read_document_parts(iter([parts_batch(parts[:2]), parts_batch(parts[2:])]), batch_documents=2))
    assert [b.num_rows for b in batches] == [2, 1, 1, 1]  # row groups of 3, 1 and 1, in batches of at most 2
    rows = pa.Table.from_batches(batches, schema=DOCUMENTS).to_pylist()
    assert [(r["doc_id"], r["text"], r["copies"]) for r in rows] == [
        ("a", "1", 2), ("b", "2", 1), ("c", None, 0), ("d", "4", 3), ("e", "5", 1)]


def test_tokenize_parts_emits_the_same_rows_and_reports_the_input_counts_apart(tokenizer_dir, tmp_path):
    docs = pa.RecordBatch.from_pylist(
        [{"doc_id": f"doc-{i}", "text": "" if i % 5 == 0 else f"text {i}", "copies": i % 3} for i in range(40)],
        schema=DOCUMENTS,
    )
    stage = tmp_path / "stage.parquet"
    pq.write_table(pa.Table.from_batches([docs]).rename_columns(["doc_id", "text", "sample_copies"]), stage,
                   row_group_size=25)
    spec = EncoderSpec.of(load_tokenizer(tokenizer_dir))
    options = {"seed": 3, "validation_fraction": 0.3, "pack_ranges": 4, "batch_documents": 7,
               "spill_dir": str(tmp_path / "spill")}
    plain = pa.Table.from_batches(list(tokenize_batches(iter([docs]), spec, **options)), schema=TOKENIZED)
    parts = document_parts([stage], part_bytes=1)
    assert len(parts) == 2
    batches = list(tokenize_parts(iter([parts_batch(parts)]), spec, part=0, **options))
    assert all(batch.schema.equals(TOKENIZED) for batch in batches)  # pointer rows only, no counts among them
    data = pa.Table.from_batches(batches, schema=TOKENIZED)
    same = [name for name in TOKENIZED.names if name != "file"]  # each call spills to a file of its own
    assert data.select(same).equals(plain.select(same))
    counts = read_input_tally(tmp_path / "spill", parts=1)
    kept = [i for i in range(40) if i % 5 and i % 3]
    for split in (0, 1):
        in_split = [i for i in kept if int(is_validation(f"doc-{i}", 3, 0.3)) == split]
        assert counts.source_documents[split] == len(in_split)
        assert counts.copies[split] == sum(i % 3 for i in in_split)
    assert counts.empty_text == 8
    assert counts.sampled_out == 40 - 8 - len(kept)
    assert counts.documents_in == 40


def test_input_counts_are_taken_once_per_part_whatever_the_attempts(tmp_path):
    first, second = InputTally([3, 1], [5, 2], empty_text=1, sampled_out=2), InputTally([0, 4], [0, 4])
    write_input_tally(tmp_path, 0, first)
    write_input_tally(tmp_path, 0, first)  # a retried or speculative attempt of part 0
    write_input_tally(tmp_path, 1, second)
    total = read_input_tally(tmp_path, parts=2)
    assert (total.source_documents, total.copies, total.empty_text, total.sampled_out) == ([3, 5], [5, 6], 1, 2)
    assert not list(tmp_path.glob(".*")) and not list(tmp_path.glob("*.tmp"))  # each file written whole
    with pytest.raises(RuntimeError, match=r"parts \[2\] reported none"):
        read_input_tally(tmp_path, parts=3)
    write_input_tally(tmp_path, 1, InputTally([0, 4], [0, 5]))
    with pytest.raises(RuntimeError, match="input part 1: two attempts counted differently"):
        read_input_tally(tmp_path, parts=2)


def test_tokenize_parts_outside_spark_needs_its_part(tokenizer_dir, tmp_path):
    spec = EncoderSpec.of(load_tokenizer(tokenizer_dir))
    with pytest.raises(RuntimeError, match="Spark task"):
        next(tokenize_parts(iter([]), spec, 3, 0.3, 4, 7, str(tmp_path)))


def test_input_on_s3_is_read_and_tokens_and_counts_spilled_to_s3_as_on_local_disk(tokenizer_dir, tmp_path, s3_url,
                                                                                  copies_and_renames):
    from thresher.pipeline.stagedir import storage

    docs = pa.table({"doc_id": [f"doc-{i}" for i in range(30)], "text": ["" if i % 7 == 0 else f"text {i}" for i in range(30)],
                     "sample_copies": pa.array([i % 3 for i in range(30)], pa.int32())})
    pq.write_table(docs, tmp_path / "stage.parquet", row_group_size=10)
    fs, root = storage(s3_url)
    fs.pipe_file(f"{root}/stage.parquet", (tmp_path / "stage.parquet").read_bytes())
    spec = EncoderSpec.of(load_tokenizer(tokenizer_dir))
    options = {"seed": 3, "validation_fraction": 0.3, "pack_ranges": 4, "batch_documents": 7}
    results = {}
    for name, stage, spill in (("local", str(tmp_path / "stage.parquet"), str(tmp_path / "spill")),
                               ("s3", f"{s3_url}/stage.parquet", f"{s3_url}/spill")):
        parts = document_parts([stage], part_bytes=1)
        assert [part[1:] for part in parts] == [(0, 1), (1, 1), (2, 1)]
        rows = pa.Table.from_batches(list(tokenize_parts(iter([parts_batch(parts)]), spec, part=0, spill_dir=spill,
                                                         **options)), schema=TOKENIZED)
        tokens = SpillReader(spill).gather(rows.column("file").to_pylist(), rows.column("start").to_numpy(),
                                           rows.column("length").to_numpy())[0]
        results[name] = (rows.drop_columns(["file"]), tokens.tolist(), read_input_tally(spill, parts=1))
    assert results["s3"] == results["local"]
    assert copies_and_renames == []
