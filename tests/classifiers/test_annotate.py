"""thresher annotate: a tiny Qwen2 causal LM (random weights, tokenizer trained here) labels real
web documents (DCLM, ChineseWebText) by constrained scoring; the labels train a fastText model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from thresher.classifiers.annotate import (
    Annotator,
    annotate_file,
    label_sets,
    load_prompts,
    shipped_prompts_dir,
    stratified_sample,
)
from thresher.classifiers.label_scoring import model_hash
from thresher.classifiers.page_type import PAGE_TYPES
from thresher.classifiers.topic import default_topics_file, load_taxonomy
from thresher.jobs.cli import main as thresher
from thresher.pipeline.stagedir.documents import derived_doc_id, read_documents

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
SMALL = ["--max-chars", "300", "--device", "cpu"]  # short prompts: quick on two shared cores; fp32 CPU: exact reruns


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]



@pytest.mark.parametrize("task", ["page_type", "topic", "clutter", "quality"])
def test_every_label_is_allowed_probabilities_sum_to_one_and_rows_say_where_they_came_from(task, rules_dir, scorer, lm_dir, tmp_path):
    out = tmp_path / f"{task}.jsonl"
    summary = annotate_file(rules_dir, out, task, scorer, sample=6, seed=1, max_chars=300, max_lines=3)
    rows = rows_of(out)
    assert summary["rows_written"] == len(rows) >= 6 and summary["documents"] == 6
    allowed = {
        "page_type": set(PAGE_TYPES),
        "topic": set(load_taxonomy().labels),
        "clutter": {"keep", "clutter"},
        "quality": {"high", "low"},
    }[task]
    model = model_hash(lm_dir)
    for row in rows:
        assert row["label"] in allowed
        assert set(row["label_probabilities"]) <= allowed and row["label"] in row["label_probabilities"]
        assert sum(row["label_probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert row["model_hash"] == model and row["model"] == lm_dir.name and row["task"] == task
        assert row["text"] and row["doc_id"] and "url" in row
        lang = "zh" if row["lang"] == "zh" else "en"
        if task == "topic":
            assert sum(row["domain_probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
            domain = row["label"].split(".")[0]
            assert row["probability"] == pytest.approx(row["domain_probabilities"][domain] * row["label_probabilities"][row["label"]])
            assert len(row["label_probabilities"]) == 10  # the chosen domain's subtopics
            templates = [(shipped_prompts_dir() / f"{step}.{lang}.txt").read_bytes() for step in ("topic_domain", "topic_subtopic")]
            expected = hashlib.sha256("".join(hashlib.sha256(t).hexdigest() for t in templates).encode()).hexdigest()
        else:
            assert row["probability"] == row["label_probabilities"][row["label"]] == max(row["label_probabilities"].values())
            assert len(row["label_probabilities"]) == len(allowed)
            expected = hashlib.sha256((shipped_prompts_dir() / f"{task}.{lang}.txt").read_bytes()).hexdigest()
        assert row["prompt_hash"] == expected
    if task == "clutter":  # line rows, in the shape `classifiers train --task clutter` reads
        assert all(0 <= row["line_index"] < row["line_count"] and "\n" not in row["text"] for row in rows)
        assert len({(row["doc_id"], row["line_index"]) for row in rows}) == len(rows)


def test_the_sample_is_stratified_by_language_seeded_and_deterministic():
    docs = [(f"en-{i}", "en") for i in range(300)] + [(f"zh-{i}", "zh") for i in range(100)] + [("de-0", "de")]
    sample = stratified_sample(docs, 40, seed=3)
    counts = Counter(doc_id.split("-")[0] for doc_id in sample)
    assert counts == {"en": 30, "zh": 10}  # 300:100:1 of 40 (de's 0.1 loses the largest remainder)
    assert sample == stratified_sample(list(reversed(docs)), 40, seed=3)  # not the input order
    assert sample != stratified_sample(docs, 40, seed=4)
    bigger = stratified_sample(docs, 80, seed=3)
    assert set(sample) < set(bigger)  # a larger sample extends a smaller one
    assert len(stratified_sample(docs, None, seed=3)) == len(docs)
    assert len(stratified_sample(docs + docs[:5], 1000, seed=3)) == len(docs)  # duplicate ids counted once


def _command(rules_dir, lm_dir, out, sample="8"):
    return ["annotate", str(rules_dir), "--task", "page_type", "--model", str(lm_dir), "--output", str(out), "--sample", sample,
            "--batch-size", "4", *SMALL]


def test_a_killed_run_resumes_after_its_last_complete_row_and_annotates_nothing_twice(rules_dir, lm_dir, tmp_path):
    whole = tmp_path / "whole.jsonl"
    assert thresher(_command(rules_dir, lm_dir, whole, "24")) == 0
    expected = whole.read_text(encoding="utf-8")
    assert len(expected.splitlines()) == 24

    killed = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = "import sys; from thresher.jobs.cli import main; sys.exit(main(sys.argv[1:]))"
    # A slow copy of the same run (batches of 4 rows, one every 2 s at most) so the kill lands mid-run.
    slow = "import time, classifiers.annotate as a; f = a.Annotator.annotate_many; a.Annotator.annotate_many = lambda s, d: (time.sleep(2), f(s, d))[1]; "
    process = subprocess.Popen([sys.executable, "-c", slow + code, *_command(rules_dir, lm_dir, killed, "24")], env=env, cwd=REPO)
    deadline = time.time() + 240
    while time.time() < deadline and (not killed.exists() or len(killed.read_bytes().splitlines()) < 3):
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = killed.read_text(encoding="utf-8").splitlines()
    assert 3 <= len(written) < 24
    assert expected.startswith("\n".join(written))  # the killed run wrote the first rows of the plan
    with open(killed, "a", encoding="utf-8") as handle:  # what a kill mid-write leaves: half a row
        handle.write('{"doc_id": "half a ro')
    assert thresher(_command(rules_dir, lm_dir, killed, "24")) == 0
    resumed = killed.read_text(encoding="utf-8")
    assert resumed == expected  # the same rows, in the same order, each once: as one uninterrupted run
    keys = [row["doc_id"] for row in rows_of(killed)]
    assert len(keys) == len(set(keys)) == 24


def test_a_rerun_with_another_model_or_prompt_is_refused(rules_dir, lm_dir, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    assert thresher(_command(rules_dir, lm_dir, out, "2")) == 0
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for path in shipped_prompts_dir().iterdir():
        (prompts / path.name).write_text(path.read_text(encoding="utf-8") + ("\nBe brief.\n" if path.suffix == ".txt" else ""), encoding="utf-8")
    assert thresher(_command(rules_dir, lm_dir, out, "4") + ["--prompts-dir", str(prompts)]) == 2
    assert "another prompt template" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2
    assert thresher(_command(rules_dir, tmp_path / "no-model", tmp_path / "x.jsonl")) == 2
    assert "--model" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert thresher(_command(tmp_path / "nothing", lm_dir, tmp_path / "x.jsonl")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert thresher(_command(rules_dir, lm_dir, tmp_path / "x.jsonl") + ["--backend", "vllm"]) == 2  # --device cpu
    assert "--device is for --backend transformers" in capsys.readouterr().err
    vllm = [arg for arg in _command(rules_dir, lm_dir, tmp_path / "x.jsonl") if arg not in ("--device", "cpu")] + ["--backend", "vllm"]
    assert thresher(vllm) == 2  # this machine has no vLLM (it is never installed here: it would replace torch)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--backend vllm: vLLM is not installed (pip install vllm" in err and "--backend transformers" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_labels_from_real_documents_train_a_fasttext_classifier(rules_dir, lm_dir, tmp_path):
    labels = tmp_path / "page_type.jsonl"
    assert thresher(_command(rules_dir, lm_dir, labels, "40")) == 0
    rows = rows_of(labels)
    assert Counter(row["lang"] for row in rows).keys() == {"en", "zh"}  # both languages sampled
    assert len({row["label"] for row in rows}) >= 2
    model = tmp_path / "model"
    assert thresher(["classifiers", "train", "--task", "page_type", "--data", str(labels), "--output", str(model), "--param", "bucket=20000", "--param", "dim=16"]) == 0
    manifest = json.loads((model / "classifier.json").read_text())
    # calibrated scores spread the labels: one seen once may sit only in the held-out split
    assert manifest["backend"] == "fasttext" and 2 <= len(manifest["labels"]) and set(manifest["labels"]) <= {row["label"] for row in rows}
    assert json.loads((model / "metrics.json").read_text())["train_examples"] > 0


def _readme_walkthrough() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- annotate-walkthrough -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README.md lost its annotate walk-through block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_walkthrough_runs_as_written(rules_dir, lm_dir, bootstrapped, spark, tmp_path):
    """annotate -> train -> tag, the README's three commands, with only the paths and sizes made small."""
    import shutil

    models_from_bootstrap, _ = bootstrapped
    shutil.copytree(rules_dir, tmp_path / "out" / "rules")
    for name in ("page_type", "clutter"):  # the walk-through trains topic; the other two come from bootstrap
        shutil.copytree(models_from_bootstrap / name, tmp_path / "models" / name)
    commands = _readme_walkthrough()
    assert [shlex.split(c)[:2] for c in commands] == [["thresher", "annotate"], ["thresher", "classifiers"], ["thresher", "tag"]]
    for command in commands:
        argv = shlex.split(command.replace("/models/Qwen2.5-7B-Instruct", str(lm_dir)).replace("--sample 5000", "--sample 30 --max-chars 300"))
        # Relative paths as if run from tmp_path (Spark's JVM resolves them against its own directory).
        argv = argv[:2] + [str(tmp_path / arg) if arg.split("/")[0] in ("out", "labels", "models") else arg for arg in argv[2:]]
        assert thresher(argv[1:]) == 0, command
    stats = json.loads((tmp_path / "out" / "tag" / "stats.json").read_text())
    assert stats["documents_in"] == len(list(read_documents(rules_dir, columns=("doc_id",))))
    labels = {row["label"] for row in rows_of(tmp_path / "labels" / "topic.jsonl")}
    assert json.loads((tmp_path / "models" / "topic" / "classifier.json").read_text())["labels"] == sorted(labels)
    topic = next(t for t in stats["details"]["taggers"] if t["name"] == "topic")
    assert topic["model_dir"] == str((tmp_path / "models" / "topic").resolve())
    assert set(stats["details"]["labels"]["topic"]) <= labels  # the tagger that annotate -> train made


