"""Select on tagged rows without Spark: keep rules, global cuts and ties, line removal, copies."""

from __future__ import annotations

import random
import re
import sys

import pyarrow as pa
import pytest
from stage_rows import read_jsonl

from thresher.pipeline.lexicon import HAN
from thresher.pipeline.select.batches import (
    GUARDS,
    STATUS_KEPT,
    ColumnCheck,
    KeepCheck,
    LineGuards,
    SelectSettings,
    copy_table,
    estimated_tokens,
    filter_table,
    remove_lines,
    selected_schema,
)
from thresher.pipeline.select.mix import TopFractionCut, sample_copies
from thresher.pipeline.select.rehydrate import FINEWEB2_REHYDRATE, parse_rehydrate
from thresher.schemas.documents import RULES
from thresher.schemas.tags import DeclaredTagger, tagged_schema

TAGGERS = (DeclaredTagger("page_type", "/m/p"), DeclaredTagger("clutter", "/m/c", kind="lines"), DeclaredTagger("quality", "/m/q"))


def tagged_row(doc_id, text, page_type=("article", 0.9), line_scores=None, quality=0.5):
    row = {name: None for name in RULES.names}
    row.update({"doc_id": doc_id, "url": f"http://{doc_id}.example/", "text": text})
    row.update({"page_type_label": page_type[0], "page_type_score": page_type[1],
                "page_type_top": [{"label": page_type[0], "score": page_type[1]}]})
    row["clutter_line_scores"] = line_scores if line_scores is not None else [1.0 if line.strip() else None for line in text.split("\n")]
    label = "1" if quality >= 0.5 else "0"
    row.update({"quality_label": label, "quality_score": max(quality, 1 - quality),
                "quality_top": sorted([{"label": "1", "score": quality}, {"label": "0", "score": 1 - quality}], key=lambda e: -e["score"])})
    return row


def table(rows):
    return pa.Table.from_pylist(rows, schema=tagged_schema(TAGGERS))


def by_id(result):
    return {r["doc_id"]: r for r in result.to_pylist()}


def test_keep_rules_and_combine_in_order_with_named_rejects():
    rows = [
        tagged_row("a", "good text here", ("article", 0.9), quality=0.9),
        tagged_row("b", "forum text", ("forum", 0.8), quality=0.9),
        tagged_row("c", "unsure forum", ("forum", 0.3), quality=0.9),  # under label_min_score: the page rule lets it pass
        tagged_row("d", "low quality", ("article", 0.9), quality=0.2),
        tagged_row("e", "forum and low", ("forum", 0.8), quality=0.2),  # fails both: the first rule names it
    ]
    settings = SelectSettings(taggers=TAGGERS, checks=(
        KeepCheck("page_type", "label_in", labels=("article",), label_min_score=0.5),
        KeepCheck("quality", "min_score", score_label="1", threshold=0.5),
    ))
    result = by_id(filter_table(table(rows), settings))
    assert {k: v["status"] for k, v in result.items()} == {
        "a": STATUS_KEPT, "b": "page_type:label_in", "c": STATUS_KEPT, "d": "quality:min_score", "e": "page_type:label_in"}
    assert result["b"]["reject_detail"] == "label=forum score=0.8000"
    assert result["d"]["reject_detail"] == "score=0.2000 min=0.5"
    assert result["a"]["text"] == "good text here" and result["a"]["tokens"] == 3 == result["a"]["tokens_in"]


def test_label_not_in_drops_only_the_named_labels():
    check = KeepCheck("page_type", "label_not_in", labels=("adult",))
    assert check.failure(tagged_row("a", "x", ("adult", 0.7))) == "label=adult score=0.7000"
    assert check.failure(tagged_row("b", "x", ("article", 0.7))) is None


def test_a_top_percent_rule_reads_its_label_score_against_the_global_cut():
    cut = TopFractionCut(threshold=0.6, tie_hash=0.0, tie_key="", seed=0, kept=1)
    check = KeepCheck("quality", "top_percent", score_label="1", threshold=50, cut=cut)
    assert check.failure(tagged_row("a", "x", quality=0.7)) is None
    assert check.failure(tagged_row("b", "x", quality=0.3)) == "score=0.3000 cut=0.6000"  # P(1), not the top label's 0.7


