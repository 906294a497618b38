"""The content sniff that keeps document files out of stage 1, on real archives and real documents."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline.prepare.archive_sniff import check_archive_inputs, first_bytes, looks_like_archive
from thresher.schemas.errors import InputError


def test_every_shared_archive_looks_like_one(shared_data):
    archives = sorted((shared_data / "warc").iterdir()) + sorted((shared_data / "crawl").glob("*.warc.gz"))
    assert any(path.name.endswith(".arc.gz") for path in archives) and any(".wet." in path.name for path in archives)
    for path in archives:
        head = first_bytes(str(path))
        assert head is not None and looks_like_archive(head), path
    check_archive_inputs([str(path) for path in archives])


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "parquet"])
def test_document_files_are_refused_with_a_pointer_to_rules(shared_data, tmp_path, kind):
    lines = (shared_data / "quality/dclm/agreement_data.jsonl").read_text().splitlines()[:3]
    path = tmp_path / f"docs.{kind}"
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]), path)
    else:
        data = ("\n".join(lines) + "\n").encode()
        path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    archive = str(shared_data / "warc/cc-main-2024-22-one-page.warc.gz")
    with pytest.raises(InputError, match=r"is not a WARC, WET or ARC file .*use `thresher rules .*docs") as error:
        check_archive_inputs([archive, str(path)])  # refused even beside a real archive
    assert "\n" not in str(error.value)


def test_other_junk_is_refused_only_when_no_input_is_an_archive(shared_data, tmp_path):
    notes = tmp_path / "notes.warc.gz"
    notes.write_bytes(gzip.compress(b"Just some notes, one per line.\n" * 10))
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    # Beside an archive, stage 1 counts the junk file as a reject with its reason.
    check_archive_inputs([str(shared_data / "warc/warcio-example.warc.gz"), str(notes)])
    check_archive_inputs([str(empty)])  # nothing to judge: stage 1 counts an empty file
    with pytest.raises(InputError, match="notes.warc.gz is not a WARC"):
        check_archive_inputs([str(notes)])
    # A remote input might be an archive: only the file itself can say.
    check_archive_inputs([str(notes), "https://data.commoncrawl.org/x.warc.gz"])
