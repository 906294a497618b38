"""Line clutter: weak-label rules, the model input, and line removal around any classifier."""

from __future__ import annotations

import numpy as np

from thresher.classifiers.base import TextClassifier, load_classifier
from thresher.classifiers.clutter import (
    CLUTTER,
    KEEP,
    LINE_FEATURES,
    line_features,
    line_input,
    line_scores,
    remove_clutter,
    shipped_model_dir,
    weak_clutter_label,
)

MARKERS = len(line_input("", 0, 1).split())


class WordCountScorer(TextClassifier):
    """A real (if simple) classifier: P(keep) grows with the words of the line."""

    def __init__(self):
        super().__init__([CLUTTER, KEEP])

    def predict_proba(self, texts):
        keep = np.array([min(1.0, (len(t.split()) - MARKERS) / 10) for t in texts])  # minus the marker tokens
        return np.column_stack([1 - keep, keep])

    @classmethod
    def train(cls, texts, labels, params=None, seed=0):
        return cls()

    def _save_model(self, directory):
        return {}

    @classmethod
    def _load_model(cls, directory, manifest):
        return cls()


def test_weak_rules_label_clear_cases_only():
    assert weak_clutter_label("Sign in | Register") == (CLUTTER, "boilerplate_phrase")
    assert weak_clutter_label("1,234 views") == (CLUTTER, "counter")
    assert weak_clutter_label("======") == (CLUTTER, "no_letters")
    assert weak_clutter_label("FREE SHIPPING ON ALL ORDERS") == (CLUTTER, "mostly_uppercase")
    assert weak_clutter_label("Home › News › World › Asia") == (CLUTTER, "navigation_separators")
    assert weak_clutter_label("上一篇：春天来了") == (CLUTTER, "boilerplate_phrase")
    assert weak_clutter_label("The river floods every spring, and the farmers plant after it recedes.") == (KEEP, "sentence_line")
    assert weak_clutter_label("研究人员在湖边每天早上测量水温，记录了三年的数据。")[0] == KEEP
    assert weak_clutter_label("A heading of five words") is None
    assert weak_clutter_label("   ") is None


def test_line_input_marks_position_length_shares_and_origin():
    assert line_input("Home", 0, 10).startswith("len0 pos_first __rel0__ ")
    assert line_input("Home", 0, 10).endswith(" __tag_none__ Home")
    assert line_input("one two three four five six seven eight nine", 5, 10).startswith("len2 pos_middle __rel2__")
    assert line_input("x", 9, 10).startswith("len0 pos_last __rel4__")
    assert "__tag_item__" in line_input("Home", 0, 10, "item")
    assert "__punct0__" in line_input("plain words here", 5, 10) and "__punct4__" in line_input("a|b|c|d", 5, 10)
    assert "__link0__" in line_input("plain words", 5, 10) and "__link2__" in line_input("see www.example.com/x", 5, 10)
    assert "__digit4__" in line_input("2024-05-10 12:00", 5, 10) and "__end1__" in line_input("A sentence.", 5, 10)


def test_line_features_measure_each_line_and_its_document():
    rows = line_features(["Home", "A full sentence of words.", "Home", "研究人员在湖边", ""])
    assert len(rows) == 5 and all(len(row) == len(LINE_FEATURES) for row in rows)
    column = {name: [row[i] for row in rows] for i, name in enumerate(LINE_FEATURES)}
    assert column["repeated_in_document"] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert column["ends_sentence"] == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert column["first_lines"] == [1.0, 1.0, 1.0, 0.0, 0.0] and column["last_lines"] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert column["relative_position"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert column["cjk_share"][3] == 1.0 and column["cjk_share"][1] == 0.0
    assert abs(sum(column["document_char_share"]) - 1.0) < 1e-9
    assert column["log_chars"][1] > column["log_chars"][0] and column["log_chars"][4] == 0.0


class OriginScorer(WordCountScorer):
    """Removes list items and nothing else: shows that the origins reach the model input."""

    def predict_proba(self, texts):
        keep = np.array([0.0 if "__tag_item__" in t else 1.0 for t in texts])
        return np.column_stack([1 - keep, keep])


def test_line_origins_reach_the_model():
    texts = ["Menu\nA paragraph of text.", "Menu\nA paragraph of text."]
    scores = line_scores(texts, OriginScorer(), origins=[["item", "p"], None])
    assert scores == [[0.0, 1.0], [1.0, 1.0]]  # without origins a line is "none"
    assert [r.text for r in remove_clutter(texts, OriginScorer(), 0.5, [["item", "p"], None])] == ["A paragraph of text.", texts[1]]


def test_shipped_model_loads_and_tells_navigation_from_prose():
    model = load_classifier(shipped_model_dir())
    assert sorted(model.labels) == [CLUTTER, KEEP]
    assert (shipped_model_dir() / "model.ftz").stat().st_size < 4_000_000  # quantized: a few MB at most
    prose = (
        "The river floods every spring, and the farmers plant their fields after the water recedes, "
        "as their families have done for generations."
    )
    text = "\n".join(["Sign in | Register | Home | Contact", prose, prose.replace("river", "lake"), "Share on Facebook", "© 2024 All rights reserved"])
    scores = line_scores([text], model)[0]
    assert len(scores) == 5 and all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert min(scores[1], scores[2]) > max(scores[0], scores[3], scores[4])


def test_remove_clutter_drops_low_scoring_lines_and_keeps_blank_ones():
    prose = "This sentence carries enough words to be kept by the scorer here."
    texts = [f"Menu\n{prose}\n\n{prose}\nLogin", prose, "", "Only\nShort"]
    results = remove_clutter(texts, WordCountScorer(), threshold=0.5)
    assert results[0].text == f"{prose}\n\n{prose}"
    assert [line for line, _ in results[0].removed] == ["Menu", "Login"]
    assert all(score < 0.5 for _, score in results[0].removed)
    assert results[1].text == prose and results[1].removed == []  # nothing removed: unchanged
    assert results[2].text == "" and results[2].removed == []
    assert results[3].text == "" and len(results[3].removed) == 2
    assert [r.text for r in remove_clutter(texts, WordCountScorer(), threshold=0.0)] == texts


def test_line_scores_align_with_the_lines_and_remove_lines_uses_them():
    from thresher.classifiers.clutter import line_scores
    from thresher.pipeline.select.batches import remove_lines

    text = "Home\n\nA sentence of quite a few words to keep here.\nShare"
    (scores,) = line_scores([text], WordCountScorer())
    assert len(scores) == len(text.split("\n")) and scores[1] is None
    assert scores[2] > 0.5 > scores[0]
    cleaned = remove_lines(text, scores, 0.5)
    assert cleaned.text == "A sentence of quite a few words to keep here."
    assert remove_clutter([text], WordCountScorer(), 0.5)[0] == cleaned