def test_lines_under_the_threshold_go_and_an_emptied_document_is_a_reject():
    text = "Home | News | Sport\n\nA long informative sentence about science.\nShare this"
    rows = [
        tagged_row("a", text, line_scores=[0.1, None, 0.9, 0.4]),
        tagged_row("b", "Login\nRegister", line_scores=[0.2, 0.3]),
        tagged_row("c", "Fine line.", line_scores=[0.95]),
    ]
    settings = SelectSettings(taggers=TAGGERS, line_thresholds=(("clutter", 0.5),), line_guards=LineGuards.off())
    result = by_id(filter_table(table(rows), settings))
    assert result["a"]["text"] == "A long informative sentence about science."
    assert result["a"]["lines_removed_clutter"] == 2 and result["a"]["status"] == STATUS_KEPT
    assert [(r["line"], r["score"], r["rule"]) for r in result["a"]["removed_lines"]] == [
        ("Home | News | Sport", 0.1, "clutter_line"), ("Share this", 0.4, "clutter_line")]
    assert result["b"]["status"] == "clutter_emptied" and result["b"]["reject_detail"] == "lines_removed=2"
    assert result["c"]["text"] == "Fine line." and result["c"]["removed_lines"] == []
    assert result["a"]["tokens_in"] == estimated_tokens(text) > result["a"]["tokens"]


def test_pii_is_replaced_before_line_removal_in_every_document_and_tokens_follow():
    from thresher.pipeline.pii import find_pii

    taggers = (*TAGGERS, DeclaredTagger("pii", kind="pii"))
    texts = {"a": "Menu\nWrite to jane.doe@example.com or call +44 20 7946 0958 today.",
             "b": "Forum mail a@example.org here.", "c": "Nothing personal."}
    rows = [{**tagged_row(doc_id, text, page_type=("forum" if doc_id == "b" else "article", 0.9)),
             "pii_spans": [span._asdict() for span in find_pii(text)]} for doc_id, text in texts.items()]
    rows[0]["clutter_line_scores"] = [0.1, 0.9]
    settings = SelectSettings(taggers=taggers, checks=(KeepCheck("page_type", "label_in", labels=("article",)),),
                              line_thresholds=(("clutter", 0.5),), line_guards=LineGuards.off(),
                              pii_tagger="pii", pii_placeholders={"email": "<EMAIL>", "ip_address": "<IP_ADDRESS>"})
    result = by_id(filter_table(pa.Table.from_pylist(rows, schema=tagged_schema(taggers)), settings))
    assert result["a"]["text"] == "Write to <EMAIL> or call +44 20 7946 0958 today."  # phone not replaced, line "Menu" removed
    assert result["a"]["removed_lines"][0]["line"] == "Menu"
    assert result["a"]["tokens"] == estimated_tokens(result["a"]["text"]) and result["a"]["tokens_in"] == estimated_tokens(texts["a"])
    assert result["b"]["status"] == "page_type:label_in" and result["b"]["text"] == "Forum mail <EMAIL> here."  # a reject too
    assert result["c"]["text"] == "Nothing personal."
    assert "pii_spans" not in selected_schema(settings).names


def test_remove_lines_drops_the_lines_scored_under_the_threshold_and_keeps_blank_ones():
    text = "Home\n\nA sentence of quite a few words to keep here.\nShare"
    scores = [0.1, None, 0.9, 0.2]  # as classifiers.clutter.line_scores gives them: blank lines unscored
    cleaned = remove_lines(text, scores, 0.5)
    assert cleaned.text == "A sentence of quite a few words to keep here."
    assert [line for line, _ in cleaned.removed] == ["Home", "Share"]
    assert remove_lines(text, scores, 0.0).text == text  # nothing under the threshold: unchanged


def test_a_rejected_document_keeps_its_lines():
    rows = [tagged_row("a", "Menu\nBody text.", ("forum", 0.9), line_scores=[0.1, 0.9])]
    settings = SelectSettings(taggers=TAGGERS, checks=(KeepCheck("page_type", "label_in", labels=("article",)),),
                              line_thresholds=(("clutter", 0.5),))
    row = filter_table(table(rows), settings).to_pylist()[0]
    assert row["status"] == "page_type:label_in" and row["text"] == "Menu\nBody text." and row["removed_lines"] == []


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("three plain words", 3), ("你好世界", 4), ("GPT 模型 ok", 4)])
def test_estimated_tokens_count_words_and_cjk_characters(text, tokens):
    assert estimated_tokens(text) == tokens


# The definition estimated_tokens implements faster: one token per CJK character, one per maximal
# run of other non-whitespace characters.
REFERENCE_TOKEN = re.compile(f"[{HAN}]|[^\\s{HAN}]+")  # one per Han character, one per other run


