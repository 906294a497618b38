"""Checkpoints: one directory per save, RUN_DIR/checkpoints/tokens-<tokens seen, 15 digits>/.

Each holds `state.pt` (model weights including router biases, optimizer state, step, tokens
seen, every rank's data position, RNG states) written with torch.save and read back with
`torch.load(weights_only=True)`, so loading never unpickles arbitrary objects; plus
`config.json` (model and training configuration) and `meta.json` (step, tokens, permanence).
A save is written to a temporary directory and renamed, so a crash never leaves half a
checkpoint. Retention: the last `keep_last` ordinary checkpoints, plus every permanent one (the
first save at or after each multiple of `permanent_every_tokens`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

CHECKPOINT_PREFIX = "tokens-"


def checkpoint_dir(run_dir: str | Path, tokens_seen: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{tokens_seen:015d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "meta.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(run_dir: str | Path, state: dict, config: dict, permanent: bool) -> Path:
    """Write one checkpoint; `state` must hold `step` and `tokens_seen` and only tensors and plain values."""
    final = checkpoint_dir(run_dir, state["tokens_seen"])
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(state, staging / "state.pt")
    (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    meta = {"step": state["step"], "tokens_seen": state["tokens_seen"], "permanent": permanent}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(state, config) of a checkpoint directory."""
    path = Path(path)
    state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    config = json.loads((path / "config.json").read_text())
    return state, config


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the last `keep_last` non-permanent checkpoints; returns what was deleted."""
    deletable = [p for p in list_checkpoints(run_dir) if not json.loads((p / "meta.json").read_text())["permanent"]]
    doomed = deletable[:-keep_last] if keep_last > 0 else deletable
    for path in doomed:
        shutil.rmtree(path)
    return doomed
