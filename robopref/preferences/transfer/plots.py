"""Pictures of a transfer: the plan as a heatmap and a calibration (reliability) plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robopref.data.atomic import write_bytes_atomic


def _figure_bytes(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_plan(plan: np.ndarray, source_returns: np.ndarray, target_returns: np.ndarray,
              path: str | Path, title: str) -> Path:
    """The plan ``(n_s, n_t)`` with source rows and target columns sorted by true segment
    return: mass along the rising diagonal means good segments were matched to good ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = np.argsort(source_returns), np.argsort(target_returns)
    shown = plan[np.ix_(rows, cols)] * plan.size  # 1 = the independent coupling's mass
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    image = ax.imshow(np.log10(shown + 1e-3), aspect="auto", origin="lower", cmap="magma",
                      vmin=-2, vmax=max(1.0, float(np.log10(shown.max() + 1e-3))))
    ax.set_xlabel("target segments, by true return")
    ax.set_ylabel("source segments, by true return")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="log10 mass / independent coupling")
    data = _figure_bytes(fig)
    plt.close(fig)
    return write_bytes_atomic(path, data)


def plot_calibration(labels: dict[str, np.ndarray], truth: np.ndarray, path: str | Path,
                     title: str, bins: int = 10) -> Path:
    """Accuracy against confidence per calibration (``name -> soft labels (B,)``), with the
    share of answers in each bin; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0.5, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.0, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0.5, 1.0], [0.5, 1.0], color="0.6", linestyle="--", linewidth=1)
    width = (edges[1] - edges[0]) / (len(labels) + 1)
    for k, (name, z) in enumerate(labels.items()):
        ok = np.isfinite(z) & (truth != 0.5)
        confidence = np.maximum(z[ok], 1 - z[ok])
        correct = (z[ok] > 0.5) == (truth[ok] > 0.5)
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        acc = np.array([correct[which == b].mean() if (which == b).any() else np.nan
                        for b in range(bins)])
        share = np.array([(which == b).mean() for b in range(bins)]) if ok.any() else centres * 0
        ax.plot(centres, acc, marker="o", label=name)
        ax_n.bar(edges[:-1] + (k + 0.5) * width, share, width=width, label=name)
    ax.set_ylabel("accuracy against the oracle")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax_n.set_xlabel("confidence max(z, 1 - z)")
    ax_n.set_ylabel("share")
    data = _figure_bytes(fig)
    plt.close(fig)
    return write_bytes_atomic(path, data)
