"""`thresher config show`: the effective config with default.yaml's comments, itself a config file."""

from __future__ import annotations

from thresher.jobs.cli import main
from thresher.jobs.config_show import default_comments
from thresher.pipeline.config import default_config_path, load_config


def test_config_show_gives_every_key_the_comments_default_yaml_gives_it(tmp_path, capsys):
    default = default_config_path().read_text(encoding="utf-8")
    assert main(["config", "show", "--set", "select.rebalance.mode=off", "--set", "prepare.lang_threshold=0.7"]) == 0
    shown = capsys.readouterr().out
    header, commented = default_comments(default)
    assert len(commented) > 150 and sum(bool(c.inline) for c in commented.values()) > 100
    shown_header, shown_comments = default_comments(shown.split("\n", 1)[1])  # after the digest line
    assert shown_header == header
    for key, comments in commented.items():
        assert shown_comments.get(key) == comments, key
    lines = shown.splitlines()
    # The meaning and valid values beside a changed value; `off` stays the string a mode takes.
    assert "    mode: 'off'  # target (solve for the mix), weights (topics.yaml weights as fixed factors) or off" in lines
    assert "  lang_threshold: 0.7  # dots.llm1 report: top language score below 0.65 is dropped" in lines
    (tmp_path / "shown.yaml").write_text(shown)
    loaded = load_config(tmp_path / "shown.yaml")
    expected = load_config(None, {"select.rebalance.mode": "off", "prepare.lang_threshold": 0.7})
    assert loaded.select.rebalance.mode == "off" and loaded.digest() == expected.digest()
