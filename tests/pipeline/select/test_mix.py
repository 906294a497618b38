"""The mix solver, copies from class weights, group expansion and the top-fraction cut: achieved shares are recomputed here from
the weights and the amounts, never read back from the solution's own numbers."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from thresher.classifiers.topic import load_taxonomy
from thresher.pipeline.config import ConfigError
from thresher.pipeline.seeded_hash import unit_hash
from thresher.pipeline.select.mix import REST, MixTarget, expand_groups, sample_copies, solve_mix, top_fraction_cut


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def achieved(weights: dict[str, float], amounts: dict[str, float], targets: list[MixTarget]) -> dict[str, float]:
    """Group shares after weighting, from the per-class weights and amounts alone."""
    in_target = {c: t.name for t in targets for c in t.classes}
    out = {t.name: 0.0 for t in targets} | {REST: 0.0}
    for label, amount in amounts.items():
        out[in_target.get(label, REST)] += weights[label] * amount
    total = sum(out.values())
    return {name: value / total for name, value in out.items()}


def squared_error(shares: dict[str, float], targets: list[MixTarget]) -> float:
    wanted = {t.name: t.share for t in targets} | {REST: 1 - sum(t.share for t in targets)}
    return sum((shares[name] - wanted[name]) ** 2 for name in wanted)


def generated_amounts(taxonomy, rng: random.Random) -> dict[str, float]:
    """Token counts per class: heavy-tailed, some classes absent, like a crawl."""
    return {label: float(int(rng.lognormvariate(10, 1.5))) for label in taxonomy.labels if rng.random() < 0.8}


def random_targets(taxonomy, rng: random.Random, groups: int) -> list[MixTarget]:
    domains = sorted({label.split(".")[0] for label in taxonomy.labels})
    chosen = rng.sample(domains, groups)
    shares = [rng.uniform(0.05, 0.9 / groups) for _ in chosen]
    return [MixTarget(d, tuple(label for label in taxonomy.labels if label.startswith(d + ".")), s) for d, s in zip(chosen, shares, strict=True)]


def test_feasible_targets_are_reached_on_generated_amounts(taxonomy):
    rng = random.Random(7)
    for trial in range(200):
        amounts = generated_amounts(taxonomy, rng)
        targets = random_targets(taxonomy, rng, rng.randint(1, 4))
        solution = solve_mix(amounts, targets, max_copies=4.0, allow_downsampling=True)
        shares = achieved(solution.weights, amounts, targets)
        assert solution.feasible, (trial, solution.shortfalls)
        for target in targets:
            assert abs(shares[target.name] - target.share) < 0.01
            assert abs(shares[target.name] - target.share) < 1e-9
        assert abs(shares[REST] - (1 - sum(t.share for t in targets))) < 1e-9
        assert all(0 <= w <= 4.0 for w in solution.weights.values())
        assert solution.shortfalls == {}


def test_least_change_no_drop_and_no_more_upsampling_than_needed():
    amounts = {"a": 100.0, "b": 300.0, "c": 600.0}
    targets = [MixTarget("A", ("a",), 0.2), MixTarget("B", ("b",), 0.3)]  # rest (c) 0.5
    solution = solve_mix(amounts, targets, max_copies=4.0)
    # A needs 2x relative to rest's 0.5/0.6; the smallest weight is exactly 1 (rest is not downsampled)
    w = solution.weights
    assert min(w.values()) == pytest.approx(1.0)
    assert w["c"] == pytest.approx(1.0)
    assert w["a"] / w["c"] == pytest.approx((0.2 / 100) / (0.5 / 600))
    assert w["b"] / w["c"] == pytest.approx((0.3 / 300) / (0.5 / 600))
    assert solution.shares_after["A"] == pytest.approx(0.2)


def test_cap_forces_downsampling_with_the_largest_weight_at_the_cap():
    amounts = {"k": 100.0, "r": 900.0}
    targets = [MixTarget("knowledge", ("k",), 0.6)]  # needs k/r weight ratio (0.6/100)/(0.4/900) = 13.5
    solution = solve_mix(amounts, targets, max_copies=4.0)
    assert solution.weights["k"] == pytest.approx(4.0)
    assert solution.weights["r"] == pytest.approx(4.0 / 13.5)
    assert achieved(solution.weights, amounts, targets)["knowledge"] == pytest.approx(0.6, abs=1e-9)
    assert solution.feasible


def test_no_downsampling_keeps_every_weight_at_least_one_and_reports_the_shortfall():
    amounts = {"k": 100.0, "r": 900.0}
    targets = [MixTarget("knowledge", ("k",), 0.6)]
    solution = solve_mix(amounts, targets, max_copies=4.0, allow_downsampling=False)
    assert min(solution.weights.values()) >= 1.0
    # two groups: the closest reachable mix is the widest weight ratio, k at the cap and r at 1
    reachable = 400.0 / (400.0 + 900.0)
    shares = achieved(solution.weights, amounts, targets)
    assert shares["knowledge"] == pytest.approx(reachable, abs=1e-9)
    assert not solution.feasible
    assert set(solution.shortfalls) == {"knowledge"}
    assert solution.shortfalls["knowledge"] == pytest.approx(0.6 - reachable, abs=1e-9)


def test_no_downsampling_still_reaches_targets_the_cap_allows():
    amounts = {"k": 300.0, "r": 700.0}
    targets = [MixTarget("knowledge", ("k",), 0.6)]  # ratio 3.5 <= 4
    solution = solve_mix(amounts, targets, max_copies=4.0, allow_downsampling=False)
    assert solution.feasible
    assert solution.weights["r"] == pytest.approx(1.0)
    assert solution.weights["k"] == pytest.approx(3.5)


def _grid_best(amounts: list[float], wanted: list[float], lo: float, cap: float, steps: int) -> float:
    """The least squared share error over a grid of weight vectors in [lo, cap]^groups."""
    grid = np.linspace(lo, cap, steps)
    weights = np.array(list(itertools.product(grid, repeat=len(amounts))))
    mass = weights * np.array(amounts)
    totals = mass.sum(axis=1)
    mass, totals = mass[totals > 0], totals[totals > 0]
    return float(np.min(np.sum((mass / totals[:, None] - np.array(wanted)) ** 2, axis=1)))


@pytest.mark.parametrize("downsampling", [False, True])
def test_infeasible_targets_give_the_closest_mix_checked_by_brute_force(downsampling):
    rng = random.Random(11 + downsampling)
    lo = 0.0 if downsampling else 1.0
    checked = 0
    for _ in range(40):
        groups = rng.choice([2, 3])
        amounts = [rng.uniform(1, 100) for _ in range(groups)]
        if downsampling:
            amounts[rng.randrange(groups)] = 0.0  # with downsampling only an empty group makes it infeasible
        cap = rng.choice([1.5, 2.0, 3.0])
        raw = [rng.random() for _ in range(groups)]
        wanted = [r / sum(raw) for r in raw]
        class_amounts = {f"c{i}": a for i, a in enumerate(amounts)}
        targets = [MixTarget(f"g{i}", (f"c{i}",), wanted[i]) for i in range(groups - 1)]  # last group is rest
        solution = solve_mix(class_amounts, targets, max_copies=cap, allow_downsampling=downsampling)
        if solution.feasible:
            continue
        checked += 1
        present = {c: a for c, a in class_amounts.items() if a > 0}
        shares = achieved(solution.weights, present, targets)
        error = squared_error(shares, targets)
        best = _grid_best(amounts, wanted, lo, cap, 201 if groups == 2 else 81)
        assert error <= best + 1e-12  # never worse than any grid point (the grid is a subset of what the bounds allow)
        assert error >= best - 0.02 * max(best, 1e-3)  # and the grid, this fine, gets close to it
        assert all(lo - 1e-12 <= solution.weights[c] <= cap + 1e-12 for c in present)
        names = [t.name for t in targets] + [REST]
        for name, target in zip(names, wanted, strict=True):
            gap = target - shares[name]
            assert (name in solution.shortfalls) == (gap > 1e-9)
            if gap > 1e-9:
                assert solution.shortfalls[name] == pytest.approx(gap, abs=1e-9)
    assert checked >= 10


def test_zero_amount_group_gets_weight_one_and_is_short():
    amounts = {"a": 500.0, "r": 500.0}
    targets = [MixTarget("A", ("a",), 0.3), MixTarget("empty", ("e1", "e2"), 0.2)]
    solution = solve_mix(amounts, targets)
    assert solution.weights["e1"] == solution.weights["e2"] == 1.0
    assert not solution.feasible
    assert solution.shortfalls["empty"] == pytest.approx(0.2)
    shares = achieved(solution.weights, amounts, targets)
    # the 0.2 nobody can take is spread to minimise squared error: +0.1 on each of A and rest
    assert shares["A"] == pytest.approx(0.4, abs=1e-9)
    assert shares[REST] == pytest.approx(0.6, abs=1e-9)
    assert solution.shares_before == {"A": 0.5, "empty": 0.0, REST: 0.5}


def test_no_targets_changes_nothing():
    solution = solve_mix({"a": 10.0, "b": 30.0}, [], max_copies=4.0)
    assert solution.weights == {"a": 1.0, "b": 1.0}
    assert solution.feasible and solution.shares_after == {REST: 1.0}


def test_no_documents_at_all():
    solution = solve_mix({}, [MixTarget("A", ("a",), 0.5)])
    assert solution.weights == {"a": 1.0}
    assert not solution.feasible
    assert solution.shortfalls == {"A": 0.5, REST: 0.5}


def test_seed_default_knowledge_at_60_percent_on_a_realistic_distribution(taxonomy):
    """Knowledge (encyclopedia, education, science) is about 12% of crawl tokens; the seed asks 60%."""
    rng = random.Random(3)
    knowledge = set(expand_groups(taxonomy, {"knowledge": 0.6})[0].classes)
    amounts = {label: rng.uniform(0.5, 1.5) * (0.8 if label in knowledge else 1.0) * 1e6 for label in taxonomy.labels}
    targets = list(expand_groups(taxonomy, {"knowledge": 0.6}))
    before = achieved({label: 1.0 for label in amounts}, amounts, targets)["knowledge"]
    assert 0.10 < before < 0.15
    solution = solve_mix(amounts, targets, max_copies=4.0, allow_downsampling=True)
    assert solution.feasible
    assert achieved(solution.weights, amounts, targets)["knowledge"] == pytest.approx(0.6, abs=1e-9)
    assert [solution.weights[label] for label in sorted(knowledge)] == pytest.approx([4.0] * 30)  # at the cap, rest downsampled
    assert max(w for label, w in solution.weights.items() if label not in knowledge) < 1
    capped = solve_mix(amounts, targets, max_copies=4.0, allow_downsampling=False)
    assert not capped.feasible and set(capped.shortfalls) == {"knowledge"}
    assert achieved(capped.weights, amounts, targets)["knowledge"] == pytest.approx(4 * before / (4 * before + 1 - before), abs=1e-9)


def test_same_input_same_weights_whatever_the_order(taxonomy):
    rng = random.Random(5)
    amounts = generated_amounts(taxonomy, rng)
    targets = random_targets(taxonomy, rng, 3)
    shuffled = dict(sorted(amounts.items(), key=lambda item: unit_hash(1, item[0])))
    first = solve_mix(amounts, targets, max_copies=2.0, allow_downsampling=False)
    again = solve_mix(shuffled, targets, max_copies=2.0, allow_downsampling=False)
    assert json.dumps(first.weights, sort_keys=True) == json.dumps(again.weights, sort_keys=True)
    assert first.shares_after == again.shares_after


def test_sample_copies_over_generated_documents_reach_the_targets(taxonomy):
    """End to end: per-document copies from the solver's weights give token shares within 0.01."""
    rng = random.Random(17)
    targets = list(expand_groups(taxonomy, {"knowledge": 0.6, "shopping": 0.05}))
    labels = taxonomy.labels
    popularity = [rng.uniform(0.2, 3.0) for _ in labels]
    docs = []
    for i in range(20_000):
        label = rng.choices(labels, popularity)[0]
        docs.append((f"doc-{i}", label, int(rng.lognormvariate(6, 1)) + 1))
    amounts: dict[str, float] = {}
    for _, label, tokens in docs:
        amounts[label] = amounts.get(label, 0.0) + tokens
    solution = solve_mix(amounts, targets, max_copies=4.0)
    assert solution.feasible
    emitted: dict[str, float] = {}
    for doc_id, label, tokens in docs:
        emitted[label] = emitted.get(label, 0.0) + tokens * sample_copies(doc_id, solution.weight(label), seed=0)
    shares = achieved({label: 1.0 for label in emitted}, emitted, targets)
    assert shares["knowledge"] == pytest.approx(0.6, abs=0.01)
    assert shares["shopping"] == pytest.approx(0.05, abs=0.01)
    assert shares[REST] == pytest.approx(0.35, abs=0.01)


