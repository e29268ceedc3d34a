"""The round report of on-robot finetuning: per round, the task's quality metrics with 95%
intervals, the labels used (pair answers and episode scores), the reward's components, and a
side-by-side video of the base and the refined policy on the same unseen scene.

Written into ``<run>/report/``::

    index.html                one page linking everything (self-contained: no external CDN)
    report.json               format version and what each round's report holds
    round<k>/quality.png      success and each quality metric per round, 95% intervals
    round<k>/labels.png       pair answers and episode scores used, cumulative per round
    round<k>/reward.png       each reward component's mean per-step contribution per round
    round<k>/base_vs_refined.webm   left: the base policy, right: round k's (sim cameras)

Every file is written atomically; every value shown in the page is HTML-escaped.
"""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from robopref.data.atomic import write_bytes_atomic, write_json_atomic
from robopref.errors import ConfigError

REPORT_FORMAT_VERSION = 1


@dataclass
class ReportConfig:
    """Attributes:
    film_camera: the camera the videos are filmed with (``None``: no videos); needs an arm
        that renders (the simulated arm's ``front`` or ``wrist``).
    fps: frame rate of the videos (Hz; the control rate shows real time).
    """

    film_camera: str | None = "front"
    fps: float = 20.0

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ConfigError(f"report fps must be > 0, got {self.fps}")


class RoundReporter:
    """``report(k, loop)``: round ``k``'s report (see the module docstring), as a loop step."""

    def __init__(self, config: ReportConfig | None = None):
        self.config = config or ReportConfig()

    def report(self, k: int, loop) -> dict:
        root = loop.store.path("report")
        folder = root / f"round{k}"
        rounds = [asdict(r) for r in loop.history]
        entry = {"round": k, "plots": [f"round{k}/{p.name}" for p in plot_rounds(rounds, folder)],
                 "video": None}
        camera = self.config.film_camera
        if camera:
            variation = loop.task.first("test", 1)[0]
            base = loop.collector.film(loop.policy, variation, camera)
            refined = loop.collector.film(loop.round_policies[k - 1], variation, camera)
            if base is not None and refined is not None:
                from robopref.label.video import encode_webm

                path = folder / "base_vs_refined.webm"
                encode_webm(side_by_side(base, refined), self.config.fps, path)
                entry.update(video=f"round{k}/{path.name}", scene=variation)
        index_path = root / "report.json"
        entries = []
        if index_path.exists():
            entries = json.loads(index_path.read_text()).get("rounds", [])
        entries = [e for e in entries if e["round"] != k] + [entry]
        entries.sort(key=lambda e: e["round"])
        write_json_atomic(index_path, {"format_version": REPORT_FORMAT_VERSION,
                                       "rounds": entries}, allow_nan=False)
        page = render_html(loop.task.name, rounds, entries)
        write_bytes_atomic(root / "index.html", page.encode("utf-8"))
        return {**entry, "html": "report/index.html"}


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Frames ``(T, H, W_l + gap + W_r, 3)`` uint8: ``left`` and ``right`` ``(T_i, H, W, 3)``
    next to each other, the shorter one holding its last frame, a white gap between."""
    length = max(len(left), len(right))
    height = max(left.shape[1], right.shape[1])

    def fit(frames: np.ndarray) -> np.ndarray:
        frames = np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), 0)])
        pad = height - frames.shape[1]
        return np.pad(frames, ((0, 0), (0, pad), (0, 0), (0, 0)))

    white = np.full((length, height, gap, 3), 255, np.uint8)
    return np.concatenate([fit(left), white, fit(right)], axis=2).astype(np.uint8)


def _series(rounds: list[dict], key: str) -> tuple[list, list, list, list]:
    xs, ys, lows, highs = [], [], [], []
    for r in rounds:
        value = (r.get("extra") or {}).get("quality", {}).get(key)
        if value and value.get("mean") is not None and math.isfinite(value["mean"]):
            low, high = value.get("ci95") or (None, None)
            mean = value["mean"]
            xs.append(r["round"])
            ys.append(mean)
            lows.append(mean - low if low is not None and math.isfinite(low) else 0.0)
            highs.append(high - mean if high is not None and math.isfinite(high) else 0.0)
    return xs, ys, lows, highs


def plot_rounds(rounds: list[dict], folder: Path) -> list[Path]:
    """The three PNG plots of the module docstring, written atomically into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        written.append(write_bytes_atomic(folder / name, buffer.getvalue()))

    keys = sorted({k for r in rounds for k in (r.get("extra") or {}).get("quality", {})})
    keys = ["success"] + [k for k in keys if k != "success"] if "success" in keys else keys
    cols = max(1, min(3, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        xs, ys, lows, highs = _series(rounds, key)
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o-", capsize=4)
        ax.set(title=key, xlabel="round (0 = base)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if not keys:
        axes[0, 0].plot([r["round"] for r in rounds], [r["success_rate"] for r in rounds], "o-")
        axes[0, 0].set(title="success", xlabel="round (0 = base)")
    fig.suptitle("evaluation per round (95% intervals)")
    fig.tight_layout()
    save(fig, "quality.png")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [r["round"] for r in rounds]
    pairs = [(r.get("extra") or {}).get("pairs", r["labels"]) for r in rounds]
    scores = [(r.get("extra") or {}).get("scores", 0) for r in rounds]
    ax.bar(xs, pairs, label="pair answers")
    ax.bar(xs, scores, bottom=pairs, label="episode scores")
    ax.set(xlabel="round", ylabel="labels used (cumulative)", title="labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "labels.png")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = sorted({k.removeprefix("contribution/") for r in rounds
                    for k in (r.get("extra") or {}).get("reward", {}) if k.startswith("contrib")})
    for name in names:
        pts = [(r["round"], r["extra"]["reward"][f"contribution/{name}"]) for r in rounds
               if f"contribution/{name}" in (r.get("extra") or {}).get("reward", {})]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set(xlabel="round", ylabel="mean per-step contribution", title="reward components")
    if names:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, "reward.png")
    return written


def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3g}"
    return "-" if value is None else str(value)


