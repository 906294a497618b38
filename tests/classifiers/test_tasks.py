"""Rows become the same model inputs in training as in the job."""

from __future__ import annotations

from thresher.classifiers.clutter import line_input
from thresher.classifiers.page_type import page_type_input
from thresher.classifiers.tasks import model_input, topic_input


def test_each_task_builds_the_scoring_input():
    row = {"text": "Body text", "url": "https://x.org/forum/1", "line_index": 0, "line_count": 4}
    assert model_input("plain", row) == "Body text"
    assert model_input("page_type", row) == page_type_input("https://x.org/forum/1", "Body text")
    assert model_input("clutter", row) == line_input("Body text", 0, 4)
    assert model_input("clutter", {"text": "Body text"}).startswith("len0 pos_middle")
    assert model_input("clutter", {**row, "origin": "item"}) == line_input("Body text", 0, 4, "item")
    assert model_input("topic", {"text": "x" * 9000}) == topic_input("x" * 9000) == "x" * 5000
