"""`thresher classifiers train|eval|bootstrap` as a user runs them."""

from __future__ import annotations

import json

from thresher.classifiers.base import load_classifier
from thresher.jobs.cli import main


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


def write_line_rows(path, documents: int = 30) -> None:
    """Clutter-task rows of hand-made pages: menu lines (clutter), paragraphs (keep), and one
    unlabelled context line per page."""
    with path.open("w") as out:
        for number in range(documents):
            lines = ["Home", "News", "Contact"] + [f"Paragraph {number} tells how the river rose {k} feet after the rain." for k in range(4)]
            lines.append("Share this")
            labels = ["clutter"] * 3 + ["keep"] * 4 + [None]
            for index, (line, label) in enumerate(zip(lines, labels, strict=True)):
                row = {"url": f"https://x.org/{number}", "text": line, "line_index": index, "line_count": len(lines), "label": label}
                out.write(json.dumps(row) + "\n")


def test_train_a_line_sequence_clutter_model_then_eval_reproduces(tmp_path, capsys):
    data, out = tmp_path / "lines.jsonl", tmp_path / "clutter"
    write_line_rows(data)
    small = ["--param", "buckets=2048", "--param", "embedding_dim=8", "--param", "hidden=8", "--param", "epochs=10"]
    args = ["classifiers", "train", "--task", "clutter", "--backend", "line_sequence", "--data", str(data), "--output", str(out)]
    assert main([*args, "--holdout", "0.3", *small]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["examples"] > 0 and printed["auc"] > 0.9
    assert load_classifier(out).backend == "line_sequence"
    assert main(["classifiers", "eval", str(out)]) == 0
    assert "reproduces" in capsys.readouterr().err
    # the same rows train the fastText line model (unlabelled context lines are skipped)
    assert main(["classifiers", "train", "--task", "clutter", "--data", str(data), "--output", str(tmp_path / "ft"), "--param", "bucket=2000"]) == 0
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["label_counts"] == {"clutter": 90, "keep": 120}


def test_a_line_sequence_model_needs_the_clutter_task(tmp_path, capsys):
    data = tmp_path / "lines.jsonl"
    write_line_rows(data, 2)
    code = main(["classifiers", "train", "--backend", "line_sequence", "--data", str(data), "--output", str(tmp_path / "m")])
    assert code != 0
    assert "use it with --task clutter" in capsys.readouterr().err


def test_eval_of_the_shipped_clutter_model_without_its_labels_is_one_line(tmp_path, capsys):
    """The shipped model's metrics name labels that bench/build_clutter_model.py writes, not shipped."""
    import shutil

    from thresher.classifiers.clutter import shipped_model_dir

    model = tmp_path / "clutter"
    shutil.copytree(shipped_model_dir(), model)  # beside no bench/work/ labels
    assert main(["classifiers", "eval", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not here: pass --data FILE" in err and "Traceback" not in err
    assert main(["classifiers", "eval", str(tmp_path / "nothing")]) == 2
    assert "not a model directory thresher wrote" in capsys.readouterr().err


def _labelled(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_labels_with_spaces_or_a_single_label_are_one_line_before_training(tmp_path, capsys):
    spaced = _labelled(tmp_path / "spaced.jsonl", [{"text": f"page {i} about things", "label": ("news article", "shop")[i % 2]}
                                                   for i in range(20)])
    assert main(["classifiers", "train", "--data", str(spaced), "--output", str(tmp_path / "m1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("thresher classifiers: error: fastText labels are single words, these hold whitespace: "
                   "['news article']: rename them (e.g. 'news_article')")
    single = _labelled(tmp_path / "single.jsonl", [{"text": f"page {i}", "label": "news"} for i in range(10)])
    assert main(["classifiers", "train", "--data", str(single), "--output", str(tmp_path / "m2")]) == 2
    assert capsys.readouterr().err.strip() == ("thresher classifiers: error: training needs at least two labels, got "
                                               "only ['news']: add examples of another label")


def test_rows_without_a_label_or_text_are_counted_not_dropped_silently(tmp_path, capsys):
    rows = [{"text": f"page {i} about {('cooking', 'football')[i % 2]}", "label": str(i % 2)} for i in range(40)]
    rows += [{"text": "no label here", "label": None}, {"text": "", "label": "1"}, {"text": "blank", "label": " "}]
    out = tmp_path / "model"
    assert main(["classifiers", "train", "--data", str(_labelled(tmp_path / "d.jsonl", rows)), "--output", str(out),
                 "--param", "bucket=2000", "--param", "dim=8"]) == 0
    assert "[thresher] classifiers train: 40 labelled rows; skipped 1 with empty text, 2 with no label" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["rows_skipped"] == {"empty text": 1, "no label": 2}


def test_train_and_eval_print_intervals_and_warn_when_eval_data_was_trained_on(shared_data, tmp_path, capsys):
    data = shared_data / "quality" / "dclm" / "agreement_data.jsonl"
    out = tmp_path / "quality"
    assert main(["classifiers", "train", "--data", str(data), "--output", str(out), "--param", "bucket=20000", "--param", "dim=16"]) == 0
    captured = capsys.readouterr()
    heldout = json.loads(captured.out)
    low, high = heldout["interval"]["accuracy"]
    assert f"accuracy {heldout['accuracy']:.3f} [{low:.3f}, {high:.3f}]" in captured.err and "(95% intervals)" in captured.err
    assert heldout["training_overlap"] == {"examples": 0, "fraction": 0.0}
    assert (out / "train_digests.bin").is_file()
    # every text of the file: most were trained on, and eval says so on the console and in the figures
    assert main(["classifiers", "eval", str(out), "--data", str(data), "--split", "all"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    overlap = metrics["training_overlap"]
    assert overlap["examples"] == metrics["examples"] - heldout["examples"] and overlap["fraction"] > 0.8
    warning = f"{overlap['examples']} of {metrics['examples']} evaluation texts"
    assert any(warning in w for w in metrics["warnings"])
    assert f"[thresher] warning: {warning}" in captured.err
    # the recorded held-out split: no overlap, and eval still reproduces metrics.json
    assert main(["classifiers", "eval", str(out)]) == 0
    captured = capsys.readouterr()
    assert "reproduces" in captured.err and "training data" not in captured.err
