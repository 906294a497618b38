"""transformers backend: a tiny random-initialised model, fine-tuned a few steps on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from classifiers.base import load_classifier
from classifiers.transformers_backend import TransformersClassifier, build_scratch_model

torch.set_num_threads(1)

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
    assert reloaded.dtype == torch.float32 and reloaded.device.type == "cpu"  # no GPU here: fp32 on CPU


def test_training_without_a_base_model_is_refused():
    with pytest.raises(ValueError, match="base_model"):
        TransformersClassifier.train(TEXTS, LABELS, {"base_model": ""})
