"""fastText backend: tokenization for Chinese, the numpy-2-safe prediction path, deterministic training."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.classifiers.fasttext_backend import FastTextClassifier, fasttext_tokens

from .conftest import SMALL_FASTTEXT, read_jsonl


def test_tokens_split_cjk_characters_and_punctuation():
    assert fasttext_tokens("Hello, World!\n你好世界。", 100) == "hello , world ! 你 好 世 界 。"
    assert fasttext_tokens("abcdef", 3) == "abc"


@pytest.fixture(scope="module")
def chinese_labelled(shared_data):
    folder = shared_data / "quality" / "chinesewebtext"
    texts = [r["text"] for r in read_jsonl(folder / "clean.jsonl")] + [r["text"] for r in read_jsonl(folder / "dirty.jsonl")]
    return texts, ["clean"] * 10 + ["dirty"] * 10


def test_training_is_deterministic_and_learns_chinese(chinese_labelled):
    texts, labels = chinese_labelled
    params = {**SMALL_FASTTEXT, "epoch": 50, "lr": 1.0}  # 20 long documents: more passes to fit them
    first = FastTextClassifier.train(texts, labels, params, seed=3)
    second = FastTextClassifier.train(texts, labels, params, seed=3)
    assert np.array_equal(first.predict_proba(texts), second.predict_proba(texts))
    predicted, _ = first.predict_batch(texts)
    # Training-set fit on character n-grams of Chinese text: tokenization works for unspaced scripts.
    assert np.mean([p == t for p, t in zip(predicted, labels, strict=True)]) >= 0.9


def test_prediction_uses_the_low_level_binding(chinese_labelled):
    texts, labels = chinese_labelled
    model = FastTextClassifier.train(texts, labels, SMALL_FASTTEXT)
    # fasttext 0.9.3's Python predict() fails under numpy 2 ("copy=False"); ours must not.
    if np.__version__.startswith("2"):
        with pytest.raises(ValueError):
            model.model.predict("一个 测试")
    probs = model.predict_proba(["一个测试\n带换行"])  # newlines are fine: text is tokenized first
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-3


def test_labels_with_whitespace_and_single_label_are_refused():
    with pytest.raises(ValueError, match="whitespace"):
        FastTextClassifier.train(["a", "b"], ["x y", "z"], SMALL_FASTTEXT)
    with pytest.raises(ValueError, match="at least two labels"):
        FastTextClassifier.train(["a", "b"], ["x", "x"], SMALL_FASTTEXT)


def test_quantize_writes_a_smaller_ftz_that_loads_and_scores(chinese_labelled, tmp_path):
    from thresher.classifiers.base import load_classifier

    texts, labels = chinese_labelled
    plain = FastTextClassifier.train(texts, labels, SMALL_FASTTEXT)
    quantized = FastTextClassifier.train(texts, labels, {**SMALL_FASTTEXT, "quantize": True})
    plain.save(tmp_path / "plain")
    quantized.save(tmp_path / "quantized")
    assert (tmp_path / "quantized" / "model.ftz").stat().st_size < (tmp_path / "plain" / "model.bin").stat().st_size
    loaded = load_classifier(tmp_path / "quantized")
    assert loaded.model.is_quantized()
    np.testing.assert_allclose(loaded.predict_proba(texts[:5]), quantized.predict_proba(texts[:5]))
