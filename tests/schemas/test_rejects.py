"""schemas.rejects: which reject rules remove lines of a kept document rather than the document."""

import pytest

from thresher.schemas.rejects import is_line_rule


@pytest.mark.parametrize("rule", ["line_dedup", "clutter_line", "boilerplate_line"])
def test_line_rules_remove_lines(rule):
    assert is_line_rule(rule)


@pytest.mark.parametrize("rule", ["gopher", "minhash_duplicate", "page_type:label_in", "input_parse_error", "line_dedup_x"])
def test_document_rules_remove_documents(rule):
    assert not is_line_rule(rule)
