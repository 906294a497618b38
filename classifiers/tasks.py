"""How a labelled row becomes the text a model sees, per task, so training and scoring agree.

- plain: the `text` field as is (e.g. a quality classifier).
- page_type: `url` (optional) and `text` -> classifiers.page_type.page_type_input.
- clutter: one line in `text`, with optional `line_index` and `line_count` (its place in the
  document; without them the line counts as a middle line) and `origin` (its HTML element kind,
  pipeline.prepare.extract.extract_with_origins) -> classifiers.clutter.line_input.
- topic: `text` -> classifiers.topic.topic_input.
"""

from __future__ import annotations

from typing import Any

from thresher.classifiers.clutter import line_input
from thresher.classifiers.page_type import page_type_input
from thresher.pipeline.config import TASKS as TASKS  # the task names, declared where the config checks them

TOPIC_INPUT_CHARS = 5000  # topic shows early in a document; the cap bounds scoring cost


def topic_input(text: str) -> str:
    return (text or "")[:TOPIC_INPUT_CHARS]


def model_input(task: str, row: dict[str, Any]) -> str:
    text = row.get("text") or ""
    if task == "page_type":
        return page_type_input(row.get("url") or "", text)
    if task == "clutter":
        return line_input(
            text,
            int(row.get("line_index", 3)),
            int(row.get("line_count", 7)),
            str(row.get("origin") or ""),
        )
    if task == "topic":
        return topic_input(text)
    return text
