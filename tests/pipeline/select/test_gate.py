"""Whether a model step acts, from its model's held-out figures and their intervals (no Spark)."""

from __future__ import annotations

import numpy as np

from thresher.classifiers.metrics import classification_metrics
from thresher.pipeline.config import load_config
from thresher.pipeline.select.gate import decide
from thresher.schemas.tags import DeclaredTagger


def tagger(name, labels, heldout):
    return DeclaredTagger(name, "/models/" + name, labels=tuple(labels), heldout=heldout)


def measured(n, right, labels=("0", "1"), seed=0):
    """Held-out figures of a model right on a `right` share of `n` examples."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(labels), n)
    predicted = np.where(rng.random(n) < right, truth, (truth + 1) % len(labels))
    probs = np.eye(len(labels))[predicted] * 0.8 + 0.2 / len(labels)
    return classification_metrics([labels[t] for t in truth], list(labels), probs)


def test_a_weak_page_type_model_does_not_act_and_says_why():
    gate = load_config().select.model_gate
    # the default run's page-type model: macro-F1 0.29 on 23 held-out pages
    labels = ("article", "forum", "listing", "product")
    weak = decide(tagger("page_type", labels, measured(23, 0.35, labels)), gate)
    assert not weak.acts and weak.figure == "macro_f1" and weak.floor == 0.5 and weak.examples == 23
    assert "min_examples=30" in weak.reason and "held-out macro_f1" in weak.reason
    bigger = decide(tagger("page_type", labels, measured(400, 0.35, labels)), gate)
    assert not bigger.acts and bigger.interval[0] < 0.5
    assert "lower bound is under the floor 0.5 (select.model_gate.floors.page_type.floor)" in bigger.reason
    record = bigger.record()
    assert record["value"] == bigger.value and record["interval"][0] <= record["value"] <= record["interval"][1]
    assert record["level"] == 0.95


def test_a_strong_model_acts_and_the_lower_bound_decides():
    gate = load_config().select.model_gate
    strong = decide(tagger("quality", ("0", "1"), measured(400, 0.9)), gate)  # default: auto -> auc, floor 0.6
    assert strong.acts and strong.figure == "auc" and strong.interval[0] >= 0.6
    assert "acts: the interval's lower bound is at or above the floor 0.6 (select.model_gate.default.floor)" in strong.reason
    # a point estimate over the floor whose interval reaches under it does not act; `bound: point` lets it
    heldout = measured(40, 0.65)
    assert heldout["auc"] > 0.6 > heldout["interval"]["auc"][0]
    assert not decide(tagger("quality", ("0", "1"), heldout), gate).acts
    assert decide(tagger("quality", ("0", "1"), heldout), load_config(None, {"select.model_gate.bound": "point"}).select.model_gate).acts
    assert decide(tagger("quality", ("0", "1"), heldout), load_config(None, {"select.model_gate.enabled": False}).select.model_gate).acts


def test_the_shipped_clutter_model_clears_its_floor_and_a_model_without_an_interval_does_not():
    import json

    from thresher.classifiers.clutter import shipped_model_dir

    gate = load_config().select.model_gate
    heldout = json.loads((shipped_model_dir() / "metrics.json").read_text())["heldout"]
    shipped = decide(tagger("clutter", ("clutter", "keep"), heldout), gate)
    assert shipped.acts and shipped.figure == "auc" and shipped.interval[0] >= 0.75
    old = {k: v for k, v in heldout.items() if k != "interval"}  # metrics.json of an older thresher
    decision = decide(tagger("clutter", ("clutter", "keep"), old), gate)
    assert not decision.acts and "no interval recorded" in decision.reason
    assert not decide(tagger("topic", ("a", "b", "c"), {}), gate).acts  # no metrics.json at all
