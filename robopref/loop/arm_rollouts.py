"""Rollouts on an arm: the loop's episodes driven through the safety layer on a ``ForceArm``
(the simulated arm, or a UR/Franka arm or its fake), recorded as they end.

``ArmCollector`` is the loop's ``RolloutCollector`` for rounds on the arm. Each episode runs
through ``robopref.recording.Recorder.record_episode`` (the fixed-rate control loop of
``robopref record``: the policy drives, the person's teleop can take over or stop, the safety
layer clips every command) and is appended with ``DurableEpisodeWriter``, so it is durable the
moment it ends; a collection killed midway continues after its last durable episode, each
episode's exploration noise drawn from (seed, episode index) alone.

A person stops an episode from the teleop with any button (save, discard, re-record, quit):
the frames so far are kept, marked in the episode's meta (``stopped``, ``outcome``); ``quit``
also stops the run cleanly (``RunStopped``, resumable). A protective stop is kept and marked
the same way, then stops the run (``on_protective_stop=stop``: a person clears the cause and
resumes) or recovers the arm and goes on (``recover``, for simulation).

Per episode it keeps the arm-side task's per-step true reward (``next.reward``) and metrics
(``next.metrics``) beside what the recorder writes, and appends every safety event (clip,
refusal, stop, hold) to ``<events_path>`` as JSON Lines tagged with the collection and
episode; the episode's meta sums them (``safety``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from robopref.data import Episode, load_episodes
from robopref.data.lerobot_io import METRICS_KEY
from robopref.errors import ConfigError, RobopError
from robopref.loop.collectors import RolloutCollector, RunStopped

STOP_OUTCOMES = ("save", "discard", "rerecord", "quit", "protective_stop")
# Safety events that mean something went wrong (clips are the layer doing its job).
FAULT_EVENTS = ("protective_stop", "non_finite_command", "watchdog_error")


@dataclass
class ArmRolloutConfig:
    """Attributes:
    episode_steps: control ticks per episode.
    fps: control rate (Hz); must equal the arm's.
    realtime: pace the loop on the wall clock (real arms); a simulated arm may run unpaced.
    cameras: cameras recorded into the rollout datasets (``observation.images.<name>``).
    image_width, image_height: their size (px).
    film_camera: the camera the round report's videos are filmed with (``None``: none).
    film_width, film_height: size of those videos (px).
    on_protective_stop: ``"stop"`` the run (a person clears the cause, then resumes) or
        ``"recover"`` the arm at the next episode's scene reset and go on (simulation).
    repo_id: lerobot repository id of the recorded datasets.
    task_string: lerobot's per-frame task string.
    spin_s: busy-wait this last part of each tick's wait (s).
    """

    episode_steps: int = 400
    fps: int = 20
    realtime: bool = False
    cameras: list[str] = field(default_factory=list)
    image_width: int = 128
    image_height: int = 96
    film_camera: str | None = None
    film_width: int = 160
    film_height: int = 120
    on_protective_stop: str = "stop"
    repo_id: str = "robopref/finetune"
    task_string: str = "policy rollout"
    spin_s: float = 0.0005

    def __post_init__(self) -> None:
        if self.episode_steps < 1 or self.fps < 1:
            raise ConfigError("arm rollouts need episode_steps >= 1 and fps >= 1 (Hz)")
        if self.on_protective_stop not in ("stop", "recover"):
            raise ConfigError(
                f"on_protective_stop must be stop or recover, got '{self.on_protective_stop}'"
            )
        self.cameras = list(self.cameras)


class _TaskTap:
    """The arm-side task as the recorder sees it, keeping each control step's true reward
    and the metrics ``names`` (``step_metrics()``, one call per ``update``)."""

    def __init__(self, task, names: tuple[str, ...]):
        self.task, self.names = task, names
        self.rewards: list[float] = []
        self.rows: list[list[float]] = []
        self.recover = False  # clear a protective stop once the reset moved the arm clear

    def reset(self, arm, rng) -> None:
        self.task.reset(arm, rng)
        if self.recover:
            # After the scene reset (a simulated one teleports the tool out of contact):
            # recovering earlier would latch again on the wrench that caused the stop.
            arm.recover()
            self.recover = False
        self.rewards, self.rows = [], []

    def update(self, arm) -> None:
        self.task.update(arm)
        step = self.task.step_metrics() if hasattr(self.task, "step_metrics") else {}
        self.rewards.append(float(step.get("reward", np.nan)))
        self.rows.append([float(step[n]) for n in self.names])

    def environment_state(self) -> np.ndarray:
        return self.task.environment_state()

    def metrics(self) -> dict:
        return self.task.metrics()


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def safety_summary(events) -> dict:
    """Counts of ``SafetyEvent`` kinds, clips by limit."""
    clips: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for event in events:
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
        if event.kind == "clip":
            limit = str(event.detail.get("limit", "?"))
            clips[limit] = clips.get(limit, 0) + 1
    return {"events": kinds, "clips_by_limit": clips,
            "faults": sum(kinds.get(k, 0) for k in FAULT_EVENTS)}


class ArmCollector(RolloutCollector):
    """Episodes on ``arm`` (a connected ``SafeArm``) driven by the loop's policy; see the
    module docstring. ``task``: an arm-side task (``robopref.envs.ARM_TASKS``) or ``None``;
    ``metric_names``: its per-step metrics kept as ``Episode.metrics``; ``camera(name, w, h)``
    renders (the simulated arm); ``meta``: added to every episode's meta."""

    records = True

    def __init__(self, config: ArmRolloutConfig, arm, teleop, task=None, sensor=None,
                 camera=None, metric_names: tuple[str, ...] = (), task_name: str = "",
                 events_path: str | Path | None = None, meta: dict | None = None,
                 progress: bool = True, log=print):
        from robopref.recording import Recorder, RecorderConfig

        self.config, self.arm, self.teleop, self.sensor = config, arm, teleop, sensor
        self.task_name, self.meta, self.progress, self.log = task_name, dict(meta or {}), \
            progress, log
        self.metric_names = tuple(metric_names) if task is not None else ()
        self.tap = None if task is None else _TaskTap(task, self.metric_names)
        self.events_path = None if events_path is None else Path(events_path)
        self.camera = camera

        def recorder(cameras, width, height) -> Recorder:
            settings = RecorderConfig(
                root="(arm rollouts)", repo_id=config.repo_id, task=config.task_string,
                fps=config.fps, max_episode_s=config.episode_steps / config.fps,
                cameras=cameras, image_width=width, image_height=height,
                realtime=config.realtime, spin_s=config.spin_s,
            )
            return Recorder(settings, arm, teleop, sensor=sensor, task=self.tap, camera=camera,
                            log=log)

        arm_hz = 1.0 / arm.control_period_s
        if abs(arm_hz - config.fps) > 0.01 * config.fps:
            raise ConfigError(
                f"rollouts at {config.fps} Hz but the arm runs at {arm_hz:.4g} Hz: set the arm's "
                f"control_hz to {config.fps} (or record.fps to match the arm)"
            )
        self.recorder = recorder(config.cameras, config.image_width, config.image_height)
        self.filmer = None
        if config.film_camera and camera is not None:
            self.filmer = recorder([config.film_camera], config.film_width, config.film_height)
        if not getattr(teleop, "is_connected", True):
            teleop.connect()

    # -- the contract ----------------------------------------------------------------------
    def collect(self, policy, variations: list, name: str, folder=None) -> list[Episode]:
        from robopref.data.durable_writer import DurableEpisodeWriter

        writer, episodes = None, []
        features = {**self.recorder.features(), "next.reward": {
            "dtype": "float32", "shape": (1,), "names": None}}
        if self.metric_names:
            features[METRICS_KEY] = {"dtype": "float32", "shape": (len(self.metric_names),),
                                     "names": list(self.metric_names)}
        if folder is not None:
            folder = Path(folder)
            writer = DurableEpisodeWriter(folder, self.config.repo_id, self.config.fps,
                                          features, resume=folder.exists())
            if writer.num_episodes:
                episodes = self._continue(folder, variations, name)
        start = 1 + max((e.meta["attempt"] for e in episodes), default=-1)
        bar = tqdm(total=len(variations), initial=start, desc=name, disable=not self.progress,
                   leave=False)
        self.recorder.policy = policy
        try:
            for attempt in range(start, len(variations)):
                episode = self._episode(policy, variations[attempt], attempt, name, writer)
                if episode is not None:
                    episodes.append(episode)
                bar.update(1)
        finally:
            bar.close()
            self.recorder.policy = None
            if writer is not None:
                writer.close()  # removes its hidden staging twin beside the dataset
        return episodes

    def film(self, policy, variation, camera: str):
        """Frames ``(T, H, W, 3)`` uint8 of one deterministic episode of ``policy`` from
        ``variation``, seen by the configured film camera; ``None`` without a camera."""
        if self.filmer is None or camera != self.config.film_camera:
            return None
        self.filmer.policy = policy
        try:
            attempt = self._run(self.filmer, policy, variation, "film", 0)
        finally:
            self.filmer.policy = None
        frames = attempt.frames.get(f"observation.images.{camera}") or []
        return np.stack(frames) if frames else None

    def close(self) -> None:
        if getattr(self.teleop, "is_connected", False):
            self.teleop.disconnect()

    # -- one episode -----------------------------------------------------------------------
    def _continue(self, folder: Path, variations: list, name: str) -> list[Episode]:
        """The durable episodes of a collection killed midway, checked against ``variations``."""
        episodes = load_episodes(folder)
        for episode in episodes:
            attempt = episode.meta.get("attempt")
            if attempt is None or _plain(variations[attempt]) != episode.meta.get("variation"):
                raise RobopError(
                    f"{folder} holds episodes of another collection than '{name}': move it "
                    "away, then resume"
                )
        self.log(f"{name}: {len(episodes)} episodes already recorded, continuing")
        return episodes

    def _run(self, recorder, policy, variation, name: str, attempt: int):
        reseed = getattr(policy, "reseed_episode", None)
        if callable(reseed):
            reseed(attempt)
        events = self.arm.events
        marker = events[-1] if events else None
        result = recorder.record_episode(int(variation))
        events = self.arm.events
        at = next((i for i in range(len(events) - 1, -1, -1) if events[i] is marker), -1)
        new = events[at + 1:] if marker is not None else events
        result.meta["safety"] = safety_summary(new)
        self._log_events(new, name, attempt)
        return result

    def _episode(self, policy, variation, attempt: int, name: str, writer) -> Episode | None:
        result = self._run(self.recorder, policy, variation, name, attempt)
        meta, frames = result.meta, result.frames
        for key in ("periods_s", "lateness_s", "work_s", "missed"):
            meta.pop(key, None)
        stopped = result.outcome in STOP_OUTCOMES
        meta.update(self.meta, variation=_plain(variation), source=name.split()[0],
                    attempt=attempt, stopped=stopped, stop_reason=result.outcome if stopped
                    else None)
        length = len(frames.get("action", []))
        if length:
            episode = self._keep(frames, _plain(meta), length, writer)
        else:
            episode = None
            self.log(f"{name}: episode {attempt} stopped before its first tick; nothing kept")
        if result.outcome == "protective_stop":
            if self.config.on_protective_stop == "recover" and self.tap is not None:
                self.tap.recover = True  # at the next episode's reset
            elif self.config.on_protective_stop == "recover":
                self.arm.recover()
            else:
                raise RunStopped(
                    f"protective stop in {name} episode {attempt} (kept, marked): clear the "
                    "cause, then resume the run"
                )
        if result.outcome == "quit":
            raise RunStopped(f"the operator quit during {name} episode {attempt} (kept, marked)"
                             ": resume the run to go on")
        return episode

    def _keep(self, frames: dict, meta: dict, length: int, writer) -> Episode:
        arrays = {k: np.stack(v) for k, v in frames.items()}
        tap = self.tap
        rewards = (np.asarray(tap.rewards, np.float32) if tap is not None
                   else np.full(length, np.nan, np.float32))
        arrays["next.reward"] = rewards.reshape(length, 1)
        metrics = None
        if self.metric_names:
            metrics = np.asarray(tap.rows, np.float32).reshape(length, -1)
            arrays[METRICS_KEY] = metrics
        state = arrays["observation.state"].astype(np.float32)
        if "observation.environment_state" in arrays:
            state = np.concatenate([state, arrays["observation.environment_state"]], axis=1)
        # What lerobot gives back, so a resumed run sees the episodes the running one had.
        meta = json.loads(json.dumps(meta))
        episode = Episode(
            observations=state, actions=arrays["action"], rewards=rewards,
            successes=arrays["next.success"].reshape(-1), task=self.config.task_string,
            wrenches=arrays["observation.wrench"], meta=meta,
            metrics=metrics, metric_names=self.metric_names if metrics is not None else (),
            images={k.removeprefix("observation.images."): v for k, v in arrays.items()
                    if k.startswith("observation.images.")},
        )
        if writer is not None:
            first = writer.num_frames
            episode.episode_index = writer.save_episode(arrays, self.config.task_string, meta)
            episode.dataset_id = writer.dataset_id
            episode.frame_indices = np.arange(first, first + length, dtype=np.int64)
        return episode

    def _log_events(self, events, name: str, attempt: int) -> None:
        """Append the episode's safety events to the JSON Lines log, durably."""
        if self.events_path is None:
            return
        self.events_path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.time()
        with open(self.events_path, "a", encoding="utf-8") as handle:
            for event in events:
                line = json.loads(event.to_json())
                handle.write(json.dumps({"collection": name, "attempt": attempt,
                                         "logged_at": stamp, **line}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