@pytest.fixture(scope="module")
def real_texts(shared_data) -> list[str]:
    """DCLM English and ChineseWebText Chinese documents."""
    quality = shared_data / "quality"
    return ([row["text"] for row in read_jsonl(quality / "dclm" / "majority_data.jsonl")]
            + [row["raw_content"] for row in read_jsonl(quality / "chinesewebtext" / "cleared1.jsonl")])


def test_estimated_tokens_equal_the_regex_definition_on_real_texts(real_texts):
    texts = real_texts
    assert any(not t.isascii() for t in texts) and any(re.search("[\u4e00-\u9fff]", t) for t in texts)
    assert [estimated_tokens(t) for t in texts] == [len(REFERENCE_TOKEN.findall(t)) for t in texts]


def test_estimated_tokens_equal_the_regex_definition_for_every_character():
    """Every code point alone, between two words and doubled before one: str.split's whitespace is the regex's \\s."""
    texts = [text for code in range(sys.maxunicode + 1) for char in [chr(code)] for text in (char, f"ab{char}cd", f"{char}{char} x")]
    assert [estimated_tokens(t) for t in texts] == [len(REFERENCE_TOKEN.findall(t)) for t in texts]
    assert estimated_tokens(None) == 0


def test_tokens_after_line_removal_are_the_cleaned_texts_tokens(real_texts):
    texts = real_texts[::2]
    rng = random.Random(0)
    rows = [tagged_row(f"d{i}", text, line_scores=[rng.random() if line.strip() else None for line in text.split("\n")])
            for i, text in enumerate(texts)]
    settings = SelectSettings(taggers=TAGGERS, line_thresholds=(("clutter", 0.3),))
    result = filter_table(table(rows), settings).to_pylist()
    assert sum(r["tokens"] < r["tokens_in"] for r in result) > 100
    assert [r["tokens"] for r in result] == [estimated_tokens(r["text"]) for r in result]
    assert [r["tokens_in"] for r in result] == [estimated_tokens(text) for text in texts]


def test_copies_follow_the_class_weights_deterministically():
    rows = [tagged_row(f"d{i}", "text") for i in range(40)]
    for i, row in enumerate(rows):
        row["page_type_label"] = "science.physics" if i % 2 else "shopping.fashion"
    settings = SelectSettings(taggers=TAGGERS, class_tagger="page_type", weights={"science.physics": 2.5, "shopping.fashion": 0.3}, seed=7)
    filtered = filter_table(table(rows), settings)
    assert set(filtered.column("mix_class").to_pylist()) == {"science.physics", "shopping.fashion"}
    copied = copy_table(filtered, settings).to_pylist()
    for row in copied:
        weight = settings.weights[row["mix_class"]]
        assert row["sample_copies"] == sample_copies(row["doc_id"], weight, 7)
        assert (row["status"] == "rebalance_downsampled") == (row["sample_copies"] == 0)
    assert {r["sample_copies"] for r in copied if r["mix_class"] == "science.physics"} == {2, 3}
    assert copy_table(filtered, settings).to_pylist() == copied


def test_a_low_class_score_is_not_reweighted():
    rows = [tagged_row("a", "text", ("science.physics", 0.2)), tagged_row("b", "text", ("science.physics", 0.8))]
    settings = SelectSettings(taggers=TAGGERS, class_tagger="page_type", class_min_score=0.5)
    assert [r["mix_class"] for r in filter_table(table(rows), settings).to_pylist()] == ["", "science.physics"]


# Issue 25: guards a line model cannot override (pipeline.select.batches.LineGuards), with select's defaults.
REVIEW = " ".join(f"Sentence {i} of a long review says what the reviewer thought of the album, track by track." for i in range(160))


def test_a_flattened_table_page_keeps_its_review_whatever_the_line_model_says():
    # trafilatura flattens a table-laid-out page into one row; the line model scored it as clutter
    text = f"Home | Reviews | Contact\n| Reviews | {REVIEW} | Rating: 4/5 |\nCopyright 2009"
    rows = [tagged_row("t", text, line_scores=[0.01, 0.02, 0.01])]
    result = by_id(filter_table(table(rows), SelectSettings(taggers=TAGGERS, line_thresholds=(("clutter", 0.05),))))["t"]
    assert len(REVIEW) > 14_000 and REVIEW in result["text"] and result["status"] == STATUS_KEPT
    assert sum(entry["lines"] for entry in result["lines_guarded"]) >= 1
    assert all(entry["guard"] in GUARDS for entry in result["lines_guarded"])


