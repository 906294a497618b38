"""A user's own filter and tagger (tests/plugin_examples) named in config: each thing that can be wrong with
one is one line before Spark starts (tests/jobs/test_tag_select.py runs them end to end)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

EXAMPLES = "thresher.tests.plugin_examples"
F, T = f"{EXAMPLES}.filters", f"{EXAMPLES}.taggers"
BROKEN = [
    ("rules", [{"class_path": "no_such_module_here:Filter"}], "cannot import no_such_module_here"),
    ("rules", [{"class_path": F}], "is not package.module:Class"),
    ("rules", [{"class_path": f"{F}:Missing"}], "has no Missing"),
    ("rules", [{"class_path": f"{F}:NotAFilter"}], "is not a subclass of thresher.pipeline.filters.DocumentFilter"),
    ("rules", [{"class_path": f"{F}:NoJudge"}], "does not define judge(doc)"),
    ("rules", [{"class_path": f"{F}:TwoArgumentJudge"}], "it must take (doc)"),
    ("rules", [{"class_path": f"{F}:MentionFilter"}], "missing a required argument: 'word'"),
    ("rules", [{"class_path": f"{F}:MentionFilter", "args": {"word": "x", "colour": 1}}],
     "got an unexpected keyword argument 'colour'"),
    ("rules", [{"class_path": f"{F}:MentionFilter", "args": {"word": " "}}], "refused them (ValueError: word must not be blank)"),
    ("rules", [{"class_path": f"{F}:MentionFilter", "args": {"word": "a"}}] * 2, "is named 'mention', as another filter is"),
    ("tag", [{"class_path": f"{F}:MentionFilter"}], "is not a subclass of thresher.classifiers.tagging.ColumnTagger"),
    ("tag", [{"class_path": f"{T}:UndeclaredColumns"}], "must return a non-empty dict"),
    ("tag", [{"class_path": f"{T}:ShoutTagger"}] * 2, "declares column 'shout_upper_share', a column of stage 2 or another"),
]
MODEL_TAGGERS_OFF = {"taggers": {name: {"model_dir": ""} for name in ("page_type", "clutter", "topic", "quality")}}


@pytest.mark.parametrize(("command", "entries", "message"), BROKEN)
def test_a_broken_custom_filter_or_tagger_is_one_line_before_spark(tmp_path, capsys, command, entries, message):
    from thresher.jobs import cli

    pq.write_table(pa.table({"text": ["a short page", "another page"]}), tmp_path / "docs.parquet")
    key = "custom_filters" if command == "rules" else "custom_taggers"
    raw = {command: {key: entries, **(MODEL_TAGGERS_OFF if command == "tag" else {})}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    code = cli.main([command, str(tmp_path / "docs.parquet"), "--output", str(tmp_path / "out"),
                     "--config", str(tmp_path / "config.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"thresher {command}: error: {command}.{key}[{len(entries) - 1}]") and message in err[0], err[0]
    assert not (tmp_path / "out").exists()