def test_a_class_not_given_to_the_solver_takes_the_rest_weight():
    solution = solve_mix({"k": 100.0, "r": 900.0}, [MixTarget("K", ("k",), 0.6)])
    assert solution.weight("unseen.label") == solution.weights["r"]


def test_solver_input_errors_are_config_errors():
    for cap in (-1, 0.5, float("inf"), float("nan"), True, "4"):
        with pytest.raises(ConfigError, match="max_copies"):
            solve_mix({"a": 1.0}, [], max_copies=cap)
    with pytest.raises(ConfigError, match="sum to"):
        solve_mix({"a": 1.0}, [MixTarget("A", ("a",), 0.7), MixTarget("B", ("b",), 0.4)])
    with pytest.raises(ConfigError, match="both contain"):
        solve_mix({"a": 1.0}, [MixTarget("A", ("a",), 0.2), MixTarget("B", ("a",), 0.2)])
    with pytest.raises(ConfigError, match="share"):
        solve_mix({"a": 1.0}, [MixTarget("A", ("a",), -0.1)])


def test_sample_copies_scale_a_class_by_its_weight_in_expectation():
    ids = [f"doc-{i}" for i in range(20000)]
    for weight in (0.3, 1.0, 1.75, 2.0):
        copies = [sample_copies(doc_id, weight, seed=0) for doc_id in ids]
        assert set(copies) <= {int(weight), int(weight) + 1}
        assert abs(np.mean(copies) - weight) < 0.02
    assert [sample_copies(d, 0.5, 0) for d in ids[:50]] == [sample_copies(d, 0.5, 0) for d in ids[:50]]
    assert [sample_copies(d, 0.5, 0) for d in ids[:50]] != [sample_copies(d, 0.5, 1) for d in ids[:50]]


