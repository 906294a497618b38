import re

import pytest
import yaml

from thresher.pipeline.config import Config, ConfigError, default_config_path, load_config, load_yaml


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_is_typed():
    config = load_config()
    assert isinstance(config, Config)
    assert config.prepare.lang_threshold == pytest.approx(0.65)
    assert config.rules.minhash_num_perm == config.rules.minhash_bands * config.rules.minhash_rows


def test_values_override_defaults_and_ints_widen_to_floats(tmp_path):
    config = load_config(write(tmp_path, "prepare:\n  lang_threshold: 1\n  languages: [en]\n"))
    assert config.prepare.lang_threshold == 1.0 and isinstance(config.prepare.lang_threshold, float)
    assert config.prepare.languages == ["en"]
    assert config.rules == load_config().rules


def test_unknown_key_is_named_with_its_section(tmp_path):
    with pytest.raises(ConfigError, match=r"prepare\.lang_treshold"):
        load_config(write(tmp_path, "prepare:\n  lang_treshold: 0.5\n"))
    with pytest.raises(ConfigError, match="unknown config key.*stage9"):
        load_config(write(tmp_path, "stage9: {}\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("prepare:\n  lang_threshold: high\n", "prepare.lang_threshold"),
        ("prepare:\n  languages: en\n", "prepare.languages"),
        ("prepare:\n  languages: [en, 3]\n", r"prepare.languages\[1\]"),
        ("rules:\n  minhash_bands: 12.5\n", "rules.minhash_bands"),
        ("rules:\n  minhash_bands: true\n", "rules.minhash_bands"),
        ("spark: [1, 2]\n", "spark"),
        ("spark:\n  conf:\n    spark.x: 3\n", "spark.conf.spark.x"),
        ("prepare:\n  thread_posts:\n    min_posts: 1\n", "prepare.thread_posts.min_posts"),  # one post is no thread
        ("prepare:\n  thread_posts:\n    cjk_char_weight: 0.5\n", "prepare.thread_posts.cjk_char_weight"),
        ("prepare:\n  thread_posts:\n    near_best: 2\n", "prepare.thread_posts.near_best"),
    ],
)
def test_wrong_types_are_errors_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "prepare: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping at top level"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "prepare: !!python/object/apply:os.system ['true']\n"))


def test_dotted_overrides_apply_and_are_checked(tmp_path):
    config = load_config(write(tmp_path, ""), {"prepare.lang_threshold": 0.5})
    assert config.prepare.lang_threshold == 0.5
    with pytest.raises(ConfigError, match="prepare.nope"):
        load_config(write(tmp_path, ""), {"prepare.nope": 1})


def test_a_user_file_is_layered_over_the_defaults(tmp_path):
    defaults = load_config()
    config = load_config(write(tmp_path, "prepare:\n  languages: [en]\nrules:\n  minhash_seed: 9\n"))
    assert config.prepare.languages == ["en"] and config.rules.minhash_seed == 9
    assert config.prepare.domain_blocklists == defaults.prepare.domain_blocklists
    assert config.prepare.lang_threshold == defaults.prepare.lang_threshold
    replaced = load_config(write(tmp_path, "prepare:\n  domain_blocklists: {gambling: /lists/g}\n"))
    assert replaced.prepare.domain_blocklists == {"gambling": "/lists/g"}


