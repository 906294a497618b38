"""Checkpoints from someone else: loading one reads tensors and DCP's metadata, and never runs code."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from thresher.trainer.checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)


class Payload:
    """What an attacker pickles into `.metadata`: unpickling it runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def tiny_checkpoint(run_dir):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    train_state = {"step": 1, "tokens_seen": 8, "sequences_read": 2}
    return model, save_checkpoint(run_dir, model, optimizer, train_state, {"model": {}}, permanent=False)


def test_a_checkpoint_thresher_wrote_loads_through_the_guarded_reader(tmp_path):
    model, path = tiny_checkpoint(tmp_path)
    state, config = load_checkpoint(path)
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert (state["step"], state["tokens_seen"], state["sequences_read"]) == (1, 8, 2)
    other = torch.nn.Linear(4, 3)
    restored = restore_checkpoint(path, other, torch.optim.AdamW(other.parameters()))
    assert restored["tokens_seen"] == 8 and torch.equal(other.weight.detach(), model.weight.detach())


def test_a_crafted_metadata_pickle_runs_no_code_on_export_or_resume(tmp_path):
    _, path = tiny_checkpoint(tmp_path / "run")
    marker = tmp_path / "pwned"
    (path / ".metadata").write_bytes(pickle.dumps(Payload(f"touch {marker}")))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: names posix\.system, which no checkpoint holds"):
        load_checkpoint(path)
    model = torch.nn.Linear(4, 3)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load it"):
        restore_checkpoint(path, model, torch.optim.AdamW(model.parameters()))
    assert not marker.exists()


def test_train_export_of_a_crafted_checkpoint_is_one_line_and_runs_nothing(tmp_path, capsys):
    from thresher.jobs.cli import main

    _, path = tiny_checkpoint(tmp_path / "run")
    marker = tmp_path / "pwned"
    (path / ".metadata").write_bytes(pickle.dumps(Payload(f"touch {marker}")))
    assert main(["train-export", str(tmp_path / "run"), "--output", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thresher train-export: error: ") and err.count("\n") == 1, err
    assert "refusing to load it" in err and not marker.exists() and not (tmp_path / "hf").exists()


def test_metadata_that_is_no_pickle_is_one_clear_error(tmp_path):
    _, path = tiny_checkpoint(tmp_path)
    (path / ".metadata").write_bytes(b"not a pickle at all")
    with pytest.raises(UnsafeCheckpointError, match="not a DCP checkpoint's metadata"):
        load_checkpoint(path)
