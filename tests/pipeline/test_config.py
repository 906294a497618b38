import pytest

from pipeline.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config


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
    shipped = DEFAULT_CONFIG_PATH.parent / "topics.yaml"
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


def test_taggers_and_keep_rules_layer_key_by_key():
    config = load_config(None, {"tag.taggers.quality.model_dir": "/models/quality", "select.keep.quality.top_percent": 50})
    assert list(config.tag.taggers) == ["page_type", "clutter", "topic", "quality"]  # the defaults stay, in order
    assert config.tag.taggers["quality"].model_dir == "/models/quality" and config.tag.taggers["quality"].top_k == 5
    assert config.select.keep["quality"].top_percent == 50.0
    assert config.select.keep["page_type"].label_in == ["article"]
    with pytest.raises(ConfigError, match="select.keep.quality.top_percnt"):
        load_config(None, {"select.keep.quality.top_percnt": 50})
