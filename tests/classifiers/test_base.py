"""The classifier interface: both backends pass the same tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from thresher.classifiers.base import (
    MANIFEST_NAME,
    ModelNotFoundError,
    UnusableModelError,
    backend_class,
    cached_classifier,
    check_model,
    load_classifier,
    read_manifest,
)
from thresher.classifiers.transformers_backend import build_scratch_model, build_scratch_qwen2

from .conftest import SMALL_FASTTEXT, read_jsonl

torch.set_num_threads(1)

TINY_TRANSFORMER = {"max_steps": 3, "batch_size": 8, "max_length": 64, "lr": 1e-3}


@pytest.fixture(scope="module")
def labelled(shared_data):
    rows = read_jsonl(shared_data / "quality" / "dclm" / "majority_data.jsonl")
    # A balanced handful: the interface tests check behaviour, not accuracy.
    picked = [r for r in rows if r["label"] == 0][:30] + [r for r in rows if r["label"] == 1][:30]
    return [r["text"] for r in picked], [str(r["label"]) for r in picked]


@pytest.fixture(scope="module")
def base_model(labelled, tmp_path_factory):
    return build_scratch_model(labelled[0], tmp_path_factory.mktemp("base"), vocab_size=500)


@pytest.fixture(scope="module")
def qwen2_base_model(labelled, tmp_path_factory):
    return build_scratch_qwen2(labelled[0], tmp_path_factory.mktemp("qwen2"), vocab_size=500)


# transformers twice: a BERT encoder, and a Qwen2 decoder (the architecture of a 1.5B GPU tagger).
@pytest.fixture(scope="module", params=["fasttext", "transformers", "transformers-qwen2"])
def trained(request, labelled, base_model, qwen2_base_model, tmp_path_factory):
    texts, labels = labelled
    backend = request.param.split("-")[0]
    base = {"transformers": base_model, "transformers-qwen2": qwen2_base_model}.get(request.param)
    params = SMALL_FASTTEXT if backend == "fasttext" else {**TINY_TRANSFORMER, "base_model": str(base)}
    classifier = backend_class(backend).train(texts, labels, params, seed=0)
    directory = classifier.save(tmp_path_factory.mktemp(request.param))
    return classifier, directory, texts


def test_predict_proba_is_a_distribution_over_sorted_labels(trained):
    classifier, _, texts = trained
    assert classifier.labels == ["0", "1"]
    probs = classifier.predict_proba(texts[:7])
    assert probs.shape == (7, 2)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_predict_batch_is_the_argmax_of_predict_proba(trained):
    classifier, _, texts = trained
    labels, scores = classifier.predict_batch(texts[:9])
    probs = classifier.predict_proba(texts[:9])
    assert labels == [classifier.labels[i] for i in probs.argmax(axis=1)]
    assert np.allclose(scores, probs.max(axis=1))
    assert np.allclose(classifier.label_scores(texts[:9], "1"), probs[:, 1])


def test_empty_batch_and_empty_text(trained):
    classifier, _, _ = trained
    labels, scores = classifier.predict_batch([])
    assert labels == [] and len(scores) == 0
    assert classifier.predict_proba([""]).shape == (1, 2)


def test_saved_model_reloads_and_predicts_identically(trained):
    classifier, directory, texts = trained
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["backend"] == classifier.backend and manifest["labels"] == ["0", "1"]
    reloaded = load_classifier(directory)
    assert type(reloaded) is type(classifier)
    assert np.array_equal(reloaded.predict_proba(texts), classifier.predict_proba(texts))


def test_scores_do_not_depend_on_batch_composition(trained):
    classifier, _, texts = trained
    together = classifier.predict_proba(texts[:6])
    apart = np.vstack([classifier.predict_proba(texts[:3]), classifier.predict_proba(texts[3:6])])
    assert np.allclose(together, apart, atol=1e-6)


def test_cached_classifier_loads_once_per_path(trained):
    _, directory, _ = trained
    first = cached_classifier(directory)
    assert cached_classifier(str(directory) + "/") is first


def test_missing_model_names_the_bootstrap_command(tmp_path):
    with pytest.raises(ModelNotFoundError, match="thresher classifiers bootstrap"):
        read_manifest(tmp_path)


def test_unknown_backend_is_refused():
    with pytest.raises(UnusableModelError, match="unknown classifier backend"):
        backend_class("svm")




def test_a_broken_model_is_one_clear_error_from_check_model(trained, tmp_path):
    """What a task would hit (a truncated fastText file, weights only as a pickle, a classifier.json that is
    no JSON or names no backend) is found by check_model on the driver, naming the directory."""
    import shutil

    _, directory, _ = trained
    copy = shutil.copytree(directory, tmp_path / "model")
    check_model(copy)  # an intact model passes
    backend = read_manifest(copy)["backend"]
    broken = shutil.copytree(directory, tmp_path / "broken")
    if backend == "fasttext":
        model_file = broken / read_manifest(broken).get("model_file", "model.bin")
        model_file.write_bytes(model_file.read_bytes()[:1000])
        expected = "its fasttext model cannot be loaded"
    else:
        for weights in broken.glob("*.safetensors"):
            weights.unlink()
        torch.save({"weight": torch.zeros(2)}, broken / "pytorch_model.bin")
        expected = "no .safetensors weights"
    with pytest.raises(UnusableModelError, match=expected) as error:
        check_model(broken)
    assert str(broken) in str(error.value) and "\n" not in str(error.value)
    (copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(UnusableModelError, match=f"{MANIFEST_NAME}: not JSON"):
        read_manifest(copy)
    (copy / MANIFEST_NAME).write_text(json.dumps({"labels": ["a", "b"]}))
    with pytest.raises(UnusableModelError, match="no backend"):
        read_manifest(copy)