def test_taxonomy_knowledge_group(taxonomy):
    assert taxonomy.groups["knowledge"] == ("encyclopedia", "education", "science")
    (knowledge,) = expand_groups(taxonomy, {"knowledge": 0.6})
    assert knowledge.share == 0.6
    assert len(knowledge.classes) == 30
    assert "science.popular_science" in knowledge.classes and "encyclopedia.reference" in knowledge.classes
    assert not any(c.startswith(("technology.", "shopping.")) for c in knowledge.classes)


def test_expand_groups_forms(taxonomy):
    targets = expand_groups(
        taxonomy, {"sport": {"classes": "sports", "share": 0.1}, "mine": {"classes": ["arts", "health.nutrition"], "share": 0.2}}
    )
    assert targets[0] == MixTarget("sport", tuple(label for label in taxonomy.labels if label.startswith("sports.")), 0.1)
    assert targets[1].classes[-1] == "health.nutrition" and len(targets[1].classes) == 11
    assert expand_groups(taxonomy, {"law_politics.law": 0.05})[0].classes == ("law_politics.law",)


@dataclass(frozen=True)
class TargetSection:
    """The shape of a config target section: classes (possibly empty) and share."""

    classes: list[str] = field(default_factory=list)
    share: float = 0.0


def test_expand_groups_takes_config_dataclasses_and_defaults_classes_to_the_name(taxonomy):
    (by_name,) = expand_groups(taxonomy, {"knowledge": TargetSection(share=0.6)})
    (listed,) = expand_groups(taxonomy, {"knowledge": TargetSection(classes=["encyclopedia", "education", "science"], share=0.6)})
    (as_mapping,) = expand_groups(taxonomy, {"knowledge": {"share": 0.6}})
    assert by_name == listed == as_mapping
    assert len(by_name.classes) == 30


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"astrology": 0.2}, r"select\.rebalance\.targets\.astrology\.classes: 'astrology' is not a group"),
        ({"mine": {"classes": ["science", "science.nope"], "share": 0.2}}, r"'science\.nope' is not"),
        ({"knowledge": 0.6, "science": 0.1}, r"select\.rebalance\.targets\.science: class 'science\.physics' is also in group 'knowledge'"),
        ({"knowledge": -0.1}, r"select\.rebalance\.targets\.knowledge\.share: must be"),
        ({"knowledge": 0.7, "sports": 0.4}, r"select\.rebalance\.targets: shares sum to 1\.1"),
        ({"rest": 0.3}, r"'rest' is the classes"),
        ({"x": {"classes": "arts", "share": 0.1, "weight": 2}}, r"unknown key"),
        ([0.6], r"expected a mapping"),
    ],
)
def test_expand_groups_errors_name_the_key(taxonomy, spec, message):
    with pytest.raises(ConfigError, match=message) as raised:
        expand_groups(taxonomy, spec)
    assert "\n" not in str(raised.value)