def test_jsonl_input_without_ids_gets_the_ids_derived_from_file_and_row(rules_dir, scorer, tmp_path):
    documents = [row for row in read_documents(rules_dir)][:5]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": d["text"], "url": d["url"], "lang": d["lang"]}) + "\n" for d in documents))
    out = tmp_path / "labels.jsonl"
    annotate_file(source, out, "quality", scorer, max_chars=200)
    rows = rows_of(out)
    assert sorted(row["text"] for row in rows) == sorted(d["text"] for d in documents)
    derived = {d["text"]: derived_doc_id("docs.jsonl", i) for i, d in enumerate(documents)}
    assert all(row["doc_id"] == derived[row["text"]] for row in rows)
    assert annotate_file(source, out, "quality", scorer, max_chars=200)["rows_written"] == 0  # all there already


def _prompt_for(annotator: Annotator, step: str, label_set, lang: str, document: str) -> tuple[str, list[str]]:
    ids, answers = annotator.request(step, label_set, lang, document=document, url="https://example.org/a", domain="X", position="line 1 of 2")
    decode = annotator.scorer.tokenizer.decode
    return decode(ids), [decode(answer) for answer in answers]


@pytest.mark.parametrize("task", ["page_type", "topic", "clutter", "quality"])
def test_a_filled_prompt_shows_every_label_with_its_name_and_description_and_only_labels_are_scored(task, scorer):
    labels = label_sets(task)
    annotator = Annotator(task, scorer, load_prompts(task), labels)
    steps = [("topic_domain", labels.domains), *(("topic_subtopic", subs) for subs in labels.subtopics.values())] if task == "topic" else [(task, labels)]
    for step, label_set in steps:
        for lang, (colon, stop) in (("en", (": ", ". ")), ("zh", ("：", "。"))):
            prompt, answers = _prompt_for(annotator, step, label_set, lang, "Some document text. 一些文档内容。")
            for label in label_set.labels:
                name, description = label_set.names[label][lang], label_set.descriptions[label][lang]
                assert f"\n- {label}{colon}{name}{stop}{description}\n" in prompt, (step, lang, label)
                assert description and description != name
            # what the model's answer is scored on: the label ids alone, never a name or description
            assert answers == [f" {label}\n" for label in label_set.labels]
            assert "Some document text." in prompt


