"""Which committed stage a reference names, and the one-line errors for one a later run cannot read."""

from __future__ import annotations

import dataclasses
import json

import pytest

from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.rules.references import DEDUP_KEYS_DETAIL, dedup_key_settings, resolve_references
from thresher.pipeline.stagedir import COMMITTED_MARKER, MARKER_FORMAT
from thresher.schemas.dedup_keys import DEDUP_BANDS_TABLE, DEDUP_DOCS_TABLE, DEDUP_LINES_TABLE

RULES = load_config().rules
ALL_TABLES = (DEDUP_DOCS_TABLE, DEDUP_BANDS_TABLE, DEDUP_LINES_TABLE)


def _stage(directory, stage="rules", tables=ALL_TABLES, settings=None):
    """A committed stage directory whose marker lists `tables` (no parts) and stats naming `stage`."""
    directory.mkdir(parents=True)
    details = {DEDUP_KEYS_DETAIL: dedup_key_settings(RULES) if settings is None else settings}
    marker = {"format": MARKER_FORMAT, "files": [], "tables": {table: {"schema": None, "parts": []} for table in tables},
              "stats": {"stage": stage, "details": details}}
    (directory / COMMITTED_MARKER).write_text(json.dumps(marker))
    return directory


def test_a_run_directory_names_its_rules_stage_and_a_stage_directory_itself(tmp_path):
    run = tmp_path / "run"
    _stage(run / "rules")
    stage = _stage(tmp_path / "elsewhere")
    first, second = resolve_references([str(run), str(stage)], RULES)
    assert (first.run, first.stage_dir) == (str(run), f"{run}/rules")
    assert (second.run, second.stage_dir) == (str(stage), str(stage))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path, "does not exist"),
        (lambda path: path.mkdir() or path, "no committed stage output"),
        (lambda path: _stage(path, stage="prepare"), "is a committed prepare stage, not a rules stage"),
        (lambda path: _stage(path, tables=("documents",)), "holds no dedup_docs, dedup_bands, dedup_lines"),
        (lambda path: _stage(path, settings={**dedup_key_settings(RULES), "minhash_rows": 8}),
         "minhash_rows 8 there, 16 here"),
    ],
)
def test_a_reference_a_run_cannot_dedup_against_is_a_config_error_naming_it(tmp_path, make, message):
    good = _stage(tmp_path / "good")
    bad = make(tmp_path / "bad")
    with pytest.raises(ConfigError) as raised:
        resolve_references([str(good), str(bad)], RULES)
    text = str(raised.value)
    assert text.startswith("rules.dedup.references[1]: ") and message in text and "\n" not in text


def test_the_key_settings_are_the_minhash_settings_band_keys_depend_on():
    other = dataclasses.replace(RULES, minhash_seed=RULES.minhash_seed + 1, line_dedup_max_occurrences=7)
    assert dedup_key_settings(other) != dedup_key_settings(RULES)
    assert dedup_key_settings(dataclasses.replace(RULES, line_dedup_max_occurrences=7)) == dedup_key_settings(RULES)
