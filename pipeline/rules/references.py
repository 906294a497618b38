"""Earlier runs a rules stage dedups against (config rules.dedup.references): which committed stage a
reference names, checked before Spark starts, and the settings its keys must share with this run's."""

from __future__ import annotations

from dataclasses import dataclass

from thresher.pipeline.config import ConfigError, RulesConfig
from thresher.pipeline.stagedir import read_commit, storage
from thresher.schemas.dedup_keys import DEDUP_BANDS_TABLE, DEDUP_DOCS_TABLE, DEDUP_LINES_TABLE
from thresher.schemas.errors import InputError

RULES_STAGE = "rules"
DEDUP_KEYS_DETAIL = "dedup_keys"  # the stats detail naming the settings the committed keys were made with


def dedup_key_settings(rules: RulesConfig) -> dict:
    """The settings a reference's band keys must share with this run's for a shared key to mean a near
    duplicate (written into the rules stage's stats, compared when a later run names it)."""
    return {"minhash_num_perm": rules.minhash_num_perm, "minhash_seed": rules.minhash_seed,
            "minhash_ngram": rules.minhash_ngram, "minhash_bands": rules.minhash_bands, "minhash_rows": rules.minhash_rows}


@dataclass(frozen=True)
class Reference:
    """A committed rules stage whose kept documents count as already kept; `run` names it in rejects."""

    run: str  # the reference as configured (resolved)
    stage_dir: str  # its committed rules stage directory


def resolve_reference(location: str, index: int, rules: RulesConfig) -> Reference:
    """The committed rules stage at `location` (a `thresher run` directory: its rules/ stage), checked to hold
    the dedup keys made with this run's MinHash settings; ConfigError (one line) naming the config key if not."""
    key = f"rules.dedup.references[{index}]"
    fs, root = storage(location)
    fs.invalidate_cache(root)
    stage_dir = f"{location.rstrip('/')}/{RULES_STAGE}" if fs.isdir(f"{root}/{RULES_STAGE}") else location
    try:
        commit = read_commit(stage_dir)
    except InputError as error:
        raise ConfigError(f"{key}: {error}") from None
    stats = commit.stats or {}
    if stats.get("stage") != RULES_STAGE:
        raise ConfigError(f"{key}: {stage_dir} is a committed {stats.get('stage') or 'unknown'} stage, not a rules stage "
                          "(name a `thresher run` directory or its rules/ stage)")
    missing = [table for table in (DEDUP_DOCS_TABLE, DEDUP_BANDS_TABLE, DEDUP_LINES_TABLE)
               if table not in commit.marker.get("tables", {})]
    if missing:
        raise ConfigError(f"{key}: {stage_dir} holds no {', '.join(missing)} (committed by a thresher without dedup "
                          "keys): rerun its rules stage with this thresher")
    made_with = stats.get("details", {}).get(DEDUP_KEYS_DETAIL)
    wanted = dedup_key_settings(rules)
    if made_with != wanted:
        differing = sorted(name for name in wanted if (made_with or {}).get(name) != wanted[name])
        raise ConfigError(f"{key}: {stage_dir} was hashed with other MinHash settings ("
                          + ", ".join(f"{name} {(made_with or {}).get(name)} there, {wanted[name]} here" for name in differing)
                          + "): its band keys cannot match this run's; use the same rules.minhash_* settings")
    return Reference(location, stage_dir)


def resolve_references(locations: list[str], rules: RulesConfig) -> list[Reference]:
    """Every configured reference resolved and checked (resolve_reference), in the configured order."""
    return [resolve_reference(location, index, rules) for index, location in enumerate(locations)]