def test_the_topic_prompts_carry_the_taxonomy_descriptions(scorer):
    taxonomy = load_taxonomy()
    tree = label_sets("topic")
    annotator = Annotator("topic", scorer, load_prompts("topic"), tree)
    prompt, _ = _prompt_for(annotator, "topic_domain", tree.domains, "en", "text")
    assert all(f"- {d.id}: {d.en}. {d.description_en}" in prompt for d in taxonomy.domains)
    prompt, _ = _prompt_for(annotator, "topic_subtopic", tree.subtopics["science"], "zh", "文本")
    science = [t for t in taxonomy.topics if t.label.startswith("science.")]
    assert len(science) == 10 and all(f"- {t.label[8:]}：{t.zh}。{t.description_zh}" in prompt for t in science)


def test_a_label_or_topic_without_a_description_is_one_line_before_the_model_loads(rules_dir, lm_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for path in shipped_prompts_dir().iterdir():
        (prompts / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    labels = (prompts / "labels.yaml").read_text(encoding="utf-8")
    forum = next(line for line in labels.splitlines() if line.strip().startswith("forum:"))
    (prompts / "labels.yaml").write_text(labels.replace(forum, "  forum: {en: Forum, zh: 论坛, description: {en: A forum thread.}}"), encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert thresher(_command(rules_dir, lm_dir, out) + ["--prompts-dir", str(prompts)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{prompts / 'labels.yaml'}: page_type label forum has no zh name or description" in err
    assert not out.exists()

    topics = tmp_path / "topics.yaml"
    text = default_topics_file().read_text(encoding="utf-8")
    physics = next(line for line in text.splitlines() if line.strip().startswith("- {id: physics,"))
    described = text.splitlines()[text.splitlines().index(physics) + 1]
    topics.write_text(text.replace(described + "\n", "").replace(physics, physics.rstrip(",") + "}"), encoding="utf-8")
    command = [arg if arg != "page_type" else "topic" for arg in _command(rules_dir, lm_dir, out)] + ["--topics-file", str(topics)]
    assert thresher(command) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{topics}: topic class science.physics has no en description" in err
    assert not out.exists()


def test_a_prompt_whose_label_list_outgrows_the_model_context_is_one_clear_error(scorer):
    import copy

    from thresher.classifiers.annotate import AnnotationError

    short = copy.copy(scorer)
    tree = label_sets("topic")
    annotator = Annotator("topic", short, load_prompts("topic"), tree)
    ids, _ = annotator.request("topic_domain", tree.domains, "en", document="", url="")
    short.context = len(ids) + 40  # room for the template, the 20 domains and a little document
    fitted, _ = annotator.request("topic_domain", tree.domains, "en", document="word " * 2000, url="")
    assert len(ids) < len(fitted) <= short.context  # the document was cut to fit
    short.context = len(ids) - 1
    with pytest.raises(AnnotationError, match=r"the topic_domain\.en prompt with its label list is \d+ tokens, more than the model's context"):
        annotator.request("topic_domain", tree.domains, "en", document="word " * 10, url="")


@pytest.mark.parametrize("damage", ["config not json", "pickled weights only", "weights cut short"])
def test_a_model_that_does_not_load_is_one_line_naming_it(rules_dir, lm_dir, tmp_path, capsys, damage):
    """A bad --model gave UnpicklingError, SafetensorError or four chained tracebacks (bad config.json)."""
    import shutil

    model = shutil.copytree(lm_dir, tmp_path / "model")
    weights = next(model.glob("*.safetensors"))
    if damage == "config not json":
        (model / "config.json").write_text("{not json")
    elif damage == "pickled weights only":
        weights.rename(model / "pytorch_model.bin")  # never unpickled: it could run code
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "labels.jsonl"
    assert thresher(_command(rules_dir, model, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"thresher annotate: error: --model {model}: cannot be loaded (")
    assert not out.exists()


@pytest.mark.parametrize("task", ["topic", "clutter"])
def test_a_batch_of_documents_gets_the_labels_one_document_at_a_time_gets(task, rules_dir, scorer):
    documents = [row for row in read_documents(rules_dir)][:5]
    if task == "clutter":
        documents = [{**d, "text": d["text"].split("\n")[0], "line_index": 0, "line_count": 3} for d in documents]
    annotator = Annotator(task, scorer, load_prompts(task), label_sets(task), max_chars=300)
    batched = annotator.annotate_many(documents)
    for document, row in zip(documents, batched, strict=True):
        alone = annotator.annotate_many([document])[0]
        assert row["label"] == alone["label"]
        assert row["label_probabilities"] == pytest.approx(alone["label_probabilities"], abs=1e-5)


def test_the_label_score_is_an_option_recorded_in_every_row_and_a_rerun_keeps_it(rules_dir, scorer, tmp_path):
    rows = {}
    for how in ("sum", "mean", "calibrated"):
        out = tmp_path / f"{how}.jsonl"
        annotate_file(rules_dir, out, "page_type", scorer, sample=4, seed=1, max_chars=200, label_score=how)
        rows[how] = rows_of(out)
        assert {row["label_score"] for row in rows[how]} == {how}
    assert rows["sum"][0]["label_probabilities"] != rows["mean"][0]["label_probabilities"] != rows["calibrated"][0]["label_probabilities"]
    from thresher.classifiers.annotate import AnnotationError

    with pytest.raises(AnnotationError, match="--label-score mean"):
        annotate_file(rules_dir, tmp_path / "mean.jsonl", "page_type", scorer, sample=6, seed=1, max_chars=200, label_score="sum")


def test_a_label_outside_the_taxonomy_is_one_line_before_any_model_loads(rules_dir, lm_dir, tmp_path, capsys, monkeypatch):
    """`lifestyle.food` (not a class of configs/topics.yaml) was taken into a labels file, trained on
    and given a rebalancing weight."""
    import thresher.classifiers.annotate as annotate

    monkeypatch.setattr(annotate, "CausalLMScorer", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "topic.jsonl"
    out.write_text(json.dumps({"doc_id": "a", "text": "Boil the pasta.", "label": "lifestyle.food", "task": "topic"}) + "\n")
    command = [arg if arg != "page_type" else "topic" for arg in _command(rules_dir, lm_dir, out)]
    assert thresher(command) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{out}:1: label lifestyle.food is not in the task's labels" in err
    assert thresher([arg for arg in command if arg not in ("--device", "cpu")] + ["--devices", "cpu,cpu"]) == 2
    assert "label lifestyle.food is not in" in capsys.readouterr().err

    prompts = tmp_path / "prompts"
    __import__("shutil").copytree(shipped_prompts_dir(), prompts)
    labels = prompts / "labels.yaml"
    labels.write_text(labels.read_text(encoding="utf-8").replace("page_type:\n", "page_type:\n  recipe: {en: Recipe, zh: 菜谱, description: {en: A recipe., zh: 菜谱。}}\n", 1), encoding="utf-8")
    assert thresher(_command(rules_dir, lm_dir, tmp_path / "p.jsonl") + ["--prompts-dir", str(prompts)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "page_type label recipe is not one of the task's labels" in err


def test_several_processes_write_parts_merged_into_the_output_one_process_writes(rules_dir, lm_dir, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    base = [arg for arg in _command(rules_dir, lm_dir, one, "10") if arg not in ("--device", "cpu")]
    assert thresher(base + ["--devices", "cpu"]) == 0
    command = [str(two) if arg == str(one) else arg for arg in base]
    assert thresher(command + ["--devices", "cpu,cpu"]) == 0
    assert two.read_bytes() == one.read_bytes() and len(rows_of(two)) == 10
    assert not (tmp_path / "two.jsonl.parts").exists()
    # A stopped several-process run: a part's rows are kept, the rest annotated, the merge the same.
    three = tmp_path / "three.jsonl"
    part = tmp_path / "three.jsonl.parts" / "part-001-of-002.jsonl"
    part.parent.mkdir()
    part.write_text("".join(line + "\n" for line in one.read_text().splitlines()[4:8]))  # batch 1 of 4 rows, process 1 of 2
    assert thresher([str(three) if arg == str(one) else arg for arg in base] + ["--devices", "cpu,cpu,cpu"]) == 0
    assert three.read_bytes() == one.read_bytes()


def test_annotated_labels_of_one_class_refuse_training_in_one_line(rules_dir, lm_dir, tmp_path, capsys):
    labels = tmp_path / "one.jsonl"
    assert thresher(_command(rules_dir, lm_dir, labels, "1")) == 0
    capsys.readouterr()
    assert thresher(["classifiers", "train", "--task", "page_type", "--data", str(labels), "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "training needs at least two labels" in err
