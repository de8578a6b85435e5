"""Schedules over a run's progress: the learning rate after the warm-up and the training N.

Progress ``p ∈ [0, 1]`` is ``max(step / total_steps, clock / budget)``: the larger of the step
fraction and, under ``--time-budget``, the fraction of the budget spent (on the clock that
``--budget-clock`` names), so that a budgeted run also finishes its decay. In steps this is the
*effective step* ``s = p · total_steps``. Both schedules are pure functions of ``(step, clock)``,
which the checkpoint holds, so a resumed run gets the values of an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Literal

from probsym.errors import ConfigError

LrSchedule = Literal["constant", "linear", "cosine", "onecycle"]
#: The choices of ``--lr-schedule``.
LR_SCHEDULES = ("constant", "linear", "cosine", "onecycle")
#: One-cycle constants (torch's ``OneCycleLR`` defaults): the rise starts at ``lr / 25`` over the
#: first 30 % of the run (or the warm-up), and the decay ends at ``lr / 25 / 1e4``.
ONECYCLE_START, ONECYCLE_END, ONECYCLE_RISE = 1 / 25, 1 / 25 / 1e4, 0.3


def effective_step(step: int, total_steps: int, clock: float, budget_seconds: float) -> float:
    """``p · total_steps``, ``p = max(step / total_steps, clock / budget_seconds)`` capped at 1.

    ``budget_seconds = 0`` means no budget (progress counts steps only). The step itself is
    returned unchanged (not ``step / total * total``), so that step-only schedules are exact.
    """
    effective = float(step)
    if budget_seconds > 0:
        effective = max(effective, total_steps * clock / budget_seconds)
    return min(effective, float(total_steps))


def run_progress(step: int, total_steps: int, clock: float, budget_seconds: float) -> float:
    """Progress ``p ∈ [0, 1]`` of a run (see the module docstring)."""
    return effective_step(step, total_steps, clock, budget_seconds) / max(total_steps, 1)


def _anneal(start: float, end: float, fraction: float) -> float:
    """Cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))


def lr_factor(
    schedule: str, step: int, effective: float, warmup_steps: int, total_steps: int
) -> float:
    """Multiplier of every group's base lr at optimizer step ``step`` (0-based).

    ``warm = min(1, (step + 1) / warmup_steps)`` (1 without warm-up) times the decay at the
    effective step ``s``, with ``W = warmup_steps`` and ``T = total_steps``:

    - ``constant``: 1 (the warm-up only);
    - ``linear`` (the authors'): ``1 − (s − W) / (T + 1 − W)`` once ``s > W``;
    - ``cosine``: ``½ (1 + cos(π q))``, ``q = (s − W) / (T − W)`` clipped to [0, 1]: 0 at the end;
    - ``onecycle`` (replaces the linear warm-up): a cosine rise from ``lr / 25`` to ``lr`` until
      ``s = W`` (``0.3 T`` when ``W = 0``), then a cosine decay to ``lr / 2.5e5`` at ``s = T``.
    """
    if schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}"
        )
    if schedule == "onecycle":
        rise = warmup_steps if warmup_steps > 0 else ONECYCLE_RISE * total_steps
        if effective < rise:
            return _anneal(ONECYCLE_START, 1.0, effective / rise)
        decay = total_steps - rise if total_steps > rise else 1.0
        return _anneal(1.0, ONECYCLE_END, (effective - rise) / decay)
    warm = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    if schedule == "constant" or effective <= warmup_steps:
        return warm
    if schedule == "linear":
        return warm * max(0.0, 1.0 - (effective - warmup_steps) / (total_steps + 1 - warmup_steps))
    return warm * _anneal(1.0, 0.0, (effective - warmup_steps) / (total_steps - warmup_steps))


def parse_samples_schedule(text: str) -> tuple[tuple[float, int], ...]:
    """``"0:1,0.5:2,0.9:4"`` -> ``((0.0, 1), (0.5, 2), (0.9, 4))``; ``""`` -> ``()``.

    Raises:
        ConfigError: an item is not ``progress:N``, a progress is outside [0, 1] or not strictly
            increasing, or an ``N`` is below 1.
    """
    if not text.strip():
        return ()
    steps: list[tuple[float, int]] = []
    for item in text.split(","):
        where, sep, count = item.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            point, samples = float(where), int(count)
        except ValueError:
            raise ConfigError(
                f"--samples-schedule expects comma-separated PROGRESS:N items such as "
                f"'0:1,0.5:2,0.9:4', got {item.strip()!r} in {text!r}"
            ) from None
        if not 0.0 <= point <= 1.0:
            raise ConfigError(
                f"--samples-schedule progress must be in [0, 1], got {point} in {text!r}"
            )
        if samples < 1:
            raise ConfigError(f"--samples-schedule N must be >= 1, got {samples} in {text!r}")
        if steps and point <= steps[-1][0]:
            raise ConfigError(
                f"--samples-schedule progress points must increase, got {point} after "
                f"{steps[-1][0]} in {text!r}"
            )
        steps.append((point, samples))
    return tuple(steps)


def samples_at(steps: tuple[tuple[float, int], ...], default: int, progress: float) -> int:
    """The N of the last breakpoint at or before ``progress`` (``default`` before the first)."""
    current = default
    for point, samples in steps:
        if progress < point:
            break
        current = samples
    return current