def test_top_fraction_cut_keeps_exactly_the_fraction_with_ties_by_hash():
    rng = random.Random(2)
    keys = [f"doc-{i}" for i in range(1001)]
    scores = [round(rng.random(), 1) for _ in keys]  # 11 distinct values: many ties at the threshold
    cut = top_fraction_cut(scores, keys, 0.5, seed=3)
    kept = [k for s, k in zip(scores, keys, strict=True) if cut.keeps(s, k)]
    assert len(kept) == cut.kept == 501  # floor(0.5 * 1001 + 0.5)
    assert all(s >= cut.threshold for s, k in zip(scores, keys, strict=True) if cut.keeps(s, k))
    assert all(cut.keeps(s, k) for s, k in zip(scores, keys, strict=True) if s > cut.threshold)
    tied = sorted((unit_hash(3, k), k) for s, k in zip(scores, keys, strict=True) if s == cut.threshold)
    tied_kept = [k for s, k in zip(scores, keys, strict=True) if s == cut.threshold and cut.keeps(s, k)]
    assert sorted(tied_kept) == sorted(k for _, k in tied[: len(tied_kept)])  # the lowest hashes win the ties
    order = sorted(range(len(keys)), key=lambda i: hashlib.sha1(keys[i].encode()).digest())
    again = top_fraction_cut([scores[i] for i in order], [keys[i] for i in order], 0.5, seed=3)
    assert again == cut


