"""How a model's held-out figures read, on the console and in the report: each with its interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FIGURES = ("accuracy", "macro_f1", "auc")  # the held-out figures metrics.json may hold, in the order they are shown


def figure_text(figures: dict[str, Any], names: Sequence[str] = FIGURES) -> str:
    """'accuracy 0.612 [0.435, 0.783], macro_f1 ...' with the interval level, for consoles and reports."""
    interval = figures.get("interval") or {}
    parts = []
    for name in names:
        value = figures.get(name)
        if not isinstance(value, float) or value != value:
            continue
        bounds = interval.get(name)
        parts.append(f"{name} {value:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else " (no interval)"))
    if not parts:
        return "not measured"
    level = f" ({interval['level']:.0%} intervals)" if interval.get("level") else ""
    return ", ".join(parts) + f" on {figures.get('examples', 0)} examples{level}"
