"""Success rates with intervals: per run (Wilson, over episodes) and over seeds (t); choosing
between policies by learned return."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from robopref.data import Episode
from robopref.rewards import RewardModel


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate; ``(nan, nan)`` for ``n = 0``."""
    if n == 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # Rounding can leave the bounds a hair on the wrong side of p at k = 0 or k = n.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def rate_summary(flags: list[bool]) -> dict:
    """``{"rate", "successes", "episodes", "ci95": [low, high]}`` of per-episode successes."""
    n, k = len(flags), int(sum(bool(f) for f in flags))
    low, high = wilson_interval(k, n)
    return {"rate": k / n if n else math.nan, "successes": k, "episodes": n, "ci95": [low, high]}


def quality_summary(episodes: list[Episode]) -> dict:
    """The task's end-of-episode quality metrics (``meta["metrics"]``, e.g. Peel-v0's removed
    fraction, gouged fraction, peak force in N) over ``episodes``: per numeric metric
    ``{"mean", "ci95": [low, high] (Student t), "episodes"}``, and ``success`` as a rate with
    its Wilson interval (under ``"mean"`` too). Empty when the episodes carry no metrics."""
    rows = [e.meta.get("metrics") for e in episodes]
    if not rows or not all(isinstance(r, dict) for r in rows):
        return {}
    out = {}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        if key == "success":
            rate = rate_summary([bool(v) for v in values])
            out[key] = {"mean": rate["rate"], "ci95": rate["ci95"], "episodes": rate["episodes"]}
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            mean, low, high = mean_interval([float(v) for v in values])
            out[key] = {"mean": mean, "ci95": [low, high], "episodes": len(values)}
    return out


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds and its Student-t interval ``(mean, low, high)`` (nan bounds for n < 2)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def json_safe(value):
    """``value`` with NaN/inf turned into ``None`` (strict JSON, which ``jq`` and browsers read)
    and NumPy scalars into Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def select_by_learned_return(
    candidates: list[list[Episode]], reward_model: RewardModel
) -> tuple[int, list[float]]:
    """Index of the candidate whose episodes have the highest mean learned return, and the
    mean learned return of every candidate (ties go to the earliest)."""
    scores = [
        float(np.mean([reward_model.episode_rewards(e).sum() for e in episodes]))
        for episodes in candidates
    ]
    return int(np.argmax(scores)), scores