def test_top_fraction_cut_edges():
    keys = ["a", "b", "c", "d"]
    assert top_fraction_cut([0.1, 0.2, 0.3, 0.4], keys, 0.0, 0).kept == 0
    none = top_fraction_cut([0.1, 0.2, 0.3, 0.4], keys, 0.0, 0)
    assert not any(none.keeps(s, k) for s, k in zip([0.1, 0.2, 0.3, 0.4], keys, strict=True))
    everything = top_fraction_cut([0.1, 0.2, 0.3, 0.4], keys, 1.0, 0)
    assert all(everything.keeps(s, k) for s, k in zip([0.1, 0.2, 0.3, 0.4], keys, strict=True))
    with_nan = top_fraction_cut([float("nan"), None, 0.3, 0.4], keys, 1.0, 0)
    assert [with_nan.keeps(s, k) for s, k in zip([float("nan"), None, 0.3, 0.4], keys, strict=True)] == [False, False, True, True]
    half = top_fraction_cut([0.9, 0.1, 0.5, 0.7], keys, 0.5, 0)
    assert [half.keeps(s, k) for s, k in zip([0.9, 0.1, 0.5, 0.7], keys, strict=True)] == [True, False, False, True]
    with pytest.raises(ConfigError, match="top fraction"):
        top_fraction_cut([0.1], ["a"], 1.5, 0)


def test_top_half_quality_cut_keeps_more_label_1_than_label_0_on_unseen_dclm_documents(shared_data):
    """A plain quality model trained on majority_data minus agreement_data (by text hash) scores the
    281 agreement documents it never saw; the global top-50% cut keeps more of label 1 than of 0."""
    from thresher.classifiers.fasttext_backend import FastTextClassifier
    from thresher.classifiers.training import read_labelled

    dclm = shared_data / "quality" / "dclm"
    majority = read_labelled([dclm / "majority_data.jsonl"], task="plain")
    unseen = read_labelled([dclm / "agreement_data.jsonl"], task="plain")
    unseen_hashes = {hashlib.sha256(t.encode()).hexdigest() for t in unseen.texts}
    train = [i for i, t in enumerate(majority.texts) if hashlib.sha256(t.encode()).hexdigest() not in unseen_hashes]
    assert len(train) == len(majority) - len(unseen)  # agreement_data is a subset of majority_data
    train_data = majority.subset(train)
    model = FastTextClassifier.train(train_data.texts, train_data.labels, {"bucket": 20_000, "dim": 16}, seed=0)
    scores = model.label_scores(unseen.texts, "1").tolist()
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in unseen.texts]
    cut = top_fraction_cut(scores, keys, 0.5, seed=0)
    kept = [cut.keeps(s, k) for s, k in zip(scores, keys, strict=True)]
    share = {y: np.mean([k for k, label in zip(kept, unseen.labels, strict=True) if label == y]) for y in ("0", "1")}
    assert sum(kept) == 141
    assert share["1"] > share["0"] + 0.2, share