def test_relative_paths_resolve_against_the_config_directory_then_configs(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.resolve_path("lists/a.txt") == str(tmp_path / "lists" / "a.txt")
    shipped = default_config_path().parent / "topics.yaml"
    assert config.resolve_path("topics.yaml") == str(shipped)
    (tmp_path / "topics.yaml").write_text("mine")
    assert config.resolve_path("topics.yaml") == str(tmp_path / "topics.yaml")
    assert config.resolve_path("/abs/a.txt") == "/abs/a.txt"
    assert config.resolve_path("s3://bucket/a.txt") == "s3://bucket/a.txt"


def test_digest_changes_with_any_setting(tmp_path):
    a = load_config(write(tmp_path, ""))
    b = load_config(write(tmp_path, ""), {"rules.minhash_seed": 7})
    assert a.digest() == load_config(write(tmp_path, "")).digest()
    assert a.digest() != b.digest()


def test_digest_does_not_depend_on_where_the_config_lives(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_config(write(tmp_path / "a", "rules:\n  minhash_seed: 3\n"))
    b = load_config(write(tmp_path / "b", "rules:\n  minhash_seed: 3\n"))
    assert a.base_dir != b.base_dir and a.digest() == b.digest()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_and_nan_numbers_are_errors_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match="prepare.lang_threshold: expected a finite number"):
        load_config(write(tmp_path, f"prepare:\n  lang_threshold: {value}\n"))


@pytest.mark.parametrize("value", [".inf", "1e10", "86401", "-1"])
def test_an_extraction_time_bound_the_mechanism_cannot_keep_is_an_error(tmp_path, value):
    with pytest.raises(ConfigError, match="prepare.extract_timeout_s"):
        load_config(write(tmp_path, f"prepare:\n  extract_timeout_s: {value}\n"))
    assert load_config(write(tmp_path, "prepare:\n  extract_timeout_s: 0\n")).prepare.extract_timeout_s == 0


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("select.model_gate.floors.topic.floor", 7, "in [0, 1]"),
        ("prepare.lang_threshold", -0.1, "in [0, 1]"),
        ("export.validation_fraction", 1.0, "in [0, 1)"),
        ("export.seq_len", 0, "in [1, 1048576]"),
        ("rules.gopher_quality.min_alpha_words_ratio", 1.5, "in [0, 1]"),
        ("rules.minhash_bands", -3, "at least 1"),
        ("spark.shuffle_partitions", 0, "at least 1"),
        ("tag.taggers.topic.top_k", 0, "at least 1"),
        ("select.keep.quality.min_score", 1.5, "in [0, 1]"),
        ("select.keep.quality.top_percent", 0, "in (0, 100]"),
        ("select.keep.quality.top_percent", 100.5, "in (0, 100]"),
        ("select.line_thresholds.clutter", -0.1, "in [0, 1]"),
        ("select.rebalance.max_copies", 0.5, "at least 1"),
        ("select.rebalance.min_score", 2, "in [0, 1]"),
        ("select.rebalance.targets.knowledge.share", 1.2, "in [0, 1]"),
    ],
)
def test_values_out_of_range_are_refused_when_the_config_is_built(tmp_path, key, value, bound):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: ")) as error:
        load_config(None, {key: value})
    assert str(error.value).endswith(f"is out of range, must be {bound}")
    with pytest.raises(ConfigError, match=re.escape(key)):  # from a file as from --set
        load_config(write(tmp_path, yaml.safe_dump(_nested(key, value))))


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("tag.taggers.topic.kind", "spans", "'document', 'lines'"),
        ("tag.taggers.topic.input", "pages", "'plain', 'page_type', 'clutter', 'topic'"),
        ("select.keep.page_type.on_missing_label", "drop", "'error', 'keep'"),
        ("select.rebalance.mode", "solve", "'target', 'weights', 'off'"),
        ("select.rebalance.unit", "bytes", "'tokens', 'documents'"),
    ],
)
def test_values_outside_their_choices_are_refused_when_the_config_is_built(tmp_path, key, value, choices):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: {value!r} is not one of {choices}")):
        load_config(None, {key: value})
    with pytest.raises(ConfigError, match=re.escape(key)):  # from a file as from --set
        load_config(write(tmp_path, yaml.safe_dump(_nested(key, value))))


def test_a_field_that_may_be_null_takes_null_or_a_checked_value():
    assert load_config(None, {"select.keep.quality.min_score": None}).select.keep["quality"].min_score is None
    assert load_config(None, {"select.keep.quality.top_percent": 100}).select.keep["quality"].top_percent == 100.0
    with pytest.raises(ConfigError, match=r"select\.keep\.quality\.min_score: expected a number, got str"):
        load_config(None, {"select.keep.quality.min_score": "high"})


def _nested(key, value):
    *parents, leaf = key.split(".")
    node = {leaf: value}
    for parent in reversed(parents):
        node = {parent: node}
    return node


def test_taggers_and_keep_rules_layer_key_by_key():
    config = load_config(None, {"tag.taggers.quality.model_dir": "/models/quality", "select.keep.quality.top_percent": 50})
    assert list(config.tag.taggers) == ["page_type", "clutter", "topic", "quality", "pii"]  # the defaults stay, in order
    assert config.tag.taggers["quality"].model_dir == "/models/quality" and config.tag.taggers["quality"].top_k == 5
    assert config.select.keep["quality"].top_percent == 50.0
    assert config.select.keep["page_type"].label_in == ["article"]
    with pytest.raises(ConfigError, match="select.keep.quality.top_percnt"):
        load_config(None, {"select.keep.quality.top_percnt": 50})


def test_sizes_have_an_upper_bound_checked_before_work():
    with pytest.raises(ConfigError, match=r"export.seq_len: 99999999999 is out of range, must be in \[1, 1048576\]"):
        load_config(None, {"export.seq_len": 99999999999})


def test_off_and_no_are_strings_in_config_files_and_in_set_values(tmp_path):
    """YAML 1.1 reads `off` as false: the rebalance mode `off` was a type error."""
    assert load_config(None, {"select.rebalance.mode": load_yaml("off")}).select.rebalance.mode == "off"
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("select:\n  rebalance:\n    mode: off\n")
    assert load_config(config_file).select.rebalance.mode == "off"
    assert load_yaml("true") is True and load_yaml("False") is False and load_yaml("no") == "no"


def test_set_merges_a_mapping_as_a_config_file_does(tmp_path):
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("select:\n  rebalance:\n    max_copies: 3\n")
    from_file = load_config(config_file).select.rebalance
    from_set = load_config(None, {"select.rebalance": load_yaml("{max_copies: 3}")}).select.rebalance
    assert from_set == from_file and from_set.mode == load_config().select.rebalance.mode