def _interval(entry: dict) -> str:
    low, high = entry.get("ci95") or (None, None)
    if low is None or high is None:
        return _fmt(entry.get("mean"))
    return f"{_fmt(entry.get('mean'))} [{_fmt(low)}, {_fmt(high)}]"


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(a))}</th><td>{html.escape(str(b))}</td></tr>"
                    for a, b in rows)
    return f"<table>{cells}</table>"


def render_html(task: str, rounds: list[dict], entries: list[dict]) -> str:
    """One self-contained page: a section per round (round 0 = the base policy)."""
    esc = html.escape
    media = {e["round"]: e for e in entries}
    sections = []
    for r in rounds:
        extra = r.get("extra") or {}
        k = r["round"]
        title = "round 0: base policy" if k == 0 else f"round {k}"
        quality = [(name, _interval(v)) for name, v in extra.get("quality", {}).items()]
        labels = [("labels used (pairs + scores)", r["labels"]),
                  ("pair answers", extra.get("pairs", "-")),
                  ("episode scores", extra.get("scores", "-")),
                  ("queries asked", r["queries"]),
                  ("reward accuracy (held-out pairs)", _fmt(r["reward_accuracy"]))]
        reward = [(key, _fmt(v)) for key, v in extra.get("reward", {}).items()
                  if isinstance(v, int | float)]
        parts = [f"<h2>{esc(title)}</h2>",
                 f"<p>evaluation split: {esc(str(extra.get('eval_split', 'train')))}; success "
                 f"{esc(_fmt(r['success_rate']))}; wall time {esc(_fmt(r['wall_time_s']))} s</p>",
                 "<h3>quality (95% intervals)</h3>", _table(quality),
                 "<h3>labels</h3>", _table(labels)]
        if reward:
            parts += ["<h3>reward components</h3>", _table(reward)]
        entry = media.get(k, {})
        for plot in entry.get("plots", []):
            parts.append(f'<img src="{esc(plot, quote=True)}" alt="{esc(plot, quote=True)}">')
        if entry.get("video"):
            scene = esc(str(entry.get("scene", "")))
            parts.append(
                f"<figure><video src=\"{esc(entry['video'], quote=True)}\" controls loop muted "
                f"playsinline></video><figcaption>test scene {scene}: base policy (left), round "
                f"{k} (right)</figcaption></figure>"
            )
        sections.append("<section>" + "\n".join(parts) + "</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
             "collapse;margin:4px 0}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "img{max-width:100%}video{max-width:100%}section{border-top:2px solid #888}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(task)} finetuning"
            f" report</title><style>{style}</style></head><body><h1>{esc(task)}: finetuning "
            f"rounds</h1>\n" + "\n".join(sections) + "\n</body></html>\n")
