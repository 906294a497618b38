"""`thresher classifiers train|eval|bootstrap` as a user runs them."""

from __future__ import annotations

import json

from classifiers.base import load_classifier
from jobs.cli import main


def test_train_then_eval_reproduces_and_detects_tampering(shared_data, tmp_path, capsys):
    data = shared_data / "quality" / "dclm" / "agreement_data.jsonl"
    out = tmp_path / "quality"
    assert main(["classifiers", "train", "--data", str(data), "--output", str(out), "--param", "bucket=20000", "--param", "dim=16"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["examples"] > 0 and "auc" in printed
    assert load_classifier(out).labels == ["0", "1"]
    assert main(["classifiers", "eval", str(out)]) == 0
    assert "reproduces" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["heldout"]["accuracy"] = 0.01
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert main(["classifiers", "eval", str(out)]) == 1
    assert main(["classifiers", "eval", str(out), "--split", "all"]) == 0


def test_bootstrap_command_makes_the_models_dir(stage2_dir, tmp_path, capsys):
    out = tmp_path / "models"
    small = ["--param", "bucket=20000", "--param", "dim=16"]
    code = main(["classifiers", "bootstrap", "--input", str(stage2_dir), "--output", str(out), "--max-documents", "150", *small])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"page_type", "clutter", "topic", "weak_labels", "bootstrap.json"}
    assert json.loads((out / "bootstrap.json").read_text())["documents"] == 150
    assert "point tag.model_dir there" in capsys.readouterr().err
