"""Decontamination on one document: normalisation, the index, hits and spans, cutting; and on the
real benchmarks (../shared/data): planted items found, the crawl and DCLM texts clean."""

from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pytest

from bench._decontam_data import WAYS, crawl_texts, dclm_texts, planted, recall_tally, shared_benchmarks
from thresher.pipeline.decontam import (
    Benchmark,
    BenchmarkError,
    Settings,
    build_index,
    cut_spans,
    find,
    load_index,
    merge_spans,
    normalise,
    read_items,
    tokenize,
)

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
ANSWER = "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May."
CHINESE = "某汽车制造厂计划新增摩托车生产，这种发展新业务的方法属于哪一种多元化经营方式"
HOST = "The weather was fine.\nPeople walked in the park and talked about the news of the day.\n"


def small_index(**settings) -> object:
    items = [("toy", "q1", [QUESTION, ANSWER]), ("toy", "q2", ["Write a function that adds two numbers and returns the sum of them both"]),
             ("zh", "c1", [CHINESE, "水平多元化", "同心多元化"])]
    return build_index(items, ["toy", "zh"], Settings(**settings))


def test_normalisation_folds_case_width_punctuation_and_whitespace():
    assert normalise("Hello,   WORLD!\n\tＦｕｌｌ－ｗｉｄｔｈ　１２３") == "hello world full width 123"
    assert normalise("Straße ﬁne naïve") == normalise("STRASSE fine NAÏVE") == "strasse fine naïve"
    assert normalise("has_close_elements(numbers)") == "has close elements numbers"
    words, han = tokenize("下列DNA的叙述，正确的是")
    assert len(words.hashes) == 1 and len(han.hashes) == 9  # DNA is a word; each Han character a token
    assert list(tokenize("之⼀，⼤")[1].hashes) == list(tokenize("之一。大")[1].hashes)  # Kangxi radicals: NFKC's ideographs


def test_word_spans_point_into_the_original_text_also_after_expansions():
    text = "Maße und Gewicht"
    words, _ = tokenize(text)
    assert [text[s:e] for s, e in zip(words.starts, words.ends, strict=True)] == ["Maße", "und", "Gewicht"]
    exact = tokenize("Mate\u0301 und Gewicht")[0]  # a combining accent takes the exact path: same spans
    assert list(exact.starts) == [0, 6, 10]


def test_a_pasted_item_is_found_with_its_ids_count_and_spans():
    index = small_index()
    text = HOST + QUESTION + " " + ANSWER + "\n" + HOST
    (hit,) = find(text, index)
    assert hit.benchmark == "toy" and hit.item_ids == ("q1",)
    assert hit.ngrams == len(normalise(QUESTION + " " + ANSWER).split()) - 13 + 1
    (start, end), = hit.spans
    assert text[start:end] == (QUESTION + " " + ANSWER).removesuffix(".")  # first to last matched word
    assert cut_spans(text, hit.spans) == HOST + ".\n" + HOST  # the item gone, the lines kept


def test_reformatted_and_partial_copies_are_found_and_unrelated_text_is_not():
    index = small_index()
    shouted = QUESTION.upper().replace(",", " ;; ").replace(" ", "\n  ")
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in QUESTION)
    for text in (shouted, full_width, QUESTION):  # the question alone: most of the item's question
        assert [h.item_ids for h in find(HOST + text, index)] == [("q1",)]
    assert find(HOST * 20, index) == []
    part = HOST + " ".join(QUESTION.split()[:14])  # 14 of the question's 20 words
    assert [h.item_ids for h in find(part, index)] == [("q1",)]
    assert find(part, small_index(min_coverage=0.8)) == []


def test_chinese_items_match_on_characters_and_short_items_whole():
    index = small_index()
    (hit,) = find("今天天气很好。" + CHINESE.replace("，", " ") + "。后来呢", index)
    assert (hit.benchmark, hit.item_ids) == ("zh", ("c1",))
    assert find("水平多元化和同心多元化", index) == []  # options alone name no item
    q2 = "write a function that adds two numbers and returns the sum of them both"
    assert [h.item_ids for h in find(q2.title(), small_index(word_ngram=50))] == [("q2",)]  # shorter than n: whole