def test_a_byline_and_date_page_keeps_its_article_body_whole():
    body = [f"Paragraph {i}: the council voted on Tuesday to fund the new library, which opens next spring." for i in range(4)]
    text = "\n".join(["By Jane Doe", "March 3, 2021", *body, "Share this article"])
    # a model that finds the whole page unlike its training pages: every line under the threshold
    rows = [tagged_row("b", text, line_scores=[0.01] * 7)]
    result = by_id(filter_table(table(rows), SelectSettings(taggers=TAGGERS, line_thresholds=(("clutter", 0.05),))))["b"]
    assert result["status"] == STATUS_KEPT
    assert all(paragraph in result["text"].split("\n") for paragraph in body)
    # removing everything would take the article: the removal is undone, byline and date included
    assert result["text"] == text and result["removed_lines"] == [] and result["lines_removed_clutter"] == 0
    assert {entry["guard"] for entry in result["lines_guarded"]} <= set(GUARDS)


@pytest.mark.parametrize("text", ["Login\nRegister", "Menu\nHome\nNews\nSport", "a\n\nb"])
def test_line_removal_never_empties_a_document(text):
    scores = [0.0 if line.strip() else None for line in text.split("\n")]
    result = filter_table(table([tagged_row("e", text, line_scores=scores)]),
                          SelectSettings(taggers=TAGGERS, line_thresholds=(("clutter", 0.5),))).to_pylist()[0]
    assert result["status"] == STATUS_KEPT and result["text"].strip()
    assert remove_lines(text, scores, 0.5, LineGuards()).text.strip()


def test_each_guard_keeps_what_it_names_and_off_keeps_nothing():
    long_line = "word " * 30 + "end."
    text = f"{long_line}\nnav\n| a | b | c | " + "x" * 300 + " |\nmore nav"
    scores = [0.0, 0.0, 0.0, 0.9]
    assert remove_lines(text, scores, 0.5, LineGuards.off()).text == "more nav"
    cleaned = remove_lines(text, scores, 0.5, LineGuards(dominant_share=1.0, prose_min_words=25, table_min_chars=300, max_removed_share=1.0))
    assert cleaned.guarded == {"long_prose": 1, "flattened_table": 1} and [line for line, _ in cleaned.removed] == ["nav"]
    dominant = remove_lines("short\n" + long_line, [0.0, 0.0], 0.5, LineGuards(dominant_share=0.5, never_empty=False))
    assert dominant.guarded == {"dominant_line": 1} and dominant.text == long_line
    capped = remove_lines(text, scores, 0.5, LineGuards(dominant_share=1.0, prose_min_words=0, table_min_chars=0, max_removed_share=0.5))
    assert capped.text == text and capped.guarded == {"removal_cap": 3} and capped.removed == []


DECONTAM_TAGGERS = (*TAGGERS, DeclaredTagger("decontam", kind="decontam", labels=("gsm8k", "cmmlu")))


def contaminated_row(doc_id, text, hits):
    """A tagged row with decontam columns: `hits` maps a benchmark to (item ids, spans)."""
    row = tagged_row(doc_id, text)
    row["decontam_hits"] = [{"benchmark": b, "item_ids": ids, "ngrams": 3} for b, (ids, _) in hits.items()]
    row["decontam_spans"] = [{"benchmark": b, "start": s, "end": e} for b, (_, spans) in hits.items() for s, e in spans]
    return row


@pytest.mark.parametrize("action", ["drop", "cut"])
def test_decontamination_drops_or_cuts_before_the_keep_rules(action):
    text = "kept start\nthe copied test question and its answer\nkept end"
    question = (text.index("the copied"), text.index(" and its answer"))
    rows = [contaminated_row("a", text, {"gsm8k": (["7"], [question])}),
            contaminated_row("b", "only the copied item", {"cmmlu": (["x:1"], [(0, 20)])}),
            contaminated_row("c", "clean text", {})]
    settings = SelectSettings(taggers=DECONTAM_TAGGERS, decontam_action=action,
                              checks=(KeepCheck("quality", "min_score", threshold=0.9),))  # would drop every row
    result = by_id(filter_table(pa.Table.from_pylist(rows, schema=tagged_schema(DECONTAM_TAGGERS)), settings))
    assert result["b"]["status"] == "decontam:cmmlu"  # dropped either way: nothing would be left after a cut
    assert result["c"]["status"] == "quality:min_score" and result["c"]["decontam_removed"] == []
    a = result["a"]
    if action == "drop":
        assert a["status"] == "decontam:gsm8k" and a["reject_detail"] == "items=7 ngrams=3"
        assert a["decontam_removed"] == [{"benchmark": "gsm8k", "item_ids": ["7"], "ngrams": 3, "chars": len(text)}]
    else:
        assert a["status"] == "quality:min_score"  # the cut document goes on to the keep rules
        assert a["text"] == "kept start\n and its answer\nkept end"
        assert a["decontam_removed"][0]["chars"] == question[1] - question[0]
        assert a["tokens_cut"] == estimated_tokens(text) - estimated_tokens(a["text"]) == a["tokens_in"] - a["tokens"]


