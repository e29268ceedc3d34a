"""The run summary written to ``metrics.json`` after every round and at the end."""

from __future__ import annotations

from dataclasses import asdict

METRICS_FORMAT_VERSION = 2


def run_summary(
    task: str,
    config,
    history: list,
    final: dict | None,
    queries: int,
    labels: int,
    wall_time_s: float,
    status: str,
    reason: str | None = None,
) -> dict:
    """Test-split success of the BC and the final policy (rate, 95% Wilson interval,
    episodes), training-split success per round, reward accuracy, label counts.

    ``history``: the ``RoundResult`` of each evaluated round (0 = BC); ``final``: the final
    step's record (``None`` until the run finished)."""
    bc = history[0] if history else None
    last = history[-1] if history else None
    test = (final or {}).get("test") or {}
    final_test, bc_test = test.get("final") or {}, test.get("bc") or {}
    summary = {
        "format_version": METRICS_FORMAT_VERSION,
        "status": status,
        "reason": reason,
        "task": task,
        "seed": config.seed,
        "test_success_rate": final_test.get("rate"),
        "test_ci95": final_test.get("ci95"),
        "bc_test_success_rate": bc_test.get("rate"),
        "bc_test_ci95": bc_test.get("ci95"),
        "test_improvement": (
            final_test["rate"] - bc_test["rate"] if final_test and bc_test else None
        ),
        "test_episodes": final_test.get("episodes"),
        "bc_success_rate": bc.success_rate if bc else None,
        "refined_success_rate": (final or {}).get("final_train_success_rate"),
        "final_policy": (final or {}).get("final_policy"),
        "selected_round": (final or {}).get("selected_round"),
        "validation_learned_returns": (final or {}).get("validation_learned_returns", []),
        "last_round_success_rate": last.success_rate if last else None,
        "reward_accuracy": last.reward_accuracy if last else None,
        "queries": queries,
        "labels": labels,
        "wall_time_s": wall_time_s,
        "rounds": [asdict(r) for r in history],
        "loop_config": asdict(config),
    }
    summary["env_steps"] = env_steps(history, final)
    if summary["refined_success_rate"] is not None and bc is not None:
        summary["improvement"] = summary["refined_success_rate"] - bc.success_rate
    return summary


def env_steps(history: list, final: dict | None) -> dict:
    """Environment steps of the run so far, by use: ``learning`` (demos, exploration
    rollouts, a refiner's own episodes), and ``evaluation`` (every episode only measured:
    per-round, validation and test); each part's total as well."""
    parts = {"demos": 0, "exploration": 0, "refiner": 0, "evaluation": 0}
    for record in [r.extra.get("env_steps", {}) for r in history] + [
        (final or {}).get("env_steps", {})
    ]:
        for key, value in record.items():
            parts[key] = parts.get(key, 0) + int(value)
    learning = parts["demos"] + parts["exploration"] + parts["refiner"]
    return {**parts, "learning": learning, "total": learning + parts["evaluation"]}
