"""The 200-class taxonomy, keyword weak labels, and deterministic rebalancing."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.topic import KeywordLabeler, TaxonomyError, load_taxonomy, sample_copies, seed_examples


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def test_shipped_taxonomy_has_200_bilingual_classes(taxonomy):
    assert len(taxonomy.labels) == 200 == len(set(taxonomy.labels))
    assert len({label.split(".")[0] for label in taxonomy.labels}) == 20
    assert all(t.en and t.zh and t.keywords_en and t.keywords_zh for t in taxonomy.topics)


def test_weights_favour_knowledge_over_fiction_and_products(taxonomy):
    w = taxonomy.weights()
    for knowledge in ("encyclopedia.biography", "education.k12_math", "science.popular_science"):
        assert w[knowledge] > 1
    for downweighted in ("literature.fiction", "literature.web_fiction", "shopping.product_descriptions"):
        assert w[downweighted] < 1
    assert taxonomy.weight("no.such_topic") == 1.0


def test_sample_copies_scale_a_class_by_its_weight_in_expectation():
    ids = [f"doc-{i}" for i in range(20000)]
    for weight in (0.3, 1.0, 1.75, 2.0):
        copies = [sample_copies(doc_id, weight, seed=0) for doc_id in ids]
        assert set(copies) <= {int(weight), int(weight) + 1}
        assert abs(np.mean(copies) - weight) < 0.02
    assert [sample_copies(d, 0.5, 0) for d in ids[:50]] == [sample_copies(d, 0.5, 0) for d in ids[:50]]
    assert [sample_copies(d, 0.5, 0) for d in ids[:50]] != [sample_copies(d, 0.5, 1) for d in ids[:50]]


def test_keyword_labels_in_english_and_chinese(taxonomy):
    labeler = KeywordLabeler(taxonomy)
    english = "The telescope found a new planet in a distant galaxy; NASA astronomy teams confirmed the planet."
    assert labeler.label(english)[0] == "science.astronomy"
    chinese = "这只狗狗和猫都是家里的宠物，兽医说宠物狗需要定期体检。"
    assert labeler.label(chinese)[0] == "lifestyle.pets"
    assert labeler.label("nothing to see here") is None


def test_seed_examples_cover_every_class(taxonomy):
    seeds = seed_examples(taxonomy)
    assert sorted(label for _, label in seeds) == sorted(taxonomy.labels)


def test_bad_taxonomies_are_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("domains:\n  - id: a\n    weight: -1\n    subtopics: [{id: x, en: X, zh: 叉}]\n")
    with pytest.raises(TaxonomyError, match="weight"):
        load_taxonomy(path)
    path.write_text("domains:\n  - id: a\n    subtopics: [{id: x, en: X, zh: 叉}, {id: x, en: Y, zh: 叉}]\n")
    with pytest.raises(TaxonomyError, match="duplicate"):
        load_taxonomy(path)
    path.write_text("domains: []\n")
    with pytest.raises(TaxonomyError, match="no topics"):
        load_taxonomy(path)


def test_groups_name_domains_and_labels_of_the_taxonomy(tmp_path):
    path = tmp_path / "t.yaml"
    domains = "domains:\n  - id: a\n    subtopics: [{id: x, en: X, zh: 叉}, {id: y, en: Y, zh: 歪}]\n"
    path.write_text(domains + "groups:\n  mine: [a.x]\n  all: a\n")
    assert load_taxonomy(path).groups == {"mine": ("a.x",), "all": ("a",)}
    path.write_text(domains)
    assert load_taxonomy(path).groups == {}
    path.write_text(domains + "groups:\n  mine: [a.z, b]\n")
    with pytest.raises(TaxonomyError, match=r"groups\.mine: \['a\.z', 'b'\] are not domains or labels"):
        load_taxonomy(path)
    path.write_text(domains + "groups:\n  mine: []\n")
    with pytest.raises(TaxonomyError, match="non-empty list"):
        load_taxonomy(path)


def test_latin_keywords_in_chinese_lists_match_as_words(taxonomy):
    labeler = KeywordLabeler(taxonomy)
    assert labeler.label("昨晚的NBA比赛很精彩，篮球迷都在讨论扣篮和篮板。")[0] == "sports.basketball"
