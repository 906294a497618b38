"""transformers backend: a tiny random-initialised model, fine-tuned a few steps on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thresher.classifiers.base import load_classifier
from thresher.classifiers.transformers_backend import TransformersClassifier, build_scratch_model

torch.set_num_threads(1)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TEXTS = [
    "The committee approved the annual budget after a long debate.",
    "Researchers measured the temperature of the lake every morning.",
    "Sign in | Register | Cart (0)",
    "Home > Products > Shoes > Sale",
    "今天的天气很好，我们去公园散步。",
    "首页 | 登录 | 注册",
] * 4
LABELS = ["keep", "keep", "clutter", "clutter", "keep", "clutter"] * 4


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return build_scratch_model(TEXTS, tmp_path_factory.mktemp("base"), vocab_size=300, max_positions=64)


def test_scratch_model_is_a_local_bert_with_a_trained_tokenizer(base_dir):
    config = json.loads((base_dir / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["num_hidden_layers"] == 2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    ids = tokenizer("登录 sign in")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and tokenizer.unk_token_id not in ids


def test_fine_tuning_moves_the_model_and_a_reload_predicts_identically(base_dir, tmp_path):
    params = {"base_model": str(base_dir), "max_steps": 1, "batch_size": 8, "max_length": 32, "lr": 1e-3}
    one_step = TransformersClassifier.train(TEXTS, LABELS, params, seed=0)
    more_steps = TransformersClassifier.train(TEXTS, LABELS, {**params, "max_steps": 12}, seed=0)
    assert more_steps.labels == ["clutter", "keep"]
    assert not np.allclose(one_step.predict_proba(TEXTS), more_steps.predict_proba(TEXTS))
    # Same seed, same steps: training is reproducible on CPU.
    again = TransformersClassifier.train(TEXTS, LABELS, {**params, "max_steps": 12}, seed=0)
    assert np.allclose(again.predict_proba(TEXTS), more_steps.predict_proba(TEXTS), atol=1e-6)
    more_steps.save(tmp_path / "model")
    reloaded = load_classifier(tmp_path / "model")
    assert np.array_equal(reloaded.predict_proba(TEXTS), more_steps.predict_proba(TEXTS))
    gpu = torch.cuda.is_available()  # bf16 on a GPU, fp32 on the CPU
    assert (reloaded.dtype, reloaded.device.type) == ((torch.bfloat16, "cuda") if gpu else (torch.float32, "cpu"))


def test_training_without_a_base_model_is_refused():
    with pytest.raises(ValueError, match="base_model"):
        TransformersClassifier.train(TEXTS, LABELS, {"base_model": ""})


# A Qwen2-shaped tagger (the seed classifier's architecture), random weights, tokenizer trained here.
DOCUMENTS = [
    ("The committee approved the annual budget after a long debate about roads and schools. " * (1 + i % 9))
    + ("今天的天气很好，我们去公园散步。" * (i % 4))
    + f" item {i}"
    for i in range(120)
]


@pytest.fixture(scope="module")
def qwen_tagger(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from thresher.classifiers.transformers_backend import InferenceSettings, build_scratch_qwen2

    base = build_scratch_qwen2(DOCUMENTS, tmp_path_factory.mktemp("qwen"), vocab_size=400)
    model = AutoModelForSequenceClassification.from_pretrained(base, attn_implementation="sdpa")
    classifier = TransformersClassifier(model, AutoTokenizer.from_pretrained(base), ["no", "yes"], InferenceSettings(max_length=96))
    # Saved with device "auto"; these tests pin the CPU, where scores are exact (GPU tests below).
    return load_classifier(classifier.save(tmp_path_factory.mktemp("tagger"))).with_settings({"device": "cpu"})


def _one_by_one(classifier, texts):
    return np.stack([classifier.predict_proba([text])[0] for text in texts])


def test_scores_are_in_input_order_and_identical_whatever_the_token_budget(qwen_tagger):
    small = qwen_tagger.with_settings({"token_budget": 96, "window_documents": 2048}).predict_proba(DOCUMENTS)
    large = qwen_tagger.with_settings({"token_budget": 8192, "window_documents": 2048}).predict_proba(DOCUMENTS)
    windows = qwen_tagger.with_settings({"token_budget": 1024, "window_documents": 7}).predict_proba(DOCUMENTS)
    assert np.array_equal(small, large) and np.array_equal(small, windows)  # bit-identical on CPU
    # Row i is document i: the same as scoring each document alone, and a shuffled input permutes rows.
    assert np.array_equal(small[:15], _one_by_one(qwen_tagger, DOCUMENTS[:15]))
    order = np.random.default_rng(0).permutation(len(DOCUMENTS))
    assert np.array_equal(qwen_tagger.predict_proba([DOCUMENTS[i] for i in order]), small[order])
    assert np.allclose(small.sum(axis=1), 1.0) and len(np.unique(small[:, 0])) > 10  # real, varied scores
    assert qwen_tagger.predict_proba([]).shape == (0, 2)


def test_batches_respect_the_token_budget_and_group_one_padded_length(qwen_tagger):
    batches = list(qwen_tagger.with_settings({"token_budget": 300, "pad_multiple": 16})._batches(DOCUMENTS))
    rows = np.concatenate([batch.rows for batch in batches])
    assert sorted(rows.tolist()) == list(range(len(DOCUMENTS)))  # every document once
    lengths = [batch.input_ids.shape[1] for batch in batches]
    assert lengths == sorted(lengths) and len(set(lengths)) > 2  # length-sorted, several lengths
    for batch in batches:
        assert batch.input_ids.numel() <= 300 and batch.input_ids.shape[1] % 16 == 0 and batch.input_ids.shape[1] <= 96
        real = batch.attention_mask.sum(dim=1)
        assert (real > batch.input_ids.shape[1] - 16).all()  # no document padded past its own bucket


def test_head_tail_truncation_keeps_both_ends(qwen_tagger):
    from thresher.classifiers.transformers_backend import truncate_ids

    ids = list(range(100))
    assert truncate_ids(ids, 10, "head") == list(range(10))
    assert truncate_ids(ids, 10, "head_tail") == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert truncate_ids(ids[:8], 10, "head_tail") == ids[:8]
    start, end = "alpha " * 200, " omega" * 200
    texts = [start + "middle " * 500 + end, start + "middle " * 500 + " budget" * 200]
    tokenizer = qwen_tagger.tokenizer
    head_tagger = qwen_tagger.with_settings({"truncation": "head", "max_length": 64})
    both_tagger = qwen_tagger.with_settings({"truncation": "head_tail", "max_length": 64})
    head, both = head_tagger._token_ids(texts), both_tagger._token_ids(texts)
    assert len(head[0]) == len(both[0]) == 64
    assert "omega" not in tokenizer.decode(head[0]) and "omega" in tokenizer.decode(both[0][32:])
    assert "alpha" in tokenizer.decode(both[0][:32])
    # Only the tail differs: head truncation cannot tell the two apart, head_tail can.
    scored_head, scored_both = head_tagger.predict_proba(texts), both_tagger.predict_proba(texts)
    assert np.array_equal(scored_head[0], scored_head[1]) and not np.array_equal(scored_both[0], scored_both[1])


def test_host_memory_is_bounded_by_the_window_not_the_number_of_documents(qwen_tagger):
    import tracemalloc

    windowed = qwen_tagger.with_settings({"window_documents": 64, "token_budget": 2048})
    one_window = qwen_tagger.with_settings({"window_documents": 100_000, "token_budget": 2048})

    def peak(tagger, texts):
        tracemalloc.start()
        tagger.predict_proba(texts)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    few, many = DOCUMENTS * 2, DOCUMENTS * 16  # 240 and 1920 documents
    peak_few, peak_many = peak(windowed, few), peak(windowed, many)
    # 8x the documents: the output grows by 8x16 bytes a row, the tokenized window not at all.
    assert peak_many < peak_few * 1.5 + len(many) * 2 * 8, (peak_few, peak_many)
    # The measure can tell: with all documents in one window, memory grows with them.
    assert peak(one_window, many) > 3 * peak(one_window, few)


def test_settings_are_stored_checked_and_overridden_by_config(qwen_tagger, tmp_path):
    from thresher.classifiers.transformers_backend import InferenceSettings
    from thresher.pipeline.config import load_config

    manifest = json.loads((qwen_tagger.save(tmp_path / "again") / "classifier.json").read_text())
    assert manifest["inference"]["max_length"] == 96 and manifest["inference"]["device"] == "auto"
    assert manifest["inference"]["token_budget"] == 32768  # the default, stored with the model
    overrides = load_config(None, {"transformers.token_budget": 4096, "transformers.truncation": "head_tail"}).transformers.overrides()
    assert overrides == {"token_budget": 4096, "truncation": "head_tail"}
    assert qwen_tagger.with_settings(overrides).settings.token_budget == 4096
    assert qwen_tagger.settings.token_budget == 32768  # a configured copy; the loaded one is unchanged
    with pytest.raises(ValueError, match="truncation"):
        InferenceSettings(truncation="middle")
    with pytest.raises(ValueError, match="token_budget"):
        InferenceSettings(max_length=512, token_budget=100)
    with pytest.raises(ValueError, match="unknown inference setting"):
        qwen_tagger.with_settings({"batch": 3})


def test_a_spark_task_runs_on_the_first_visible_gpu_or_the_cpu(spark, qwen_tagger, tmp_path):
    """Device "auto" inside a local-mode Spark task (no GPU resource given): the first visible GPU, or
    the CPU when there is none; a mapInArrow over the tagger returns the plain call's scores, row by row."""
    import pyarrow as pa

    from thresher.classifiers.base import cached_classifier
    from thresher.classifiers.transformers_backend import task_device

    directory = str(qwen_tagger.save(tmp_path / "spark_tagger"))

    def tag(batches):
        classifier = cached_classifier(directory)
        for batch in batches:
            probs = classifier.predict_proba(batch.column("text").to_pylist())
            yield pa.RecordBatch.from_pydict(
                {"i": batch.column("i"), "yes": pa.array(probs[:, 1]), "device": [str(task_device())] * batch.num_rows}
            )

    frame = spark.createDataFrame([(i, text) for i, text in enumerate(DOCUMENTS)], "i long, text string").repartition(3)
    rows = sorted(frame.mapInArrow(tag, "i long, yes double, device string").collect())
    gpu = torch.cuda.is_available()
    assert {row["device"] for row in rows} == {"cuda:0" if gpu else "cpu"}
    expected = load_classifier(directory).predict_proba(DOCUMENTS)[:, 1]  # device auto, as in the task
    got = np.array([row["yes"] for row in rows])
    assert np.allclose(got, expected, atol=1e-2) if gpu else np.array_equal(got, expected)


@CUDA
def test_on_a_gpu_the_tagger_runs_in_bf16_and_scores_match_across_budgets(qwen_tagger, tmp_path):
    on_gpu = load_classifier(qwen_tagger.save(tmp_path / "gpu")).with_settings({"device": "cuda:0"})
    small = on_gpu.with_settings({"token_budget": 96}).predict_proba(DOCUMENTS)
    large = on_gpu.with_settings({"token_budget": 8192}).predict_proba(DOCUMENTS)
    assert on_gpu.model.dtype == torch.bfloat16 and on_gpu.device.type == "cuda"
    assert np.allclose(small, large, atol=2e-2)  # bf16 tolerance
    assert np.allclose(small, qwen_tagger.predict_proba(DOCUMENTS), atol=5e-2)  # the fp32 CPU scores


def test_a_spark_gpu_address_maps_to_its_cuda_index(monkeypatch):
    from thresher.classifiers.transformers_backend import visible_index

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_index("3") == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # a cluster manager showed this process two GPUs
    assert visible_index("3") == 1 and visible_index("2") == 0
