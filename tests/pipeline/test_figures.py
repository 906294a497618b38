"""pipeline.figures: a model's held-out figures as one line, each with its interval."""

from thresher.pipeline.figures import figure_text


def test_each_figure_reads_with_its_interval_and_level():
    heldout = {"accuracy": 0.6125, "macro_f1": 0.5, "auc": float("nan"), "examples": 42,
               "interval": {"level": 0.95, "accuracy": [0.45, 0.76]}}
    assert figure_text(heldout) == "accuracy 0.613 [0.450, 0.760], macro_f1 0.500 (no interval) on 42 examples (95% intervals)"
    assert figure_text({"examples": 0}) == "not measured"
