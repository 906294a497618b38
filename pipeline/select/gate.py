"""Whether a model step of select acts: from the held-out figures a tagger's model was measured with.

A step that reads a tagger's columns (its keep rules, line removal on its line scores, rebalancing on
its labels) acts only when the model's held-out figure (schemas.tags: `heldout`, the model's
metrics.json) clears the configured floor (config `select.model_gate`): by default the lower bound
of the figure's bootstrap interval (classifiers.metrics) must reach the floor, on at least
`min_examples` held-out examples. Otherwise the step does not filter: documents are kept, the tag
columns still written, and the decision, with the figure, its interval and the floor, is said on the
console and recorded in select's stats.json (`details.model_gate`). Decided on the driver, without Spark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from thresher.schemas.tags import DeclaredTagger


@dataclass(frozen=True)
class GateDecision:
    tagger: str
    acts: bool
    figure: str  # the figure compared
    value: float | None  # the figure, None when not measured
    interval: tuple[float, float] | None
    level: float | None  # the interval's level (0.95)
    examples: int
    floor: float
    bound: str  # lower | point
    reason: str  # one line: why it acts or not

    def record(self) -> dict[str, Any]:
        return {"acts": self.acts, "figure": self.figure, "value": self.value,
                "interval": list(self.interval) if self.interval else None, "level": self.level,
                "examples": self.examples, "floor": self.floor, "bound": self.bound, "reason": self.reason}


def decide(tagger: DeclaredTagger, gate) -> GateDecision:
    """Whether the steps on `tagger` act under `gate` (a pipeline.config.ModelGateConfig)."""
    spec = gate.floors.get(tagger.name, gate.default)
    heldout = tagger.heldout or {}
    figure = spec.figure
    if figure == "auto":
        figure = "auc" if len(tagger.labels) == 2 or "auc" in heldout else "macro_f1"
    value = heldout.get(figure)
    value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value) else None
    interval_record = heldout.get("interval") or {}
    bounds = interval_record.get(figure)
    interval = (float(bounds[0]), float(bounds[1])) if isinstance(bounds, list) and len(bounds) == 2 else None
    level = interval_record.get("level") if interval else None
    examples = int(heldout.get("examples") or 0)
    key = f"select.model_gate.floors.{tagger.name}" if tagger.name in gate.floors else "select.model_gate.default"
    measured = (f"held-out {figure} {value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}] ({level:.0%} interval)" if interval else "")
                + f" on {examples} examples") if value is not None else f"held-out {figure} not measured"
    floor = f"floor {spec.floor:g} ({key}.floor)"

    def decision(acts: bool, why: str) -> GateDecision:
        return GateDecision(tagger.name, acts, figure, value, interval, level, examples, spec.floor, gate.bound,
                            f"the {tagger.name} model's {measured}: {why}")

    if not gate.enabled:
        return decision(True, "acts (select.model_gate.enabled is false)")
    if value is None:
        return decision(False, f"does not act (no such figure in its metrics.json; {floor})")
    if examples < gate.min_examples:
        return decision(False, f"does not act (fewer than select.model_gate.min_examples={gate.min_examples} held-out examples)")
    if gate.bound == "point":
        return decision(value >= spec.floor, f"{'acts' if value >= spec.floor else 'does not act'}: the figure is "
                                             f"{'at or above' if value >= spec.floor else 'under'} the {floor}")
    if interval is None:
        return decision(False, f"does not act (no interval recorded: a model trained by an older thresher; retrain it, "
                               f"or set select.model_gate.bound: point; {floor})")
    acts = interval[0] >= spec.floor
    return decision(acts, f"{'acts' if acts else 'does not act'}: the interval's lower bound is "
                          f"{'at or above' if acts else 'under'} the {floor}")
