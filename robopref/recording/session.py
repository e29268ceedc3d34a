"""A recording session: episodes one after another, each saved episode handed to the
recorder's background writer, a reset phase between episodes, and the summary.

The control loop never waits for the disk: a kept episode's frames are stacked and handed to
the recorder's ``BackgroundEpisodeWriter`` (encoding, Parquet, fsync and the atomic swap run
in its own process) while the operator resets the scene (``record.reset_time_s``) and the
next episode runs. At most one episode is in the writer's hands at a time, so a crash loses
at most the episode being written (and the one being recorded), never an earlier one. The
operator sees when each episode is durable; the session ends only when every saved episode
is.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from robopref.recording.reset import Countdown, run_reset
from robopref.recording.timing import timing_stats

__all__ = ["run_session"]


def _spread(values: list[float]) -> dict:
    """Mean and max (s) of ``values``; None without samples (strict JSON has no NaN)."""
    if not values:
        return {"mean_s": None, "max_s": None}
    return {"mean_s": float(np.mean(values)), "max_s": float(np.max(values))}


def run_session(recorder) -> dict:
    """Record until ``num_episodes`` are saved (and durable) or the operator quits; returns
    the session summary. ``recorder`` is a connected ``Recorder`` whose ``writer`` is open."""
    cfg, writer = recorder.config, recorder.writer
    counts = {"saved": 0, "discarded": 0, "rerecorded": 0, "stopped": 0}
    periods, lateness, work, missed, successes, saved_meta = [], [], [], 0, [], []
    blocked, ended_at, durable_after, dropped = [], {}, [], 0
    quit_requested = False
    bar = None
    if recorder.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.num_episodes, desc="episodes durable", unit="ep")
        recorder._say = bar.write  # messages above the bar, not through it
    say = recorder._say

    def report(out=None) -> None:
        """Print which episodes became durable and advance the bar."""
        for record in writer.poll():
            after = record.durable_at - ended_at.get(record.index, record.durable_at)
            durable_after.append(after)
            (out or say)(f"episode {record.index} durable ({after:.2f} s after it ended)")
            if bar is not None:
                bar.update(1)

    attempt_seed = cfg.seed + writer.num_episodes
    started = time.monotonic()
    try:
        while counts["saved"] < cfg.num_episodes:
            try:
                attempt = recorder.record_episode(attempt_seed)
            except KeyboardInterrupt:
                # Ctrl-C is the operator's emergency quit: the running episode is dropped,
                # the saved ones are written to the end.
                say("interrupted: the running episode was dropped")
                quit_requested = True
                break
            meta = attempt.meta
            periods.append(meta.pop("periods_s"))
            lateness.append(meta.pop("lateness_s"))
            work.append(meta.pop("work_s"))
            missed += meta.pop("missed")
            if attempt.keep:
                ended = time.monotonic()  # the clock the writer process reports on
                frames = {k: np.stack(v) for k, v in attempt.frames.items()}
                index = writer.submit(frames, cfg.task, meta)
                ended_at[index] = ended
                blocked.append(time.monotonic() - ended)
                counts["saved"] += 1
                saved_meta.append(meta)
                if "metrics" in meta:
                    successes.append(bool(meta["metrics"].get("success", False)))
                say(f"episode {index} saved ({meta['length']} frames, {attempt.outcome}); writing")
            elif attempt.outcome == "rerecord":
                counts["rerecorded"] += 1
                say("episode dropped: recording it again")
            elif attempt.outcome == "protective_stop":
                counts["stopped"] += 1
                say(
                    "episode dropped after a protective stop: clear the cause, then run "
                    "again with --resume"
                )
                quit_requested = True
            elif attempt.outcome == "quit":
                quit_requested = True
            else:
                counts["discarded"] += 1
                say("episode discarded")
            if attempt.outcome != "rerecord":
                attempt_seed += 1  # a re-recorded episode gets the same scene again
            report()
            if quit_requested:
                break
            if counts["saved"] >= cfg.num_episodes or cfg.reset_time_s <= 0:
                continue
            countdown = Countdown("reset the scene", recorder.stream)
            try:
                reset = run_reset(
                    recorder, cfg.reset_time_s, countdown, poll=lambda c=countdown: report(c.say)
                )
            except KeyboardInterrupt:
                countdown.done("interrupted during the reset")
                quit_requested = True
                break
            dropped += reset["buttons_dropped"]
            if reset["protective_stop"]:
                counts["stopped"] += 1
                quit_requested = True
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    finally:
        if bar is not None:
            bar.close()
        recorder._say = recorder.log
    if writer.pending:
        recorder.log(f"writing the last {writer.pending} episode(s) to disk...")
    try:
        writer.wait()  # raises the writer's DatasetError if a save failed
        report(recorder.log)
    finally:
        writer.close()
    all_periods = np.concatenate(periods) if periods else np.zeros(0)
    all_lateness = np.concatenate(lateness) if lateness else np.zeros(0)
    all_work = np.concatenate(work) if work else np.zeros(0)
    return {
        "root": str(writer.root),
        "repo_id": cfg.repo_id,
        "task": cfg.task,
        "episodes_saved": counts["saved"],
        "episodes_discarded": counts["discarded"],
        "episodes_rerecorded": counts["rerecorded"],
        "protective_stops": counts["stopped"],
        "quit": quit_requested,
        "first_episode_index": writer.start_episodes,
        "dataset_episodes": writer.num_episodes,
        "dataset_frames": writer.num_frames,
        "success_rate": float(np.mean(successes)) if successes else None,
        "interventions": sum(m["interventions"] for m in saved_meta),
        "wall_time_s": time.monotonic() - started,
        "reset_time_s": float(cfg.reset_time_s),
        "reset_buttons_dropped": int(dropped),
        # How long the control loop stopped per save (stacking frames, handing them over),
        # and how long after the episode ended it was durable on disk.
        "save_blocked": _spread(blocked),
        "save_durable_after": _spread(durable_after),
        "save_write": _spread([r.write_s for r in writer.records]),
        "timing": timing_stats(
            all_periods, 1.0 / cfg.fps, missed, cfg.realtime, all_lateness, all_work
        ),
    }
