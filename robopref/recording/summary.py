"""The end-of-session summary table, and plain-Python conversion of metric values."""

from __future__ import annotations

import numpy as np

__all__ = ["format_summary"]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def format_summary(summary: dict) -> str:
    """The end-of-session table."""
    t = summary["timing"]
    paced = "" if t["realtime"] else " (unpaced)"
    rows = [
        ("episodes saved", f"{summary['episodes_saved']}"),
        ("episodes discarded", f"{summary['episodes_discarded']}"),
        ("episodes re-recorded", f"{summary['episodes_rerecorded']}"),
        ("protective stops", f"{summary['protective_stops']}"),
        ("success rate (saved)", _fmt(summary["success_rate"], ".2f")),
        ("dataset episodes", f"{summary['dataset_episodes']} ({summary['dataset_frames']} frames)"),
        ("target rate", f"{t['target_hz']:.1f} Hz{paced}"),
        ("achieved rate", _fmt(t["achieved_hz"], ".1f", " Hz")),
        (
            "period error mean, std",
            f"{_fmt(t['period_error_mean_ms'], '+.3f', ' ms')}, "
            f"{_fmt(t['period_error_std_ms'], '.3f', ' ms')}",
        ),
        (
            "period error |p99|, max",
            f"{_fmt(t['period_error_p99_ms'], '.3f', ' ms')}, "
            f"{_fmt(t['period_error_max_ms'], '.3f', ' ms')}",
        ),
        (
            "start lateness p99, max",
            f"{_fmt(t['lateness_p99_ms'], '.3f', ' ms')}, "
            f"{_fmt(t['lateness_max_ms'], '.3f', ' ms')}",
        ),
        (
            "tick work mean, p99",
            f"{_fmt(t['work_mean_ms'], '.3f', ' ms')}, {_fmt(t['work_p99_ms'], '.3f', ' ms')}",
        ),
        ("missed deadlines", f"{t['missed_deadlines']} of {t['periods']} periods"),
    ]
    blocked, durable = summary.get("save_blocked"), summary.get("save_durable_after")
    if blocked and durable:
        # The loop's stop per save (frames handed to the writer), then the disk's time.
        rows += [
            (
                "save: loop blocked mean, max",
                f"{_fmt(_ms(blocked['mean_s']), '.1f', ' ms')}, "
                f"{_fmt(_ms(blocked['max_s']), '.1f', ' ms')}",
            ),
            (
                "save: durable after mean, max",
                f"{_fmt(durable['mean_s'], '.2f', ' s')}, {_fmt(durable['max_s'], '.2f', ' s')}",
            ),
        ]
    if summary.get("reset_time_s"):
        rows.append(
            (
                "reset phase",
                f"{summary['reset_time_s']:g} s, "
                f"{summary.get('reset_buttons_dropped', 0)} button press(es) ignored",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
