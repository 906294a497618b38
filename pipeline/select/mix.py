"""Rebalancing to a target mix, copies of a document from its class weight, and the global
top-fraction cut: pure functions the select step runs on counts and scores, without Spark or a model.

Mix
---
Groups are the targets (each a set of topic classes with a share) plus "rest" (every other class,
taking 1 - the sum of the target shares). A group's amount is the tokens (or documents) of its
classes. Each group gets one weight, so proportions inside a group are kept; a weight lies in
[lo, max_copies], lo = 0 when downsampling is allowed and 1 when not. With weights w and amounts a
the achieved share of group g is w_g a_g / sum_h w_h a_h.

The achieved share vectors form a convex polytope P (all ratios (s_g / a_g) / (s_h / a_h) within
max_copies / lo; an empty group has share 0). `solve_mix` returns the point of P closest to the
targets in Euclidean distance, i.e. the mix with the least sum of squared share errors (unique,
since P is convex); when the targets lie in P that is the targets themselves ("feasible").
The shares fix the weights up to a common factor c (w_g = c s_g / a_g); c is chosen for the least
change to the data: the smallest weight of a kept group is 1 (nothing dropped, nothing upsampled
beyond what the mix needs) when every weight then stays <= max_copies, otherwise the largest weight
sits at the cap and the rest are downsampled. A group with no amount gets weight 1 (there is nothing
to copy) and a share of 0, so a positive target on it is short.

Copies
------
`sample_copies(doc_id, w)` = floor(w) + (1 if unit_hash(seed, doc_id) < frac(w) else 0): in
expectation a class is scaled by w, each document's outcome is fixed by its id, and no document is
split. Copies are a column (export writes a document that many times); 0 copies is a reject.

Cut
---
`top_fraction_cut` keeps the top `fraction` of documents by score over the whole input, with ties
broken by a hash of each document's key, so the kept set does not depend on partitioning.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from thresher.pipeline.config import ConfigError
from thresher.pipeline.seeded_hash import unit_hash

REST = "rest"
SHARE_TOLERANCE = 1e-9  # a target counts as reached (feasible, no shortfall) within this share


@dataclass(frozen=True)
class MixTarget:
    name: str
    classes: tuple[str, ...]
    share: float


@dataclass(frozen=True)
class MixSolution:
    weights: dict[str, float]  # per class: every class of class_amounts and of the targets
    shares_before: dict[str, float]  # per group name, "rest" included
    shares_after: dict[str, float]
    targets: dict[str, float]
    shortfalls: dict[str, float]  # group -> target minus achieved share, only where short by > 1e-9
    feasible: bool
    group_weights: dict[str, float] = field(default_factory=dict)

    def weight(self, label: str) -> float:
        """The weight of a document of class `label`; a class the solver was not given belongs to rest."""
        if label in self.weights:
            return self.weights[label]
        return self.group_weights.get(REST, 1.0)


def solve_mix(
    class_amounts: Mapping[str, float],
    targets: Sequence[MixTarget],
    max_copies: float = 4.0,
    allow_downsampling: bool = True,
) -> MixSolution:
    """Per-class weights that reach `targets` (or the closest mix the bounds allow); see the module doc."""
    _check_inputs(class_amounts, targets, max_copies)
    names = [t.name for t in targets] + [REST]
    target_classes = {c for t in targets for c in t.classes}
    members = [list(t.classes) for t in targets] + [sorted(c for c in class_amounts if c not in target_classes)]
    amounts = np.array([sum(float(class_amounts.get(c, 0.0)) for c in group) for group in members])
    wanted = np.array([t.share for t in targets] + [max(0.0, 1.0 - sum(t.share for t in targets))])
    lo = 0.0 if allow_downsampling else 1.0

    present = amounts > 0
    shares = np.zeros(len(names))
    if present.any():
        shares[present] = _closest_shares(wanted[present], amounts[present], lo, max_copies)
    weights = np.ones(len(names))
    weights[present] = _least_change_weights(shares[present], amounts[present], lo, max_copies)

    total = amounts.sum()
    before = amounts / total if total > 0 else np.zeros(len(names))
    after = weights * amounts
    after = after / after.sum() if after.sum() > 0 else np.zeros(len(names))
    short = {n: float(w - a) for n, w, a in zip(names, wanted, after, strict=True) if w - a > SHARE_TOLERANCE}
    group_weights = dict(zip(names, map(float, weights), strict=True))
    class_weights = {c: group_weights[n] for n, group in zip(names, members, strict=True) for c in group}
    return MixSolution(
        weights=class_weights,
        shares_before=dict(zip(names, map(float, before), strict=True)),
        shares_after=dict(zip(names, map(float, after), strict=True)),
        targets=dict(zip(names, map(float, wanted), strict=True)),
        shortfalls=short,
        feasible=not short and bool(np.all(np.abs(after - wanted) <= SHARE_TOLERANCE)),
        group_weights=group_weights,
    )


def _check_inputs(class_amounts: Mapping[str, float], targets: Sequence[MixTarget], max_copies: float) -> None:
    if isinstance(max_copies, bool) or not isinstance(max_copies, numbers.Real) or not 1 <= max_copies < math.inf:
        raise ConfigError(f"max_copies must be a finite number >= 1 (the most copies of one document), got {max_copies!r}")
    seen: dict[str, str] = {}
    for target in targets:
        if target.name == REST:
            raise ConfigError(f"mix target {REST!r} is reserved for the classes no target names")
        if isinstance(target.share, bool) or not (isinstance(target.share, numbers.Real) and 0 <= target.share <= 1):
            raise ConfigError(f"mix target {target.name!r}: share must be in [0, 1], got {target.share!r}")
        for label in target.classes:
            if label in seen:
                raise ConfigError(f"mix targets {seen[label]!r} and {target.name!r} both contain class {label!r}")
            seen[label] = target.name
    total = sum(t.share for t in targets)
    if total > 1 + SHARE_TOLERANCE:
        raise ConfigError(f"mix target shares sum to {total:g}, more than 1")
    for label, amount in class_amounts.items():
        if isinstance(amount, bool) or not (isinstance(amount, numbers.Real) and math.isfinite(amount) and amount >= 0):
            raise ValueError(f"class {label!r}: amount must be a finite number >= 0, got {amount!r}")


def _closest_shares(wanted: np.ndarray, amounts: np.ndarray, lo: float, cap: float) -> np.ndarray:
    """The point of P (groups with amount > 0) nearest to `wanted` in Euclidean distance.

    P = {s : sum s = 1, s_g in [m a_g, K m a_g] for some m > 0}, K = cap / lo. For a fixed m the
    nearest point is a box-clipped shift of `wanted` (`_project_box`); the distance is convex in m
    (P is the projection of a convex set in (s, m)), so a golden-section search over m finds it.
    """
    if _reachable(wanted, amounts, lo, cap):
        return wanted / wanted.sum()
    if lo == 0:  # P is the whole simplex: plain Euclidean projection onto it
        return _project_box(wanted, np.zeros_like(wanted), np.ones_like(wanted))
    ratio = cap / lo
    low_m, high_m = 1.0 / (ratio * amounts.sum()), 1.0 / amounts.sum()

    def at(m: float) -> np.ndarray:
        return _project_box(wanted, m * amounts, np.minimum(ratio * m * amounts, 1.0))

    def distance(m: float) -> float:
        return float(np.sum((at(m) - wanted) ** 2))

    golden = (math.sqrt(5) - 1) / 2
    a, b = low_m, high_m
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = distance(c), distance(d)
    for _ in range(200):
        if b - a <= 1e-15 * high_m:
            break
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = distance(c)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = distance(d)
    return at((a + b) / 2)


def _reachable(shares: np.ndarray, amounts: np.ndarray, lo: float, cap: float) -> bool:
    """Whether shares (summing to 1) are a mix the weight bounds can reach exactly."""
    if abs(shares.sum() - 1) > SHARE_TOLERANCE:
        return False
    ratios = shares / amounts
    if lo == 0:
        return True
    return bool(ratios.min() > 0 and ratios.max() <= (cap / lo) * ratios.min() * (1 + 1e-12))


def _project_box(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """argmin ||s - point|| subject to sum s = 1 and low <= s <= high: s = clip(point + nu), nu by bisection."""
    lo_nu, hi_nu = float(np.min(low - point)), float(np.max(high - point))
    for _ in range(200):
        mid = (lo_nu + hi_nu) / 2
        if mid in (lo_nu, hi_nu):
            break
        if np.clip(point + mid, low, high).sum() < 1:
            lo_nu = mid
        else:
            hi_nu = mid
    return np.clip(point + (lo_nu + hi_nu) / 2, low, high)


def _least_change_weights(shares: np.ndarray, amounts: np.ndarray, lo: float, cap: float) -> np.ndarray:
    """w = c s / a with the smallest kept weight at 1 if all stay <= cap, else the largest at the cap.

    The clip only absorbs rounding (shares from `_closest_shares` respect the bounds)."""
    ratios = shares / amounts
    kept = ratios > 0
    if not kept.any():
        return np.ones_like(ratios)
    scale = 1.0 / ratios[kept].min()
    if ratios.max() * scale > cap * (1 + 1e-12):
        scale = cap / ratios.max()
    return np.clip(ratios * scale, lo, cap)


def sample_copies(doc_id: str, weight: float, seed: int) -> int:
    """floor(weight) copies, plus one more when the document's hash falls under frac(weight)."""
    whole = math.floor(weight)
    return whole + (1 if unit_hash(seed, doc_id) < weight - whole else 0)


