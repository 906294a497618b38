"""Training on labelled files: reading, the held-out split, metrics.json, reproduction, cross-validation."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.classifiers.base import METRICS_NAME
from thresher.classifiers.training import (
    LabelledData,
    cross_validate,
    evaluate_saved,
    holdout_rows,
    read_labelled,
    train_and_save,
)
from thresher.schemas.errors import InputError

from .conftest import SMALL_FASTTEXT


def test_reads_jsonl_and_parquet_alike(tmp_path):
    rows = [{"text": "alpha", "label": 1}, {"text": "", "label": 0}, {"text": "beta", "label": None}, {"text": "gamma", "label": 0}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        data = read_labelled([tmp_path / name])
        assert data.texts == ["alpha", "gamma"] and data.labels == ["1", "0"]


def test_task_inputs_are_applied_when_reading(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"url": "https://bbs.x.com/t/1", "text": "hello", "label": "forum"}) + "\n")
    data = read_labelled([tmp_path / "p.jsonl"], task="page_type")
    assert data.texts[0].startswith("url_bbs url_x url_com url_t url_0") and data.texts[0].endswith("hello")


def test_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2 is not JSON"):
        read_labelled([tmp_path / "bad.jsonl"])
    with pytest.raises(InputError, match="missing.jsonl does not exist"):
        read_labelled([tmp_path / "missing.jsonl"])
    (tmp_path / "unlabelled.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(InputError, match="no labelled rows"):
        read_labelled([tmp_path / "unlabelled.jsonl"])
    with pytest.raises(ValueError, match="unknown task"):
        read_labelled([tmp_path / "bad.jsonl"], task="nope")


def test_holdout_is_by_text_so_duplicates_stay_together():
    texts = [f"doc {i}" for i in range(1000)] + ["doc 7"] * 5
    train, held = holdout_rows(texts, 0.2, seed=0)
    assert 150 < len(held) < 250 and sorted(train + held) == list(range(1005))
    sides = {i in held for i, t in enumerate(texts) if t == "doc 7"}
    assert len(sides) == 1
    assert holdout_rows(texts, 0.2, seed=0) == (train, held) != holdout_rows(texts, 0.2, seed=1)


@pytest.fixture(scope="module")
def quality_paths(shared_data):
    return [shared_data / "quality" / "dclm" / "majority_data.jsonl"]


def test_training_writes_metrics_that_eval_reproduces(quality_paths, tmp_path):
    data = read_labelled(quality_paths)
    record = train_and_save("fasttext", data, tmp_path / "quality", SMALL_FASTTEXT, holdout=0.2, seed=0, sources=quality_paths)
    stored = json.loads((tmp_path / "quality" / METRICS_NAME).read_text())
    assert stored == json.loads(json.dumps(record))
    held = stored["heldout"]
    assert held["examples"] + stored["train_examples"] == len(data)
    # Real human quality labels: a bag-of-n-grams model separates them well above chance.
    assert held["auc"] > 0.75 and held["accuracy"] > 0.65
    assert evaluate_saved(tmp_path / "quality") == held
    assert evaluate_saved(tmp_path / "quality", split="all")["examples"] == len(data)


def test_extra_training_rows_are_never_evaluated(tmp_path):
    data = LabelledData(["good text here"] * 3 + ["bad bad"] * 3, ["1"] * 3 + ["0"] * 3)
    extra = LabelledData(["another good text", "more bad"], ["1", "0"])
    record = train_and_save("fasttext", data, tmp_path / "m", SMALL_FASTTEXT, holdout=0.5, seed=2, extra_train=extra)
    assert record["train_examples"] + record["heldout"]["examples"] == len(data) + len(extra)
    assert record["extra_train_examples"] == 2


def test_cross_validation_covers_every_row_once(shared_data):
    data = read_labelled([shared_data / "quality" / "dclm" / "agreement_data.jsonl"])
    result = cross_validate("fasttext", data, folds=2, params=SMALL_FASTTEXT, seed=0)
    assert sum(fold["examples"] for fold in result["per_fold"]) == len(data)
    assert 0.7 < result["auc_mean"] <= 1.0 and result["auc_std"] >= 0


def test_line_rows_come_back_as_documents_and_bad_rows_are_named(tmp_path):
    from thresher.classifiers.training import read_line_documents
    from thresher.schemas.errors import InputError

    rows = [
        {"url": "b", "text": "second page", "line_index": 0, "line_count": 1, "label": "keep"},
        {"url": "a", "text": "Menu", "line_index": 2, "line_count": 3, "label": "clutter"},
        {"url": "a", "text": "Title", "line_index": 0, "line_count": 3, "label": None},
    ]
    (tmp_path / "l.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    documents = read_line_documents([tmp_path / "l.jsonl"])
    assert documents.ids == ["a", "b"]
    assert documents.lines == [["Title", "", "Menu"], ["second page"]]  # an index no row names is a blank line
    assert documents.labels == [[None, None, "clutter"], ["keep"]]
    for bad, message in [
        ({"text": "x", "line_index": 0, "line_count": 1, "label": "keep"}, "needs `url`, `line_index` and `line_count`"),
        ({"url": "a", "text": "x", "line_index": 3, "line_count": 3, "label": "keep"}, "line_index 3 is outside"),
        ({"url": "a", "text": "x", "line_index": 0, "line_count": 4, "label": "keep"}, "has line_count 4 here and 3 before"),
    ]:
        (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in [*rows, bad]) + "\n")
        with pytest.raises(InputError, match=message):
            read_line_documents([tmp_path / "bad.jsonl"])