def test_a_decontam_cut_and_pii_replacement_in_one_document_both_apply_at_the_tag_offsets():
    """Both edits use the offsets tag found in the original text: a placeholder before a cut must not shift
    the cut, and an address inside the cut goes with it."""
    from thresher.pipeline.pii import find_pii

    taggers = (*DECONTAM_TAGGERS, DeclaredTagger("pii", kind="pii"))
    text = "Mail jane.doe@example.com now.\nCopied question, ask bob@example.org please.\nKept end, or a@example.net"
    question = (text.index("Copied"), text.index(" please."))
    row = {**contaminated_row("a", text, {"gsm8k": (["7"], [question])}),
           "pii_spans": [span._asdict() for span in find_pii(text)]}
    settings = SelectSettings(taggers=taggers, decontam_action="cut", pii_tagger="pii", pii_placeholders={"email": "<EMAIL>"})
    result = by_id(filter_table(pa.Table.from_pylist([row], schema=tagged_schema(taggers)), settings))["a"]
    assert result["text"] == "Mail <EMAIL> now.\n please.\nKept end, or <EMAIL>"
    assert result["decontam_removed"][0]["chars"] == question[1] - question[0]
    assert result["tokens"] == estimated_tokens(result["text"])


def test_column_rules_keep_by_min_max_and_equals_and_fail_a_null():
    assert ColumnCheck("n", min=1, max=3).failure({"n": 2}) is None
    assert ColumnCheck("n", min=1, max=3).failure({"n": 3.5}) == "value=3.5"
    assert ColumnCheck("n", min=1).failure({"n": 0}) == "value=0"
    assert ColumnCheck("licence", equals="cc-by").failure({"licence": "cc-by"}) is None
    assert ColumnCheck("licence", equals="cc-by").failure({"licence": "all rights reserved"}) == "value='all rights reserved'"
    assert ColumnCheck("licence", equals="cc-by").failure({"licence": None}) == "value=None"
    assert ColumnCheck("licence", equals="cc-by").name == "column:licence"


def test_the_input_s_own_columns_pass_unchanged_and_a_column_rule_reads_them():
    from thresher.schemas import extend

    own = (pa.field("licence", pa.string()), pa.field("source", pa.struct([("hops", pa.list_(pa.int64()))])))
    settings = SelectSettings(taggers=TAGGERS, kept=own, column_checks=(ColumnCheck("licence", equals="cc-by"),))
    rows = [tagged_row("a", "first page") | {"licence": "cc-by", "source": {"hops": [1, 2]}},
            tagged_row("b", "second page") | {"licence": None, "source": None}]
    result = by_id(filter_table(pa.Table.from_pylist(rows, schema=extend(tagged_schema(TAGGERS), *own)), settings))
    assert [(r["status"], r["licence"], r["source"]) for r in result.values()] == [
        ("kept", "cc-by", {"hops": [1, 2]}), ("column:licence", None, None)]
    assert result["b"]["reject_detail"] == "value=None"


def test_rehydration_multiplies_a_kept_document_s_copies_by_its_cluster_size_s():
    sizes = {"alone": 1, "pair": 2, "four": 4, "big": 250, "huge": 5_000, "unknown": None}
    rows = [tagged_row(doc_id, "text") | {"minhash_cluster_size": size} for doc_id, size in sizes.items()]
    settings = SelectSettings(taggers=TAGGERS, rehydrate=parse_rehydrate(FINEWEB2_REHYDRATE))
    copied = by_id(copy_table(filter_table(table(rows), settings), settings))
    assert {doc_id: row["sample_copies"] for doc_id, row in copied.items()} == {
        "alone": 1, "pair": 2, "four": 3, "big": 8, "huge": 1, "unknown": 1}
    off = by_id(copy_table(filter_table(table(rows), SelectSettings(taggers=TAGGERS)), SelectSettings(taggers=TAGGERS)))
    assert {row["sample_copies"] for row in off.values()} == {1}
    # With rebalancing, the copies multiply: a weight of 2 and a cluster of 4 make 6.
    weighted = SelectSettings(taggers=TAGGERS, class_tagger="page_type", weights={"article": 2.0},
                              rehydrate=parse_rehydrate(FINEWEB2_REHYDRATE))
    assert by_id(copy_table(filter_table(table(rows), weighted), weighted))["four"]["sample_copies"] == 6
