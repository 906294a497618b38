import pytest

from thresher.pipeline.langid import LanguageFilter, default_model_path, load_model, predict_language, top_language


def sentences(shared_data, lang):
    lines = (shared_data / "langid/sentences" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


@pytest.mark.parametrize("lang, min_accuracy", [("en", 0.97), ("zh", 0.93), ("de", 0.97)])
def test_lid176_accuracy_on_labelled_sentences(shared_data, lang, min_accuracy):
    lines = sentences(shared_data, lang)
    correct = sum(top_language(line)[0] == lang for line in lines)
    assert correct / len(lines) >= min_accuracy


def test_model_loaded_once_per_path():
    assert load_model(default_model_path()) is load_model(default_model_path())


def test_newlines_do_not_cut_the_input():
    text = "Der Hund läuft schnell.\nThe cat sleeps all day long on the sofa near the window, and nobody minds at all."
    assert predict_language(text, k=2) == predict_language(text.replace("\n", " "), k=2)
    assert top_language(text)[0] == "en"


def test_scores_are_probabilities_best_first():
    top = predict_language("这是一个关于茶叶历史的简短介绍。", k=3)
    assert top[0][0] == "zh" and all(0 <= p <= 1 for _, p in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert predict_language("   \n ") == []


def test_language_filter_rules():
    keep = LanguageFilter(["zh", "en"], 0.65)
    assert keep({"lang": "en", "lang_score": 0.9}) is None
    assert keep({"lang": "de", "lang_score": 0.99}).rule == "lang_not_kept:de"
    assert keep({"lang": "en", "lang_score": 0.5}).rule == "lang_low_score"
    assert LanguageFilter([], 0.65)({"lang": "de", "lang_score": 0.99}) is None


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="language ID model"):
        top_language("hello world", str(tmp_path / "lid.bin"))
