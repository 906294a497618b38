"""The line sequence backend, trained on the spot on hand-made pages: the sequence effect, seeded
determinism, batch independence, storage, and the tagger and training interfaces around it."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from thresher.classifiers.base import load_classifier
from thresher.classifiers.clutter import CLUTTER, KEEP, line_scores
from thresher.classifiers.line_sequence import LineSequenceClassifier, token_ids
from thresher.classifiers.tagging import Tagger, tag_table
from thresher.classifiers.training import evaluate_saved, read_line_documents, train_and_save_documents
from thresher.schemas.documents import RULES

SMALL = {"buckets": 4096, "embedding_dim": 8, "hidden": 16, "epochs": 40, "lr": 0.01, "dropout": 0.0}
TOPICS = ["rivers", "markets", "harvests", "bridges", "schools", "storms", "trains", "forests"]
SECTION = "Updates"  # the same short line: a menu entry in a menu, a section heading inside the article


def sentence(rng: random.Random, topic: str) -> str:
    words = [rng.choice(["the", "a", "every", "our"]), topic, rng.choice(["grew", "changed", "moved", "opened"])]
    words += rng.sample(["slowly", "after", "the", "long", "winter", "and", "people", "noticed", "it", "early"], 6)
    return " ".join(words).capitalize() + "."


def page(rng: random.Random, menu_at: int) -> tuple[list[str], list[str]]:
    """A page: paragraphs with a section heading (`SECTION`, keep) and a menu block (short entries,
    `SECTION` among them, clutter) at paragraph `menu_at`."""
    paragraphs = [sentence(rng, rng.choice(TOPICS)) + " " + sentence(rng, rng.choice(TOPICS)) for _ in range(6)]
    lines, labels = [], []
    for index, paragraph in enumerate(paragraphs):
        if index == menu_at:
            menu = rng.sample(["Home", "News", "Sport", "Contact", "Archive", "Login"], 4) + [SECTION]
            rng.shuffle(menu)
            lines += menu
            labels += [CLUTTER] * len(menu)
        if index == 6 - menu_at:
            lines.append(SECTION)
            labels.append(KEEP)
        lines.append(paragraph)
        labels.append(KEEP)
    return lines, labels


def pages(seed: int, count: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    return [page(rng, rng.choice([1, 2, 4, 5])) for _ in range(count)]


@pytest.fixture(scope="module")
def model():
    return LineSequenceClassifier.train_documents(pages(0, 60), SMALL, seed=3)


def scores_of(model, lines):
    return model.document_line_scores(["\n".join(lines)])[0]


def test_token_ids_are_stable_hashes_of_tokens_and_bigrams():
    assert token_ids("Hello world", 1000) == token_ids("Hello world", 1000) and len(token_ids("Hello world", 1000)) == 3
    assert len(token_ids("研究人员", 1000)) == 4 + 3  # CJK characters stand alone, plus their bigrams


def test_a_menu_block_scores_low_and_the_same_line_is_judged_by_its_neighbours(model):
    for lines, labels in pages(99, 10):  # pages the model never saw
        scores = scores_of(model, lines)
        menu = [s for s, label in zip(scores, labels, strict=True) if label == CLUTTER]
        content = [s for s, label in zip(scores, labels, strict=True) if label == KEEP]
        assert max(menu) < 0.5 < min(content)
        in_menu = [s for line, s, label in zip(lines, scores, labels, strict=True) if line == SECTION and label == CLUTTER]
        in_text = [s for line, s, label in zip(lines, scores, labels, strict=True) if line == SECTION and label == KEEP]
        # the same text, scored by what surrounds it
        assert in_menu[0] < 0.5 < in_text[0]


def test_training_is_seeded_and_scores_do_not_depend_on_the_batch(model):
    again = LineSequenceClassifier.train_documents(pages(0, 60), SMALL, seed=3)
    other = LineSequenceClassifier.train_documents(pages(0, 60), SMALL, seed=4)
    texts = ["\n".join(lines) for lines, _ in pages(7, 5)] + ["", "\n\nOnly one line\n"]
    together = model.document_line_scores(texts)
    assert again.document_line_scores(texts) == together != other.document_line_scores(texts)
    assert [model.document_line_scores([text])[0] for text in texts] == together
    assert together[-2] == [None] and together[-1][:2] == [None, None] and together[-1][2] is not None
    assert line_scores(texts, model) == together  # the clutter tagger's entry point hands it whole documents


def test_save_and_load_give_identical_scores(model, tmp_path):
    model.save(tmp_path / "seq")
    loaded = load_classifier(tmp_path / "seq")
    texts = ["\n".join(lines) for lines, _ in pages(8, 4)]
    assert isinstance(loaded, LineSequenceClassifier) and loaded.labels == [CLUTTER, KEEP]
    assert loaded.document_line_scores(texts) == model.document_line_scores(texts)
    assert sum(p.stat().st_size for p in (tmp_path / "seq").iterdir()) < 1_000_000
    manifest = json.loads((tmp_path / "seq" / "classifier.json").read_text())
    manifest["line_features"] = manifest["line_features"][:-1]
    (tmp_path / "seq" / "classifier.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="other line features"):
        load_classifier(tmp_path / "seq")


def test_the_lines_tagger_runs_it_like_any_clutter_model(model, tmp_path):
    model.save(tmp_path / "seq")
    texts = ["\n".join(lines) for lines, _ in pages(9, 3)]
    rows = [{name: None for name in RULES.names} | {"id": f"d{i}", "text": text} for i, text in enumerate(texts)]
    tagger = Tagger("clutter", str(tmp_path / "seq"), kind="lines", input="clutter")
    tagged = tag_table(pa.Table.from_pylist(rows, schema=RULES), [tagger]).to_pylist()
    assert [row["clutter_line_scores"] for row in tagged] == model.document_line_scores(texts)
    assert all(len(row["clutter_line_scores"]) == len(row["text"].split("\n")) for row in tagged)


def test_single_texts_score_as_one_line_documents(model):
    probs = model.predict_proba(["Home", "The river rose after the long winter and people noticed it early.", ""])
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 1] == model.document_line_scores(["Home"])[0][0]
    assert model.predict_proba([]).shape == (0, 2)


def test_bad_training_input_is_refused():
    with pytest.raises(ValueError, match="both labels"):
        LineSequenceClassifier.train_documents([(["a", "b"], [KEEP, None])], SMALL)
    with pytest.raises(ValueError, match="2 labels for a document of 3 lines"):
        LineSequenceClassifier.train_documents([(["a", "b", "c"], [KEEP, CLUTTER])], SMALL)
    with pytest.raises(ValueError, match="unknown line_sequence options"):
        LineSequenceClassifier.train_documents(pages(0, 2), {"epoch": 3})
    with pytest.raises(ValueError, match="learns from whole documents"):
        LineSequenceClassifier.train(["a"], [KEEP])


def test_trained_from_clutter_rows_with_a_document_holdout_that_eval_reproduces(tmp_path):
    path = tmp_path / "lines.jsonl"
    with path.open("w") as out:
        for number, (lines, labels) in enumerate(pages(1, 40)):
            for index, (line, label) in enumerate(zip(lines, labels, strict=True)):
                # every third line unlabelled: context only
                row = {"url": f"https://x.org/{number}", "text": line, "line_index": index, "line_count": len(lines)}
                out.write(json.dumps(row | {"label": None if index % 3 == 2 else label}) + "\n")
    documents = read_line_documents([path])
    assert len(documents) == 40 and documents.lines[0] == pages(1, 1)[0][0]
    record = train_and_save_documents("line_sequence", documents, tmp_path / "m", SMALL, holdout=0.25, seed=0, sources=[str(path)])
    assert record["holdout_by"] == "document" and record["train_documents"] + 0 < 40
    assert record["heldout"]["examples"] > 0 and record["heldout"]["auc"] > 0.9
    assert evaluate_saved(tmp_path / "m") == record["heldout"]


def test_a_fasttext_first_stage_is_learned_out_of_fold_and_travels_with_the_model(tmp_path):
    stacked = LineSequenceClassifier.train_documents(pages(0, 30), SMALL | {"first_stage_folds": 2}, seed=3)
    assert stacked.first_stage is not None and stacked.first_stage.backend == "fasttext"
    texts = ["\n".join(lines) for lines, _ in pages(5, 4)]
    stacked.save(tmp_path / "stacked")
    assert (tmp_path / "stacked" / "first_stage" / "classifier.json").is_file()
    assert load_classifier(tmp_path / "stacked").document_line_scores(texts) == stacked.document_line_scores(texts)
    for (_lines, labels), scores in zip(pages(5, 4), stacked.document_line_scores(texts), strict=True):
        menu = [s for s, label in zip(scores, labels, strict=True) if label == CLUTTER]
        assert max(menu) < 0.5 < min(s for s, label in zip(scores, labels, strict=True) if label == KEEP)
