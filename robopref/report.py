"""Tables and plots of finished runs (reads ``metrics.json``; writes PNG).

Runs are grouped by task and config (the run's resolved config without its seed); each group
lists every seed's test-split success with its 95% Wilson interval and ends with the mean over
seeds and its 95% Student-t interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from robopref.errors import RobopError
from robopref.loop.evaluation import mean_interval

# Keys that do not make two runs different experiments.
_NOT_CONFIG = ("seed", "progress", "tensorboard", "device", "hydra")


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return spec.format(value)


def _interval(low, high) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"[{low:.2f}, {high:.2f}]"


COLUMNS = [
    ("seed", "seed", "{}"),
    ("bc_test_success_rate", "BC test", "{:.2f}"),
    ("test_success_rate", "refined test", "{:.2f}"),
    ("test_ci95", "95% CI", None),
    ("test_improvement", "gain", "{:+.2f}"),
    ("bc_success_rate", "BC train", "{:.2f}"),
    ("refined_success_rate", "refined train", "{:.2f}"),
    ("reward_accuracy", "reward acc", "{:.3f}"),
    ("labels", "labels", "{}"),
    ("wall_time_s", "wall (s)", "{:.0f}"),
]


def _row(summary: dict) -> list[str]:
    cells = []
    for key, _, spec in COLUMNS:
        if spec is None:
            cells.append(_interval(*(summary.get(key) or (None, None))))
        else:
            cells.append(_fmt(summary.get(key), spec))
    return cells


def _mean_row(group: list[dict]) -> list[str]:
    cells = ["mean"]
    for key, _, spec in COLUMNS[1:]:
        if spec is None:
            mean, low, high = mean_interval([s.get("test_success_rate") for s in group])
            cells.append(_interval(low, high) + " (seeds)" if math.isfinite(low) else "-")
            continue
        values = [s.get(key) for s in group if isinstance(s.get(key), int | float)]
        mean = mean_interval(values)[0] if values else None
        cells.append(_fmt(round(mean) if spec == "{}" and mean is not None else mean, spec))
    return cells


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines


def format_table(summaries: list[dict]) -> str:
    """Plain-text tables, one per (task, config) group: a row per seed, then the mean over
    seeds with its 95% t-interval when a group has several seeds."""
    groups: dict[tuple, list[dict]] = {}
    for s in summaries:
        groups.setdefault((s.get("task", "?"), s.get("config_name", "")), []).append(s)
    header = [title for _, title, _ in COLUMNS]
    out = []
    for (task, config), group in groups.items():
        rows = [_row(s) for s in sorted(group, key=lambda s: s.get("seed", 0))]
        if len(group) > 1:
            rows.append(_mean_row(group))
        out.append(f"{task}  config: {config or 'default'}")
        out += _table(header, rows)
        out.append("")
    return "\n".join(out).rstrip()


def config_name(run_dir: Path) -> str:
    """How a run's config differs from the default: its overrides without the seed, and a
    short hash of the resolved config without the seed (two runs share it when they ran
    the same experiment)."""
    overrides, digest = [], ""
    if (run_dir / "overrides.json").is_file():
        overrides = [
            o
            for o in json.loads((run_dir / "overrides.json").read_text())
            if not o.split("=")[0].lstrip("+~").startswith(_NOT_CONFIG)
        ]
    if (run_dir / "run.json").is_file():
        config = json.loads((run_dir / "run.json").read_text()).get("config", {})
        kept = {k: v for k, v in config.items() if k not in _NOT_CONFIG}
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]
    name = " ".join(overrides) or "default"
    return f"{name} #{digest}" if digest else name


def load_summaries(paths: list[str | Path]) -> list[dict]:
    """Every ``metrics.json`` at or below the given folders, with its run's config name and
    ``run_dir`` (the folder it was read from), sorted by task, config and seed."""
    found, unfinished = [], []
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(path.rglob("metrics.json"))
        for file in files:
            try:
                summary = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise RobopError(f"{file} is unreadable ({exc}): rerun that experiment") from exc
            summary.setdefault("config_name", config_name(file.parent))
            summary["run_dir"] = str(file.parent)
            if summary.get("status", "finished") != "finished":
                unfinished.append(f"{file.parent} ({summary['status']})")
                continue
            found.append(summary)
    if unfinished:
        print(f"left out {len(unfinished)} unfinished run(s): {', '.join(unfinished)}")
    if not found:
        raise RobopError(
            f"no finished run's metrics.json under {', '.join(map(str, paths))}: run "
            "'robopref demo' first, or resume the unfinished ones"
        )
    return sorted(
        found, key=lambda s: (s.get("task", ""), s.get("config_name", ""), s.get("seed", 0))
    )


def plot_run(summary: dict, out_dir: str | Path) -> list[Path]:
    """Success rate vs round and reward accuracy vs labels, as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    rounds = summary["rounds"]
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["round"] for r in rounds], [r["success_rate"] for r in rounds], "o-",
            label="train split (per round)")
    if summary.get("test_success_rate") is not None:
        last = rounds[-1]["round"]
        rate, (low, high) = summary["test_success_rate"], summary["test_ci95"]
        ax.errorbar([last], [rate], yerr=[[rate - low], [high - rate]], fmt="s", color="C3",
                    capsize=4, label="final policy, test split (95% CI)")
        if summary.get("bc_test_success_rate") is not None:
            bc, (low, high) = summary["bc_test_success_rate"], summary["bc_test_ci95"]
            ax.errorbar([0], [bc], yerr=[[bc - low], [high - bc]], fmt="s", color="C2",
                        capsize=4, label="BC, test split (95% CI)")
    ax.set(
        xlabel="round (0 = behaviour cloning)",
        ylabel="success rate",
        ylim=(0, 1.02),
        title=f"{summary['task']} seed {summary['seed']}",
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out_dir / "success_vs_round.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    labelled = [
        r for r in rounds if r["round"] > 0 and r["reward_accuracy"] is not None
        and math.isfinite(r["reward_accuracy"])
    ]
    ax.plot([r["labels"] for r in labelled], [r["reward_accuracy"] for r in labelled], "o-")
    ax.set(
        xlabel="labels",
        ylabel="held-out preference accuracy",
        ylim=(0.4, 1.0),
        title="reward model vs true return",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out_dir / "reward_accuracy_vs_labels.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written
