"""Line labels from ground truth on hand-made cases: English and Chinese, repeats, half-content lines."""

from __future__ import annotations

import pytest

from thresher.classifiers.clutter import CLUTTER, KEEP
from thresher.classifiers.line_labels import content_labels, normalize, page_line_labels, snippet_labels, units

ARTICLE = (
    "River towns prepare for spring\n"
    "The river floods every spring, and the farmers plant their fields after the water recedes.\n"
    "Engineers have proposed a new levee that would protect the lower town from the worst floods."
)
CHINESE = "茶叶的历史\n茶叶的历史可以追溯到几千年前，人们在山间种植茶树，采摘嫩叶。\n再经过杀青、揉捻和干燥制成成品。"


def test_normalisation_and_units():
    assert normalize("  Ｔｅａ\u3000 TIME \n") == "tea time"
    assert units("the river floods") == ["the", "river", "floods"]
    assert units("茶叶 历史") == ["茶", "叶", "历", "史"]  # CJK matches character by character


def test_english_content_and_clutter_lines():
    lines = [
        "River towns prepare for spring",  # a ground-truth line (a heading)
        "The river floods every spring, and the farmers plant their fields after the water recedes.",
        "Sign up for our newsletter to get the best stories every morning",
        "Home",  # short and not a ground-truth line, though "home" could occur in any text
        "",
    ]
    assert content_labels(lines, ARTICLE) == [KEEP, KEEP, CLUTTER, CLUTTER, None]


def test_chinese_lines_match_by_characters():
    lines = ["茶叶的历史可以追溯到几千年前，人们在山间种植茶树，采摘嫩叶。", "上一篇：春天来了 下一篇：夏天的雨", "茶叶的历史"]
    assert content_labels(lines, CHINESE) == [KEEP, CLUTTER, KEEP]
    # the same text with different spacing and full-width punctuation still matches
    assert content_labels(["茶叶的历史 可以追溯到几千年前, 人们在山间种植茶树"], CHINESE) == [KEEP]


def test_a_line_that_is_half_content_is_kept_and_one_mostly_clutter_is_not():
    content = "The river floods every spring, and the farmers plant their fields after the water recedes."
    half = f"{content} Click here to subscribe now and get daily updates sent"  # 13 of 23 word shingles match
    mostly_clutter = "The river floods. Click here to subscribe now and get daily updates sent to your inbox today"
    assert content_labels([half], ARTICLE) == [KEEP]
    assert content_labels([mostly_clutter], ARTICLE) == [CLUTTER]


def test_repeated_lines_are_kept_only_as_often_as_the_ground_truth_has_them():
    line = "The river floods every spring, and the farmers plant their fields after the water recedes."
    assert content_labels([line, "Share", line], ARTICLE) == [KEEP, CLUTTER, CLUTTER]
    twice = ARTICLE + "\n" + line
    assert content_labels([line, line, line], twice) == [KEEP, KEEP, CLUTTER]


def test_snippet_labels_touch_only_lines_with_snippets():
    lines = ["200 g Zucker", "zu einem glatten Teig verarbeiten.", "Sharen mit Facebook", "Ein Absatz ohne Schnipsel", "Teig"]
    labels = snippet_labels(lines, ["200 g Zucker", "Zu einem glatten Teig verarbeiten. Dann backen."], ["Sharen mit"])
    # the second line is part of a wanted snippet; a short fragment ("Teig") is too ambiguous to label
    assert labels == [KEEP, KEEP, CLUTTER, None, None]


def test_page_labels_dispatch_on_the_source():
    lines = ["River towns prepare for spring", "Subscribe to our newsletter for more stories like this one"]
    assert page_line_labels(lines, "scrapinghub", {"articleBody": ARTICLE}) == [KEEP, CLUTTER]
    assert page_line_labels(lines, "magic_html", {"content": ARTICLE}) == [KEEP, CLUTTER]
    assert page_line_labels(lines, "trafilatura", {"with": ["towns prepare"], "without": []}) == [KEEP, None]
    with pytest.raises(ValueError, match="unknown ground-truth source"):
        page_line_labels(lines, "nope", {})
