"""The extraction-limits bench's parts on hand-made pages: visible text, a line's HTML context,
training shares and the cross-validated line scores."""

from __future__ import annotations

from bench.bench_extraction import Page
from bench.bench_extraction_limits import (
    cleaned_texts,
    cross_validated_scores,
    html_context_tokens,
    training_share,
    visible_text,
)
from thresher.pipeline.prepare.extraction_eval import cv_splits

PAGE = """<html><head><title>T</title><style>p { color: red }</style></head><body>
<nav class="main-nav"><ul><li><a href="/">Home</a></li><li>Sports</li></ul></nav>
<div id="articleBody" class="storyContent"><p>The river rose two metres overnight after the storm.</p>
<p>Residents were told to leave <b>before noon</b> on Sunday.</p></div>
<div class="related-links"><p>Read more: ten ways to stay dry this winter and beyond</p></div>
<script>var hidden = "not visible text";</script><noscript>Enable JavaScript</noscript>
<div class="comment-list"><div class="comment-body">河水上涨，请大家注意安全。</div></div>
</body></html>"""


def test_visible_text_holds_what_a_reader_sees_and_no_script_or_style():
    text = visible_text(PAGE)
    assert "The river rose two metres" in text and "before noon" in text and "河水上涨" in text
    assert "not visible text" not in text and "color: red" not in text and "Enable JavaScript" not in text
    assert visible_text("") == ""


def test_each_line_gets_its_element_and_ancestors_class_words():
    lines = [
        "The river rose two metres overnight after the storm.",
        "",
        "Residents were told to leave before noon on Sunday.",
        "Read more: ten ways to stay dry this winter and beyond",
        "Home",
        "河水上涨，请大家注意安全。",
        "A line that the page does not hold at all",
    ]
    tokens = [line.split() for line in html_context_tokens(PAGE, lines)]
    assert tokens[0][:2] == ["ctx_exact", "t_p"]
    # camelCase and id words are split; ancestors' words get their own prefix
    assert {"a_div", "d_article", "d_body", "d_story", "d_content"} <= set(tokens[0])
    assert tokens[1] == []  # blank lines get no tokens
    assert "ctx_exact" in tokens[2] and "d_story" in tokens[2]  # inline <b> inside the paragraph: the <p> is found
    assert {"t_p", "d_related", "d_links"} <= set(tokens[3]) and "d_story" not in tokens[3]
    assert {"t_a", "a_li", "a_nav", "d_main", "d_nav"} <= set(tokens[4])
    assert {"t_div", "d0_comment", "d0_body", "d_list"} <= set(tokens[5])
    assert tokens[6] == ["ctx_none"]
    # a line that is only part of an element's text is found by its start
    part = html_context_tokens(PAGE, ["Residents were told to leave before noon and more words"])[0].split()
    assert part[:2] == ["ctx_prefix", "t_p"]


def test_training_shares_grow_by_nesting_and_cut_across_folds():
    urls = {f"https://site{i}.org/page" for i in range(400)}
    quarter, half, whole = (training_share(urls, share) for share in (0.25, 0.5, 1.0))
    assert quarter < half < whole == urls
    assert 60 < len(quarter) < 140 and 160 < len(half) < 240
    for train, _ in cv_splits(urls, 5):
        picked = training_share(train, 0.5)
        assert picked <= train and 0.3 < len(picked) / len(train) < 0.7


def test_cross_validated_scores_never_score_a_page_with_a_model_that_saw_it():
    """Each page's keep and clutter lines are worded only on that page and have the same shape, so
    only a model that trained on the page can tell them apart; half the pages put the keep line first."""
    from thresher.classifiers.clutter import line_input
    from thresher.classifiers.fasttext_backend import FastTextClassifier

    pages, lines_of, labels_of = [], {}, {}
    for i in range(40):
        url = f"https://news{i}.example/story"
        pages.append(Page(url, "scrapinghub", {"articleBody": ""}, b"", ""))
        keep, clutter = f"alpha{i} beta{i} gamma{i} delta{i}.", f"omega{i} sigma{i} kappa{i} theta{i}."
        lines_of[url] = [keep, "", clutter] if i % 2 else [clutter, "", keep]
        labels_of[url] = ["keep", None, "clutter"] if i % 2 else ["clutter", None, "keep"]
    params = {"epoch": 50, "lr": 0.5, "dim": 16, "wordNgrams": 2, "bucket": 100_000, "minCount": 1}
    scores = cross_validated_scores(pages, lines_of, labels_of, params)
    assert set(scores) == set(lines_of) and all(row[1] is None for row in scores.values())

    def separation(found: dict[str, list]) -> float:
        gaps = [row[labels_of[u].index("keep")] - row[labels_of[u].index("clutter")] for u, row in found.items()]
        return sum(gaps) / len(gaps)

    assert abs(separation(scores)) < 0.3
    # the same model trained on every page (what a leak would be) separates them: the check can fail
    texts = [line_input(line, i, 3) for u in lines_of for i, line in enumerate(lines_of[u]) if labels_of[u][i]]
    leaked = FastTextClassifier.train(texts, [label for u in lines_of for label in labels_of[u] if label], params, seed=0)
    leaked_scores = {u: [float(v) if labels_of[u][i] else None for i, v in enumerate(leaked.label_scores(
        [line_input(line, i, 3) for i, line in enumerate(lines_of[u])], "keep"))] for u in lines_of}
    assert separation(leaked_scores) > 0.8
    cleaned = cleaned_texts(lines_of, leaked_scores, 0.5)
    assert all("alpha" in text and "omega" not in text for text in cleaned.values())
