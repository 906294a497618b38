"""Line clutter: weak-label rules, the model input, and line removal around any classifier."""

from __future__ import annotations

import numpy as np

from classifiers.base import TextClassifier
from classifiers.clutter import CLUTTER, KEEP, line_input, remove_clutter, weak_clutter_label


class WordCountScorer(TextClassifier):
    """A real (if simple) classifier: P(keep) grows with the words of the line."""

    def __init__(self):
        super().__init__([CLUTTER, KEEP])

    def predict_proba(self, texts):
        keep = np.array([min(1.0, (len(t.split()) - 2) / 10) for t in texts])  # minus the two marker tokens
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


def test_line_input_marks_length_and_position():
    assert line_input("Home", 0, 10) == "len0 pos_first Home"
    assert line_input("one two three four five six seven eight nine", 5, 10).startswith("len2 pos_middle")
    assert line_input("x", 9, 10).startswith("len0 pos_last")


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
    from classifiers.clutter import line_scores, remove_lines

    text = "Home\n\nA sentence of quite a few words to keep here.\nShare"
    (scores,) = line_scores([text], WordCountScorer())
    assert len(scores) == len(text.split("\n")) and scores[1] is None
    assert scores[2] > 0.5 > scores[0]
    cleaned = remove_lines(text, scores, 0.5)
    assert cleaned.text == "A sentence of quite a few words to keep here."
    assert [line for line, _ in cleaned.removed] == ["Home", "Share"]
    assert remove_clutter([text], WordCountScorer(), 0.5)[0] == cleaned
    assert remove_lines(text, scores, 0.0).text == text  # nothing under the threshold: unchanged
