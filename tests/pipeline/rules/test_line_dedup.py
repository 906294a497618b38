"""Line dedup per document, and the counting rule checked against the cs336 line-dedup fixture."""

from __future__ import annotations

from collections import Counter

from thresher.pipeline.rules.line_dedup import edge_lines, line_key, remove_lines


def test_blank_and_symbol_only_lines_have_no_key():
    assert line_key("   ") is None
    assert line_key("*** | ---") is None
    assert line_key("  Share this  ") == "Share this"


def test_edge_lines_take_head_and_tail_content_lines():
    lines = [f"line {i}" for i in range(20)]
    lines.insert(1, "")
    lines.insert(3, "====")
    picked = edge_lines("\n".join(lines), 5)
    assert [key for _, key, _ in picked] == [f"line {i}" for i in (0, 1, 2, 3, 4, 15, 16, 17, 18, 19)]
    assert all("\n".join(lines).split("\n")[index] == line for index, _, line in picked)
    assert len(edge_lines("a\nb\nc", 5)) == 3  # short document: each line once


def test_remove_lines_reports_what_went():
    text, removed = remove_lines("a\nb\nc", [1])
    assert (text, removed) == ("a\nc", ["b"])
    assert remove_lines("a\nb", []) == ("a\nb", [])


def test_cs336_fixture_with_one_allowed_occurrence(shared_data):
    """The fixture deletes every repeated line; with max occurrences 1 the job keeps the first
    occurrence (smallest doc id, line number) and deletes the rest, which matches the fixture on the
    documents where a line reappears."""
    source = shared_data / "dedup/cs336-fixtures/documents_with_line_duplicates"
    expected_dir = shared_data / "dedup/cs336-fixtures/documents_line_deduplicated"
    docs = {path.name: path.read_text() for path in sorted(source.glob("*.txt"))}
    seen = Counter()
    removals = {}
    for name in sorted(docs):  # the job's order: doc_id, then line number
        for index, key, _ in edge_lines(docs[name], 5):
            seen[key] += 1
            if seen[key] > 1:
                removals.setdefault(name, []).append(index)
    result = {name: remove_lines(text, removals.get(name, []))[0] for name, text in docs.items()}
    for name in ("doc2.txt", "doc4.txt", "doc5.txt"):
        assert result[name].strip() == (expected_dir / name).read_text().strip()
    assert result["doc1.txt"] == docs["doc1.txt"]  # first occurrences stay
