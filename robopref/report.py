"""Tables and plots of finished runs (reads ``metrics.json``; writes PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from robopref.errors import RobopError

COLUMNS = [
    ("seed", "seed", "{}"),
    ("bc_success_rate", "BC success", "{:.2f}"),
    ("refined_success_rate", "refined success", "{:.2f}"),
    ("improvement", "gain", "{:+.2f}"),
    ("reward_accuracy", "reward acc", "{:.3f}"),
    ("labels", "labels", "{}"),
    ("queries", "queries", "{}"),
    ("wall_time_s", "wall time (s)", "{:.0f}"),
]


def format_table(summaries: list[dict]) -> str:
    """A plain-text table, one row per run and a mean row when there are several."""
    header = [title for _, title, _ in COLUMNS]
    rows = [[fmt.format(s[key]) for key, _, fmt in COLUMNS] for s in summaries]
    if len(summaries) > 1:
        mean = ["mean"]
        for key, _, fmt in COLUMNS[1:]:
            values = [float(s[key]) for s in summaries]
            value = float(np.mean(values))
            mean.append(fmt.format(round(value) if fmt == "{}" else value))
        rows.append(mean)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def load_summaries(paths: list[str | Path]) -> list[dict]:
    """Every ``metrics.json`` at or below the given folders, sorted by seed."""
    found = []
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(path.rglob("metrics.json"))
        for file in files:
            try:
                found.append(json.loads(file.read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise RobopError(f"{file} is unreadable ({exc}): rerun that experiment") from exc
    if not found:
        raise RobopError(
            f"no metrics.json under {', '.join(map(str, paths))}: run 'robopref demo' first"
        )
    return sorted(found, key=lambda s: (s.get("task", ""), s.get("seed", 0)))


def plot_run(summary: dict, out_dir: str | Path) -> list[Path]:
    """Success rate vs round and reward accuracy vs labels, as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    rounds = summary["rounds"]
    written = []

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["round"] for r in rounds], [r["success_rate"] for r in rounds], "o-")
    ax.set(
        xlabel="round (0 = behaviour cloning)",
        ylabel="success rate",
        ylim=(0, 1.02),
        title=f"{summary['task']} seed {summary['seed']}",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out_dir / "success_vs_round.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    labelled = [r for r in rounds if r["round"] > 0 and not math.isnan(r["reward_accuracy"])]
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
