"""The tag declaration: taggers.json reads back as written; a missing or malformed one is one line naming the file."""

from __future__ import annotations

import json

import pytest

from thresher.schemas.documents import RULES
from thresher.schemas.stats import StatsError
from thresher.schemas.tags import (
    TAGGERS_FILE,
    DeclaredTagger,
    TaggersFileError,
    read_taggers,
    tagged_schema,
    write_taggers,
)

PAGE_TYPE = DeclaredTagger("page_type", "/m/page_type", top_k=3, labels=("article", "forum"), model_hash="9c1f",
                           heldout={"accuracy": 0.9, "examples": 40}, weak_labels=True)
CLUTTER = DeclaredTagger("clutter", "/m/clutter", kind="lines", labels=("keep", "clutter"))
PII = DeclaredTagger("pii", kind="pii")  # rules, no model


def test_each_kind_declares_its_columns_after_the_stage_2_ones():
    schema = tagged_schema((PAGE_TYPE, CLUTTER))
    assert schema.names == [*RULES.names, "page_type_label", "page_type_score", "page_type_top", "clutter_line_scores"]
    assert schema.field("page_type_top").type.value_type.names == ["label", "score"]


def test_a_pii_tagger_declares_its_spans_as_kind_start_end():
    schema = tagged_schema((PII,))
    assert schema.names == [*RULES.names, "pii_spans"]
    assert schema.field("pii_spans").type.value_type.names == ["kind", "start", "end"]


def test_written_taggers_read_back_equal_in_column_order(tmp_path):
    write_taggers(tmp_path / TAGGERS_FILE, (PAGE_TYPE, CLUTTER, PII))
    assert read_taggers(tmp_path) == (PAGE_TYPE, CLUTTER, PII)
    written = json.loads((tmp_path / TAGGERS_FILE).read_text())
    assert written["taggers"][1]["columns"] == ["clutter_line_scores"]  # for readers of the file; derived on read


def test_a_tag_output_without_the_declaration_says_to_rerun_tag(tmp_path):
    with pytest.raises(TaggersFileError, match=rf"{tmp_path / TAGGERS_FILE}: no such file .*rerun tag") as raised:
        read_taggers(tmp_path)
    assert isinstance(raised.value, StatsError)  # a user's error: one line on the console, like a bad stats.json


def _entry(**changes):
    write = {"name": "page_type", "kind": "document", "top_k": 5, "labels": ["article"],
             "columns": ["page_type_label", "page_type_score", "page_type_top"], "model_dir": "/m", "model_hash": None,
             "heldout": {}, "weak_labels": False}
    return {**write, **changes}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"taggers": []}), "expected an object with format and a taggers list"),
    (json.dumps({"format": 1, "taggers": [_entry(labels=None)]}), r"taggers\[0\]\.labels has the wrong type"),
    (json.dumps({"format": 1, "taggers": [_entry(top_k=True)]}), r"taggers\[0\]\.top_k has the wrong type"),
    (json.dumps({"format": 1, "taggers": [{"name": "page_type"}]}), r"taggers\[0\] should have the fields"),
    (json.dumps({"format": 1, "taggers": [_entry(kind="spans")]}), r"taggers\[0\]\.kind 'spans' is not one of document, lines"),
    (json.dumps({"format": 1, "taggers": [_entry(top_k=0)]}), r"taggers\[0\]: top_k must be at least 1"),
    (json.dumps({"format": 1, "taggers": [_entry(kind="lines")]}), r"taggers\[0\]\.columns .* not the columns of a lines tagger"),
])
def test_a_malformed_declaration_is_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / TAGGERS_FILE).write_text(content)
    with pytest.raises(TaggersFileError, match=message) as raised:
        read_taggers(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / TAGGERS_FILE}: ") and "rerun tag" in str(raised.value)
    assert "\n" not in str(raised.value)