def test_boilerplate_ngrams_shared_by_many_items_name_none():
    phrase = "return true if the given list of numbers has any two numbers closer than the threshold"
    items = [("he", f"t{i}", [f"def f{i}(x):\n    {phrase}\n    {'unique words ' * 2}{i}"]) for i in range(12)]
    index = build_index(items, ["he"], Settings(max_items_per_ngram=10, min_coverage=0.0))
    assert index.dropped_common > 0
    assert find(phrase, index) == []


def test_min_matches_and_merge_and_cut_keep_line_count():
    assert merge_spans([(5, 9), (0, 3), (3, 4), (8, 12)]) == [(0, 4), (5, 12)]
    assert cut_spans("ab\ncd\nef", [(1, 7)]) == "a\n\nf"
    index = small_index(min_matches=100)
    assert find(QUESTION, index) == []  # fewer than 100 n-grams: needs all the item has
    assert [h.item_ids for h in find(QUESTION + " " + ANSWER, index)] == [("q1",)]


def test_the_index_pickles_small_and_without_its_lookup_table():
    index = small_index()
    find(QUESTION, index)  # builds the lookup table in this process
    shipped = pickle.dumps(index)
    assert len(shipped) < 100_000
    assert [h.item_ids for h in find(QUESTION, pickle.loads(shipped))] == [("q1",)]
    assert index.keys.dtype == np.uint64 and np.all(np.diff(index.keys.astype(np.float64)) >= 0)


def test_benchmark_files_of_each_format_and_their_errors(tmp_path):
    rows = [{"id": "a", "q": "first question"}, {"id": "b", "q": "second question"}]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.csv").write_text("id,q\na,first question\nb,second question\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    for name in ("b.jsonl", "b.jsonl.gz", "b.csv", "b.parquet"):
        assert list(read_items(Benchmark("t", str(tmp_path / name), ("q",), "id"))) == [("a", ["first question"]), ("b", ["second question"])]
    assert [i for i, _ in read_items(Benchmark("t", str(tmp_path / "b.csv"), ("q",)))] == ["0", "1"]
    directory = [i for i, _ in read_items(Benchmark("t", str(tmp_path), ("q",)))]
    assert directory[:2] == ["b.csv:0", "b.csv:1"] and len(directory) == 8
    with pytest.raises(BenchmarkError, match=r"decontam.benchmarks.t: .*b.csv has no field answer \(its fields: id, q\)"):
        list(read_items(Benchmark("t", str(tmp_path / "b.csv"), ("q", "answer"))))
    with pytest.raises(BenchmarkError, match="decontam.benchmarks.t.path: no such file or directory"):
        load_index([Benchmark("t", str(tmp_path / "missing.jsonl"), ("q",))], Settings())


def test_a_hugging_face_dataset_saved_to_disk_is_a_benchmark(tmp_path):
    import datasets

    rows = [{"id": "a", "q": "first question"}, {"id": "b", "q": "second question"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    assert list(read_items(Benchmark("t", str(tmp_path / "hf"), ("q",), "id"))) == [("a", ["first question"]), ("b", ["second question"])]
    (tmp_path / "hf" / "state.json").write_text(json.dumps({"_data_files": []}))
    with pytest.raises(BenchmarkError, match=r"decontam.benchmarks.t.path: .*hf/state.json names no data files"):
        list(read_items(Benchmark("t", str(tmp_path / "hf"), ("q",))))


@pytest.fixture(scope="module")
def shared_index(shared_data):
    """The three shared benchmarks indexed once for the module."""
    benchmarks = shared_benchmarks(shared_data)
    return benchmarks, load_index(benchmarks, Settings())


def test_planted_items_are_found_whole_in_part_and_reformatted(shared_data, shared_index):
    benchmarks, index = shared_index
    found, total, unidentifiable = recall_tally(planted(shared_data, benchmarks, index.settings, per_benchmark=150, seed=7), index)
    assert set(total) == {(b.name, way) for b in benchmarks for way in WAYS}
    recall = {key: found[key] / total[key] for key in total}
    assert min(recall.values()) >= 0.99, recall
    assert unidentifiable < 0.05 * sum(total.values())  # pieces too short to name an item (a 5-character question)


def test_no_hit_on_the_crawl_or_the_dclm_texts(shared_data, shared_index):
    _, index = shared_index
    texts = crawl_texts(shared_data) + dclm_texts(shared_data)
    assert len(texts) == 428 + 780
    assert [(i, hit.benchmark, hit.item_ids) for i, text in enumerate(texts) for hit in find(text, index)] == []
