"""Spill files: appends return offsets, gathers read them back from any number of files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from thresher.pipeline.export.spill import SpillReader, SpillWriter


def test_appends_return_token_offsets_and_gather_reads_them_back_across_files(tmp_path):
    rng = np.random.default_rng(0)
    pieces = []  # (file, start, tokens)
    for _ in range(5):
        writer = SpillWriter(tmp_path, "documents")
        for _ in range(20):
            tokens = rng.integers(-2**31, 2**31 - 1, rng.integers(0, 50), dtype=np.int64).astype(np.int32)
            pieces.append((writer.name, writer.append(tokens), tokens))
        writer.close()
    order = rng.permutation(len(pieces))
    reader = SpillReader(tmp_path, max_open=2)  # fewer than the files: descriptors are recycled
    values, offsets = reader.gather([pieces[i][0] for i in order], np.array([pieces[i][1] for i in order]),
                                    np.array([len(pieces[i][2]) for i in order]))
    reader.close()
    assert values.dtype == np.dtype("<i4") and offsets[0] == 0 and offsets[-1] == len(values)
    for k, i in enumerate(order):
        np.testing.assert_array_equal(values[offsets[k] : offsets[k + 1]], pieces[i][2])


def test_a_writer_with_nothing_to_spill_leaves_no_file_and_names_are_unique(tmp_path):
    quiet = SpillWriter(tmp_path, "rows")
    quiet.close()
    assert list(tmp_path.iterdir()) == []
    names = {SpillWriter(tmp_path, "rows").name for _ in range(100)}
    assert len(names) == 100 and all(name.startswith("rows-") and name.endswith(".i32") for name in names)


def test_the_reader_keeps_at_most_max_open_descriptors(tmp_path):
    names = []
    for i in range(6):
        writer = SpillWriter(tmp_path, "documents")
        writer.append(np.array([i], dtype=np.int32))
        writer.close()
        names.append(writer.name)
    reader = SpillReader(tmp_path, max_open=3)
    before = len(os.listdir("/proc/self/fd"))
    values, _ = reader.gather(names * 2, np.zeros(12, dtype=np.int64), np.ones(12, dtype=np.int64))
    assert values.tolist() == list(range(6)) * 2
    assert len(os.listdir("/proc/self/fd")) - before <= 3
    reader.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_reads_past_the_end_and_names_outside_the_directory_are_errors(tmp_path):
    writer = SpillWriter(tmp_path, "documents")
    writer.append(np.arange(4, dtype=np.int32))
    writer.close()
    reader = SpillReader(tmp_path)
    with pytest.raises(RuntimeError, match="ends before token 5"):
        reader.gather([writer.name], np.array([2]), np.array([3]))
    for bad in ("../escape.i32", ".hidden"):
        with pytest.raises(ValueError, match="bad spill file name"):
            reader.gather([bad], np.array([0]), np.array([1]))
    reader.close()


def test_spill_files_on_s3_are_objects_written_whole_and_read_back_by_ranges(s3_url, copies_and_renames):
    from thresher.pipeline.stagedir import storage

    rng = np.random.default_rng(1)
    pieces = []
    for _ in range(3):
        writer = SpillWriter(f"{s3_url}/spill", "rows")
        for _ in range(30):
            tokens = rng.integers(0, 50_000, rng.integers(0, 40), dtype=np.int64).astype(np.int32)
            pieces.append((writer.name, writer.append(tokens), tokens))
        writer.close()
    fs, root = storage(f"{s3_url}/spill")
    fs.invalidate_cache(root)
    assert sorted(name.rsplit("/", 1)[-1] for name in fs.ls(root)) == sorted({name for name, _, _ in pieces})
    order = rng.permutation(len(pieces))
    reader = SpillReader(f"{s3_url}/spill")
    values, offsets = reader.gather([pieces[i][0] for i in order], np.array([pieces[i][1] for i in order]),
                                    np.array([len(pieces[i][2]) for i in order]))
    for k, i in enumerate(order):
        np.testing.assert_array_equal(values[offsets[k] : offsets[k + 1]], pieces[i][2])
    name, start, tokens = pieces[-1]
    with pytest.raises(RuntimeError, match="ends before token"):
        reader.gather([name], np.array([start]), np.array([len(tokens) + 5]))
    reader.close()
    assert copies_and_renames == []