def expand_groups(taxonomy, spec: Mapping, key: str = "select.rebalance.targets") -> tuple[MixTarget, ...]:
    """MixTargets from a config mapping of group name -> share, {classes, share}, or an object with
    `classes` and `share` attributes (pipeline.config's target dataclass).

    A class reference is a group of the taxonomy (configs/topics.yaml `groups:`, e.g. "knowledge"),
    a domain id ("science") or a `<domain>.<subtopic>` label; `classes` is one reference or a list,
    and defaults to the group's own name (so `knowledge: 0.6` takes topics.yaml's knowledge group).
    Unknown references, overlapping groups, shares outside [0, 1] or summing past 1 are a
    ConfigError naming the key.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: expected a mapping of group name -> share or {{classes, share}}, got {type(spec).__name__}")
    domains: dict[str, list[str]] = {}
    for label in taxonomy.labels:
        domains.setdefault(label.split(".", 1)[0], []).append(label)
    named_groups = getattr(taxonomy, "groups", {}) or {}
    targets: list[MixTarget] = []
    owner: dict[str, str] = {}
    for name, value in spec.items():
        where = f"{key}.{name}"
        if name == REST:
            raise ConfigError(f"{where}: {REST!r} is the classes no group names and takes what is left; remove it")
        if isinstance(value, Mapping):
            unknown = set(value) - {"classes", "share"}
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (expected classes, share)")
            refs, share = value.get("classes"), value.get("share")
        elif hasattr(value, "classes") and hasattr(value, "share"):
            refs, share = value.classes, value.share
        else:
            refs, share = None, value
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 <= share <= 1:
            raise ConfigError(f"{where}.share: must be a number in [0, 1], got {share!r}")
        refs = [name] if refs is None or (isinstance(refs, (list, tuple)) and not refs) else refs
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) for r in refs):
            raise ConfigError(f"{where}.classes: expected a group, a domain id, a <domain>.<subtopic> label or a list of them")
        classes: list[str] = []
        for ref in refs:
            for label in _resolve(ref, taxonomy, domains, named_groups, f"{where}.classes"):
                if label in owner and owner[label] != name:
                    raise ConfigError(f"{where}: class {label!r} is also in group {owner[label]!r}; groups must not overlap")
                if label not in classes:
                    owner[label] = name
                    classes.append(label)
        targets.append(MixTarget(str(name), tuple(classes), float(share)))
    total = sum(t.share for t in targets)
    if total > 1 + SHARE_TOLERANCE:
        raise ConfigError(f"{key}: shares sum to {total:g}, more than 1 (rest takes 1 - the sum)")
    return tuple(targets)


def _resolve(ref: str, taxonomy, domains: dict[str, list[str]], named_groups: Mapping, where: str) -> list[str]:
    if ref in named_groups:
        return [label for member in named_groups[ref] for label in _resolve(member, taxonomy, domains, {}, where)]
    if ref in domains:
        return domains[ref]
    if ref in set(taxonomy.labels):
        return [ref]
    raise ConfigError(f"{where}: {ref!r} is not a group, domain or <domain>.<subtopic> label of the topic taxonomy")


@dataclass(frozen=True)
class TopFractionCut:
    """Keep a document when its score is above `threshold`, or equal to it with a tie key
    (unit_hash(seed, key), key) <= (`tie_hash`, `tie_key`); `kept` documents pass (exactly, for
    distinct keys). A missing or NaN score ranks below every number and is never kept.
    """

    threshold: float
    tie_hash: float
    tie_key: str
    seed: int
    kept: int

    def keeps(self, score: float | None, key: str) -> bool:
        if score is None or math.isnan(score):
            return False
        if score != self.threshold:
            return score > self.threshold
        return (unit_hash(self.seed, key), key) <= (self.tie_hash, self.tie_key)


def top_fraction_cut(scores: Sequence[float | None], keys: Sequence[str], fraction: float, seed: int) -> TopFractionCut:
    """The global cut keeping the top `fraction` of documents by score: floor(fraction * n + 0.5) of them.

    Documents rank by score (high first), then by (unit_hash(seed, key), key) (low first), so the cut
    is the same however the documents are partitioned or ordered; a hash, not the key itself, breaks
    ties so that no id range (one source, one crawl) wins them systematically.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1:
        raise ConfigError(f"top fraction must be in [0, 1], got {fraction!r}")
    if len(scores) != len(keys):
        raise ValueError(f"{len(scores)} scores for {len(keys)} keys")
    count = math.floor(fraction * len(scores) + 0.5)
    if count == 0:
        return TopFractionCut(math.inf, 0.0, "", seed, 0)
    values = np.array([-math.inf if s is None or math.isnan(s) else float(s) for s in scores])
    order = np.argsort(-values, kind="stable")
    threshold = float(values[order[count - 1]])
    if threshold == -math.inf:  # fewer scored documents than the fraction asks for: keep every scored one
        return TopFractionCut(-math.inf, 1.0, "", seed, int(np.sum(values > -math.inf)))
    above = int(np.sum(values > threshold))
    tied = sorted((unit_hash(seed, keys[i]), keys[i]) for i in np.flatnonzero(values == threshold))
    tie_hash, tie_key = tied[count - above - 1]
    return TopFractionCut(threshold, tie_hash, tie_key, seed, count)
