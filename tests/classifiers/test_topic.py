"""The 200-class taxonomy and its rebalancing weights, and keyword weak labels."""

from __future__ import annotations

import pytest

from thresher.classifiers.topic import KeywordLabeler, TaxonomyError, load_taxonomy, seed_examples
from thresher.pipeline.config import ConfigError

DESCRIBED = 'en: A, zh: 甲, description: {en: "Things of kind A.", zh: "甲类的东西。"}'


def sub(sub_id: str, extra: str = "") -> str:
    """A subtopic entry with its names and descriptions (what the loader requires), plus `extra` keys."""
    return f'{{id: {sub_id}, en: {sub_id.upper()}, zh: 子, description: {{en: "About {sub_id}.", zh: "关于{sub_id}。"}}{extra}}}'


def domain(domain_id: str, subs: list[str], extra: str = "") -> str:
    return f"  - {{id: {domain_id}, {DESCRIBED}{extra}, subtopics: [{', '.join(subs)}]}}\n"


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def test_shipped_taxonomy_has_200_bilingual_classes(taxonomy):
    assert len(taxonomy.labels) == 200 == len(set(taxonomy.labels))
    assert len({label.split(".")[0] for label in taxonomy.labels}) == 20
    assert all(t.en and t.zh and t.keywords_en and t.keywords_zh for t in taxonomy.topics)


def test_every_shipped_domain_and_class_is_described_in_both_languages(taxonomy):
    assert [d.id for d in taxonomy.domains] == list(dict.fromkeys(label.split(".")[0] for label in taxonomy.labels))
    for node in [*taxonomy.domains, *taxonomy.topics]:
        assert node.description_en.endswith(".") and len(node.description_en.split()) >= 3, node
        assert node.description_zh.endswith("。") and len(node.description_zh) >= 6, node
        assert node.description_en != node.en and node.description_zh != node.zh
    descriptions = [t.description_en for t in taxonomy.topics] + [t.description_zh for t in taxonomy.topics]
    assert len(set(descriptions)) == len(descriptions)  # no copied sentence: each says what its class holds
    by_label = {t.label: t for t in taxonomy.topics}
    # where neighbours are close, a description says which side a document falls on
    assert "entertainment" in by_label["arts.film"].description_en and "娱乐" in by_label["arts.film"].description_zh


def test_a_class_without_a_description_is_one_line_naming_it(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("domains:\n" + domain("a", [sub("x"), "{id: y, en: Y, zh: 歪, description: {en: About y.}}"]), encoding="utf-8")
    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(path)
    message = str(error.value)
    assert "\n" not in message and f"{path}: topic class a.y has no zh description" in message and "description: {en: ..., zh: ...}" in message
    assert isinstance(error.value, ConfigError)  # the CLI prints it as one line
    path.write_text("domains:\n  - {id: b, en: B, zh: 乙, subtopics: [" + sub("x") + "]}\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"topic class b has no en description"):
        load_taxonomy(path)
    path.write_text("domains:\n" + domain("a", ['{id: y, zh: 歪, description: {en: "Y.", zh: "歪。"}}']), encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"topic class a\.y has no en name"):
        load_taxonomy(path)


def test_weights_favour_knowledge_over_fiction_and_products(taxonomy):
    w = taxonomy.weights()
    for knowledge in ("encyclopedia.biography", "education.k12_math", "science.popular_science"):
        assert w[knowledge] > 1
    for downweighted in ("literature.fiction", "literature.web_fiction", "shopping.product_descriptions"):
        assert w[downweighted] < 1
    assert taxonomy.weight("no.such_topic") == 1.0


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
    path.write_text("domains:\n" + domain("a", [sub("x")], ", weight: -1"), encoding="utf-8")
    with pytest.raises(TaxonomyError, match="weight"):
        load_taxonomy(path)
    path.write_text("domains:\n" + domain("a", [sub("x"), sub("x")]), encoding="utf-8")
    with pytest.raises(TaxonomyError, match="duplicate"):
        load_taxonomy(path)
    path.write_text("domains: []\n")
    with pytest.raises(TaxonomyError, match="no topics"):
        load_taxonomy(path)


def test_groups_name_domains_and_labels_of_the_taxonomy(tmp_path):
    path = tmp_path / "t.yaml"
    domains = "domains:\n" + domain("a", [sub("x"), sub("y")])
    path.write_text(domains + "groups:\n  mine: [a.x]\n  all: a\n", encoding="utf-8")
    assert load_taxonomy(path).groups == {"mine": ("a.x",), "all": ("a",)}
    path.write_text(domains, encoding="utf-8")
    assert load_taxonomy(path).groups == {}
    path.write_text(domains + "groups:\n  mine: [a.z, b]\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"groups\.mine: \['a\.z', 'b'\] are not domains or labels"):
        load_taxonomy(path)
    path.write_text(domains + "groups:\n  mine: []\n", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="non-empty list"):
        load_taxonomy(path)


def test_latin_keywords_in_chinese_lists_match_as_words(taxonomy):
    labeler = KeywordLabeler(taxonomy)
    assert labeler.label("昨晚的NBA比赛很精彩，篮球迷都在讨论扣篮和篮板。")[0] == "sports.basketball"
