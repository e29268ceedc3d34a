"""Teleoperated recording into a LeRobotDataset, one durable episode at a time.

``Recorder`` runs a fixed-rate control loop over objects built at the edge (an arm wrapped in
the safety layer, a teleop device, an optional wrist sensor, task and camera) and appends each
saved episode to a LeRobotDataset (v3.0) through ``DurableEpisodeWriter``.

Frame features (``N`` = the arm's joint count, 6 for UR, 7 for Franka):

- ``observation.state`` ``(2N + 12,)``: joint positions (rad), joint velocities (rad/s), TCP
  pose ``[x, y, z, rx, ry, rz]`` (m, rad) and the arm's wrench ``[fx, fy, fz, tx, ty, tz]``
  (N, N*m), in that order (the layout ``PeelEnv`` observations start with);
- ``observation.wrench`` ``(6,)`` (N, N*m) from the wrist sensor (the arm's own reading when
  there is no sensor);
- ``observation.environment_state`` ``(k,)`` when a task gives one;
- ``observation.images.<camera>`` ``(H, W, 3)`` uint8;
- ``action`` ``(6,)``: the TCP motion actually commanded this tick after the safety layer's
  clipping, ``[dx, dy, dz, drx, dry, drz]`` (m, rad) with the rotation part a rotation vector
  in the base frame (replaying ``compose_delta(previous_sent, action)`` gives back what was
  sent);
- ``next.success`` ``(1,)`` the task's success flag after the action.

Crash safety. lerobot 0.6.1 appends episodes to a Parquet file that only ``finalize()``
closes, and rewrites ``meta/info.json`` and ``meta/stats.json`` in place on every
``save_episode()`` (huggingface/lerobot#3522: a killed recorder loses the open file). Here the
dataset folder is never written in place. Each saved episode is written into a staging clone
of the dataset (finalized Parquet files are hard-linked, never rewritten: on ``resume`` lerobot
opens new data and episode-metadata files), finalized, flushed to disk with ``fsync``, and
then swapped with the live folder in one atomic ``renameat2(RENAME_EXCHANGE)``. A reader,
or a process killed at any instant, sees either the dataset before the episode or after it.
Where the exchange is not available (not Linux, or a filesystem without it) two renames do
the swap; a kill between them leaves no folder for an instant, and the next writer on that
root (``--resume``) puts the complete new version in place. The cost is one Parquet file per
episode (lerobot reads those like any multi-file dataset) and a save time that grows slowly
with the number of episodes (lerobot's ``resume`` re-reads the episode index).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robopref.data.lerobot_io import FORMAT_VERSION, SIDECAR, _json_default, _quiet_datasets
from robopref.errors import ConfigError, DatasetError
from robopref.hardware.base import ProtectiveStop
from robopref.hardware.safety import SafeArm, SafetyConfig

# Files that lerobot writes once and never reopens after resume() (resume starts new data and
# episode-metadata files): safe to hard-link into the staging clone instead of copying. Video
# files are not among them (lerobot appends to them) and the recorder writes none.
_IMMUTABLE_DIRS = ("data", "meta/episodes")
_STAGING_MARK = ".staging-"
_PREVIOUS_MARK = ".previous-"
# renameat2 errors meaning "no atomic exchange here" (another OS, or a filesystem without it).
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


# -- atomic directory swap ----------------------------------------------------------------
def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directory entries (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path, skip_inodes: set[int]) -> None:
    """fsync every file (except already-durable hard links) and every directory under root."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if path.stat().st_ino not in skip_inodes:
                _fsync_path(path)
        _fsync_path(Path(dirpath))


def _write_json_atomic(path: Path, payload) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _private_hf_cache(path: Path):
    """Point HF ``datasets`` at a throwaway cache: ``resume()`` loads the episode metadata with
    ``Dataset.from_parquet``, which caches a copy per staging clone in the user's cache
    (quadratic growth over a session) unless redirected."""
    import datasets

    before = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = path
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_CACHE = before


# -- the dataset writer --------------------------------------------------------------------
class DurableEpisodeWriter:
    """Append episodes to the LeRobotDataset at ``root``; each ``save_episode`` is atomic and
    durable on its own (see the module docstring).

    Args:
        root: dataset folder (created on the first saved episode).
        repo_id: lerobot repository id stored in the dataset metadata.
        fps: frames per second (the control rate, Hz).
        features: lerobot feature spec (``{"name": {"dtype", "shape", "names"}}``).
        resume: append to an existing dataset at ``root`` (features must match); without it
            an existing ``root`` is an error.
    """

    def __init__(
        self, root: str | Path, repo_id: str, fps: int, features: dict, resume: bool = False
    ):
        self.root = Path(root).absolute()
        self.repo_id, self.fps, self.features = repo_id, int(fps), features
        self._finish_interrupted_swap()
        self._remove_stale_staging()
        self._episodes_meta: list[dict] = []
        self.num_frames = 0
        self.created = not self.root.exists()
        if self.root.exists():
            if not resume:
                raise DatasetError(
                    f"dataset folder {self.root} already exists: pass resume (--resume or "
                    "record.resume=true) to add episodes to it, or choose another root"
                )
            self._check_resumable()
        self.start_episodes = self.num_episodes

    @property
    def num_episodes(self) -> int:
        return len(self._episodes_meta)

    def _finish_interrupted_swap(self) -> None:
        # Only the two-rename fallback of _swap can leave no root: killed between its renames,
        # when the staging folder was already complete and durable. Put it in place.
        parent, name = self.root.parent, self.root.name
        if self.root.exists() or not parent.is_dir():
            return
        previous = sorted(parent.glob(f".{name}{_PREVIOUS_MARK}*"))
        if not previous:
            return
        staged = [
            s
            for s in parent.glob(f".{name}{_STAGING_MARK}*")
            if (s / "meta" / "info.json").is_file() and (s / SIDECAR).is_file()
        ]
        os.rename(staged[0] if staged else previous[0], self.root)

    def _remove_stale_staging(self) -> None:
        # A session killed mid-save leaves its staging clone (or the swapped-out old version).
        if self.root.parent.is_dir():
            for mark in (_STAGING_MARK, _PREVIOUS_MARK):
                for stale in self.root.parent.glob(f".{self.root.name}{mark}*"):
                    shutil.rmtree(stale, ignore_errors=True)

    def _swap(self, staging: Path) -> None:
        """Put the complete ``staging`` folder at ``root`` atomically."""
        if not self.root.exists():
            os.rename(staging, self.root)
            return
        try:
            _exchange(staging, self.root)
        except OSError as exc:
            if exc.errno not in _NO_EXCHANGE:
                raise
            # Two renames instead: a kill between them leaves no root for an instant, and the
            # next writer on this root finishes the swap (_finish_interrupted_swap).
            previous = self.root.with_name(f".{self.root.name}{_PREVIOUS_MARK}{os.getpid()}")
            os.rename(self.root, previous)
            os.rename(staging, self.root)
            shutil.rmtree(previous, ignore_errors=True)

    def _check_resumable(self) -> None:
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(
                f"{self.root} is not a LeRobotDataset folder (no meta/info.json): choose an "
                "empty root or the folder of an earlier recording"
            )
        info = json.loads(info_path.read_text())
        recorded = {k: (v["dtype"], list(v["shape"])) for k, v in info["features"].items()}
        for key, spec in self.features.items():
            if recorded.get(key) != (spec["dtype"], list(spec["shape"])):
                raise DatasetError(
                    f"cannot resume {self.root}: feature '{key}' is {recorded.get(key)} there "
                    f"but {(spec['dtype'], list(spec['shape']))} in this session: resume with "
                    "the same arm, sensor, task and cameras, or record into a new root"
                )
        sidecar_path = self.root / SIDECAR
        sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else None
        if sidecar is None or sidecar.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"cannot resume {self.root}: its {SIDECAR} is missing or of another format "
                "version: record into a new root"
            )
        if len(sidecar["episodes"]) != info["total_episodes"]:
            raise DatasetError(
                f"cannot resume {self.root}: {SIDECAR} lists {len(sidecar['episodes'])} episodes, "
                f"the dataset {info['total_episodes']}: it was edited by hand; restore it"
            )
        self._episodes_meta = list(sidecar["episodes"])
        self.num_frames = int(info["total_frames"])

    def _clone(self, staging: Path) -> set[int]:
        """Copy the live dataset into ``staging``: immutable files hard-linked, the rest
        copied (lerobot rewrites those in place). Returns the hard-linked inodes."""
        linked = set()
        for dirpath, _, filenames in os.walk(self.root):
            src_dir = Path(dirpath)
            rel_dir = src_dir.relative_to(self.root)
            (staging / rel_dir).mkdir(parents=True, exist_ok=True)
            immutable = any(
                rel_dir == Path(d) or Path(d) in rel_dir.parents for d in _IMMUTABLE_DIRS
            )
            for name in filenames:
                src, dst = src_dir / name, staging / rel_dir / name
                if immutable:
                    os.link(src, dst)
                    linked.add(src.stat().st_ino)
                else:
                    shutil.copy2(src, dst)
        return linked

    def save_episode(self, frames: dict[str, np.ndarray], task: str, meta: dict) -> int:
        """Append one episode and make it durable; returns its episode index.

        Args:
            frames: feature name -> ``(T, *shape)`` array, one per feature in ``features``.
            task: the lerobot task string of every frame.
            meta: JSON-serialisable episode metadata for the ``robopref.json`` sidecar.
        """
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        missing = sorted(set(self.features) - set(frames))
        if missing:
            raise ValueError(f"episode frames lack feature(s) {', '.join(missing)}")
        length = len(next(iter(frames.values())))
        if length == 0 or any(len(v) != length for v in frames.values()):
            raise ValueError("episode features must share one non-zero length T")
        _quiet_datasets()
        self.root.parent.mkdir(parents=True, exist_ok=True)
        staging = self.root.parent / f".{self.root.name}{_STAGING_MARK}{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        ds = None
        try:
            if self.root.exists():
                staging.mkdir()
                linked = self._clone(staging)
                with _private_hf_cache(staging.with_name(staging.name + "-cache")):
                    ds = LeRobotDataset.resume(self.repo_id, root=staging)
                _quiet_datasets()  # lerobot's loader switches the progress bars back on
            else:
                linked = set()
                ds = LeRobotDataset.create(
                    self.repo_id,
                    fps=self.fps,
                    features=self.features,
                    root=staging,
                    use_videos=False,
                )
            for t in range(length):
                frame = {key: frames[key][t] for key in self.features}
                frame["task"] = task
                ds.add_frame(frame)
            ds.save_episode()
            ds.finalize()
            index = self.num_episodes
            episodes_meta = [*self._episodes_meta, {"task": task, "meta": meta}]
            _write_json_atomic(
                staging / SIDECAR, {"format_version": FORMAT_VERSION, "episodes": episodes_meta}
            )
            _fsync_tree(staging, linked)
            self._swap(staging)
            _fsync_path(self.root.parent)
        except BaseException:
            if ds is not None:
                # lerobot flushes buffered metadata when garbage-collected, which would
                # recreate files in the staging folder after we remove it: close it first.
                with contextlib.suppress(Exception):
                    ds.finalize()
            raise
        finally:
            # After a swap this holds the previous version; before it, the unfinished clone.
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(staging.with_name(staging.name + "-cache"), ignore_errors=True)
        self._episodes_meta = episodes_meta
        self.num_frames += length
        return index


# -- pose arithmetic -----------------------------------------------------------------------
def _unwrap(rotvec: np.ndarray, reference: np.ndarray) -> np.ndarray:
    # theta*axis and (theta -/+ 2*pi)*axis are one rotation; near 180 deg (a tool pointing
    # down) the canonical vector flips sign, so pick the one continuous with the reference.
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return rotvec
    axis = rotvec / angle
    candidates = (rotvec, (angle - 2 * np.pi) * axis, (angle + 2 * np.pi) * axis)
    return min(candidates, key=lambda c: float(np.linalg.norm(c - reference)))


def _quat(rotvec: np.ndarray) -> np.ndarray:
    # [w, x, y, z]; plain NumPy, because scipy's Rotation costs ~0.3 ms a call in a 1-2 ms tick.
    angle = math.sqrt(float(rotvec @ rotvec))
    if angle < 1e-12:
        return np.array([1.0, *(0.5 * rotvec)])
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) / angle * rotvec)])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def _rotvec(quat: np.ndarray) -> np.ndarray:
    quat = quat if quat[0] >= 0 else -quat  # the shorter way round: angle in [0, pi]
    xyz = quat[1:]
    norm = math.sqrt(float(xyz @ xyz))
    if norm < 1e-12:
        return 2.0 * xyz
    return xyz * (2.0 * math.atan2(norm, quat[0]) / norm)


def compose_delta(pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``pose (6,)`` moved by ``delta (6,)``: translation added, rotation vector
    ``delta[3:]`` applied in the base frame (``R = R_delta @ R_pose``); m, rad. The result's
    rotation vector is the one continuous with ``pose[3:]``."""
    pose = np.asarray(pose, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    rotation = _rotvec(_quat_mul(_quat(delta[3:]), _quat(pose[3:])))
    return np.concatenate([pose[:3] + delta[:3], _unwrap(rotation, pose[3:])])


def pose_delta(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The ``(6,)`` delta with ``compose_delta(before, delta) == after`` (m, rad), its
    rotation part of angle at most pi."""
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    inverse = _quat(before[3:]) * np.array([1.0, -1.0, -1.0, -1.0])
    turn = _rotvec(_quat_mul(_quat(after[3:]), inverse))
    return np.concatenate([after[:3] - before[:3], turn])


# -- fixed-rate loop timing ----------------------------------------------------------------
class LoopTimer:
    """Paces a loop at ``period_s`` with ``time.perf_counter`` deadlines and measures it.

    ``wait()`` blocks until the next deadline: ``sleep`` to within ``spin_s`` of it, then a
    short busy-wait (OS sleeps overshoot by 50-100 us, far more on a loaded machine; the spin
    absorbs the usual part). ``done()`` marks the end of the tick's work.

    A deadline is missed when a tick starts more than ``tolerance`` periods after it (the OS
    woke the loop late) or when a tick's work runs past the next deadline (an overrun). After
    an overrun the schedule skips the deadlines already past instead of bursting to catch up,
    keeping its phase. With ``realtime=False`` nothing waits (a synchronous simulation runs as
    fast as it can) and the statistics describe that.
    """

    def __init__(
        self,
        period_s: float,
        realtime: bool = True,
        spin_s: float = 0.0005,
        tolerance: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.period_s, self.realtime, self.spin_s = float(period_s), realtime, float(spin_s)
        self.tolerance = float(tolerance)
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None
        self.starts: list[float] = []
        self.lateness: list[float] = []
        self.work: list[float] = []
        self.missed = 0

    def wait(self) -> float:
        """Block until the next tick is due; returns the tick's start time (s)."""
        if self._next is None:
            self._next = self._clock()
        elif self.realtime:
            remaining = self._next - self._clock()
            if remaining > self.spin_s:
                self._sleep(remaining - self.spin_s)
            while self._clock() < self._next:
                pass
        start = self._clock()
        if self.realtime:
            late = start - self._next
            self.lateness.append(late)
            self.missed += late > self.tolerance * self.period_s
        self.starts.append(start)
        self._next += self.period_s
        return start

    def done(self) -> None:
        """The tick's work is finished: count an overrun and re-phase after one."""
        if self._next is None:
            return
        now = self._clock()
        self.work.append(now - self.starts[-1])
        if not self.realtime:
            return
        if now > self._next:
            self.missed += 1
            self._next += (int((now - self._next) // self.period_s) + 1) * self.period_s

    def stats(self) -> dict:
        return timing_stats(
            np.diff(self.starts),
            self.period_s,
            self.missed,
            self.realtime,
            self.lateness,
            self.work,
        )


def timing_stats(
    periods_s: np.ndarray,
    period_s: float,
    missed: int,
    realtime: bool,
    lateness_s: np.ndarray | list | None = None,
    work_s: np.ndarray | list | None = None,
) -> dict:
    """Rate and jitter of a loop from its measured tick periods ``periods_s (n,)`` (s).

    Period error is ``periods_s - period_s`` per tick, reported in ms: mean and std of the
    signed error, p99 and max of its absolute value. ``achieved_hz`` is ticks per second;
    ``lateness`` (ms) is how long after its deadline each tick started; ``work`` (ms) how long
    each tick's own work took (the headroom left is the period minus that). Values with no
    samples are ``None`` (strict JSON has no NaN).
    """

    def stat(values: np.ndarray, fn) -> float | None:
        return float(fn(values)) if len(values) else None

    periods = np.asarray(periods_s, dtype=np.float64)
    late = np.asarray([] if lateness_s is None else lateness_s, dtype=np.float64) * 1e3
    work = np.asarray([] if work_s is None else work_s, dtype=np.float64) * 1e3
    error = (periods - period_s) * 1e3
    return {
        "realtime": bool(realtime),
        "target_hz": 1.0 / period_s,
        "periods": int(len(periods)),
        "missed_deadlines": int(missed),
        "achieved_hz": stat(periods, lambda p: len(p) / p.sum()),
        "period_error_mean_ms": stat(error, np.mean),
        "period_error_std_ms": stat(error, np.std),
        "period_error_p99_ms": stat(np.abs(error), lambda e: np.percentile(e, 99)),
        "period_error_max_ms": stat(np.abs(error), np.max),
        "lateness_p99_ms": stat(late, lambda e: np.percentile(e, 99)),
        "lateness_max_ms": stat(late, np.max),
        "work_mean_ms": stat(work, np.mean),
        "work_p99_ms": stat(work, lambda e: np.percentile(e, 99)),
    }


# -- the recorder --------------------------------------------------------------------------
BUTTONS = {
    "save": "end the episode and save it",
    "discard": "drop the episode; the next one starts from a new scene",
    "rerecord": "drop the episode and record it again from the same scene",
    "quit": "drop the running episode and end the session (saved episodes are kept)",
}


@dataclass
class RecorderConfig:
    """A recording session.

    Attributes:
        root: dataset folder (a LeRobotDataset; created on the first saved episode).
        repo_id: lerobot repository id written into the dataset metadata.
        task: the task description stored with every frame (lerobot's ``task`` string).
        fps: control and recording rate (Hz); must equal the arm's control rate.
        max_episode_s: an episode that runs this long (s) ends and is saved.
        num_episodes: episodes to save before the session ends.
        cameras: camera names recorded as ``observation.images.<name>`` (needs a camera
            source, e.g. the simulated arm's ``render``).
        image_width, image_height: recorded image size (pixels).
        resume: add episodes to an existing dataset at ``root`` (indices continue).
        realtime: pace the loop at ``fps`` on the wall clock. A synchronous simulation
            may run unpaced (``False``) for fast dry runs; real arms need ``True``.
        spin_s: the last part (s) of each wait spent busy-waiting instead of sleeping.
        end_on_success: save the episode as soon as the task reports success.
        bias_sensor: zero the wrist sensor at the start of each episode (out of contact).
        seed: seeds the task's scene per episode (episode ``i`` draws from ``seed + i``).
        safety: limits of the safety layer, used when the arm given to ``Recorder`` is not
            already a ``SafeArm``.
    """

    root: str
    repo_id: str = "robopref/recording"
    task: str = "teleoperated demonstration"
    fps: int = 20
    max_episode_s: float = 30.0
    num_episodes: int = 10
    cameras: list[str] = field(default_factory=list)
    image_width: int = 128
    image_height: int = 96
    resume: bool = False
    realtime: bool = True
    spin_s: float = 0.0005
    end_on_success: bool = False
    bias_sensor: bool = True
    seed: int = 0
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        if not str(self.root).strip():
            raise ConfigError("record root is empty: set record.root=DIR (the dataset folder)")
        if not isinstance(self.fps, int) or isinstance(self.fps, bool) or not 1 <= self.fps <= 1000:
            raise ConfigError(
                f"record fps={self.fps!r} must be an integer in [1, 1000] Hz, e.g. 20"
            )
        if not 0 < self.max_episode_s < float("inf"):
            raise ConfigError(
                f"record max_episode_s={self.max_episode_s} must be positive seconds, e.g. 30"
            )
        if not isinstance(self.num_episodes, int) or self.num_episodes < 1:
            raise ConfigError(f"record num_episodes={self.num_episodes!r} must be >= 1")
        self.cameras = list(self.cameras)
        bad = [c for c in self.cameras if not str(c).isidentifier()]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(
                f"record cameras={self.cameras} must be distinct names made of letters, digits "
                "and '_', e.g. [front]"
            )
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 4096:
                raise ConfigError(f"record {name}={value!r} must be an integer in [1, 4096] px")
        if not 0 <= self.spin_s < 1.0 / self.fps:
            raise ConfigError(f"record spin_s={self.spin_s} must be in [0, 1/fps) s, e.g. 0.0005")
        if "/" not in self.repo_id:
            raise ConfigError(
                f"record repo_id={self.repo_id!r} must look like 'owner/name', e.g. "
                "'lab/peel_demos'"
            )
        if not isinstance(self.safety, SafetyConfig):
            raise ConfigError("record safety must be a SafetyConfig: build it at the edge")

    @property
    def max_steps(self) -> int:
        return max(1, round(self.max_episode_s * self.fps))


@dataclass
class _Attempt:
    outcome: str  # save | timeout | success | discard | rerecord | quit | protective_stop
    frames: dict[str, list] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def keep(self) -> bool:
        return self.outcome in ("save", "timeout", "success") and bool(self.frames.get("action"))


class Recorder:
    """Records teleoperated episodes into a LeRobotDataset (see the module docstring).

    Args:
        config: the session.
        arm: the arm; wrapped in ``SafeArm(arm, config.safety)`` unless it is one already.
        teleop: the operator's device (or a scripted one). ``observe(observation)`` gets the
            arm state each tick before ``read()``; devices with a
            ``set_environment_state(state (k,))`` method get the task's state first, and a
            ``begin_episode()`` method is called at each episode start.
        sensor: wrist force/torque sensor for ``observation.wrench``; ``None`` uses the arm's.
        task: optional object with ``reset(arm, rng)``, ``update(arm)``,
            ``environment_state() -> (k,)`` and ``metrics() -> dict`` (with ``success``).
        camera: ``camera(name, width, height) -> (H, W, 3) uint8`` image source.
        policy: optional ``robopref.policies.Policy`` that drives the arm: ``act(obs (1,
            obs_dim)) -> (1, 6)`` TCP delta (m, rad) on ``observation.state`` followed by the
            task's environment state (the layout ``load_policy_episodes`` returns). While the
            teleop's ``intervention`` flag is set the person's command is applied instead;
            each frame's ``intervention`` feature records who acted.
        progress: show a progress bar over saved episodes.
        log: where operator messages go (``print`` by default).

    Components are connected (and disconnected at the end) when they are not connected yet.
    """

    def __init__(
        self,
        config: RecorderConfig,
        arm,
        teleop,
        sensor=None,
        task=None,
        camera: Callable[[str, int, int], np.ndarray] | None = None,
        policy=None,
        progress: bool = False,
        log: Callable[[str], None] = print,
    ):
        if config.cameras and camera is None:
            raise ConfigError(
                f"record cameras={config.cameras} need a camera source: use hardware=sim "
                "(it renders) or set record.cameras=[]"
            )
        self.config = config
        self.arm = arm if isinstance(arm, SafeArm) else SafeArm(arm, config.safety)
        self.teleop, self.sensor, self.task, self.camera = teleop, sensor, task, camera
        self.policy = policy
        self.progress, self.log = progress, log
        self._say = log
        self.writer: DurableEpisodeWriter | None = None
        self.summary: dict = {}

    # ---------------------------------------------------------------- features
    def features(self) -> dict:
        """The lerobot feature spec of this session's frames (needs a connected arm)."""
        n = self.arm.n_joints
        axes = ["x", "y", "z", "rx", "ry", "rz"]
        wrench_names = ["fx", "fy", "fz", "tx", "ty", "tz"]
        state_names = (
            [f"q{i}" for i in range(n)]
            + [f"dq{i}" for i in range(n)]
            + [f"tcp_{a}" for a in axes]
            + wrench_names
        )
        feats = {
            "observation.state": {
                "dtype": "float32",
                "shape": (2 * n + 12,),
                "names": state_names,
            },
            "observation.wrench": {"dtype": "float32", "shape": (6,), "names": wrench_names},
            "action": {"dtype": "float32", "shape": (6,), "names": [f"d{a}" for a in axes]},
            "next.success": {"dtype": "bool", "shape": (1,), "names": None},
            # True where the person (teleop intervention) acted rather than the policy.
            "intervention": {"dtype": "bool", "shape": (1,), "names": None},
        }
        if getattr(self.teleop, "reports_intended_action", False):
            # What the operator meant each tick, also while a policy drove (DAgger labels).
            feats["action.intended"] = {
                "dtype": "float32",
                "shape": (6,),
                "names": [f"d{a}" for a in axes],
            }
        if self.task is not None:
            k = len(np.asarray(self.task.environment_state()).reshape(-1))
            feats["observation.environment_state"] = {
                "dtype": "float32",
                "shape": (k,),
                "names": None,
            }
        for cam in self.config.cameras:
            feats[f"observation.images.{cam}"] = {
                "dtype": "image",
                "shape": (self.config.image_height, self.config.image_width, 3),
                "names": ["height", "width", "channels"],
            }
        return feats

    def help_text(self) -> str:
        lines = ["teleop buttons:"]
        lines += [f"  {name:<9} {text}" for name, text in BUTTONS.items()]
        keys = getattr(self.teleop, "help_text", None)
        if callable(keys):
            lines.append(keys())
        return "\n".join(lines)

    # ---------------------------------------------------------------- one episode
    def _reset_task(self, seed: int) -> None:
        self.task.reset(self.arm, np.random.default_rng(seed))
        # A simulated reset teleports the arm; the safety layer's step limits count from the
        # last command, which must become the new pose or the first command is clipped toward
        # the old one. recover() re-reads it (and is a no-op otherwise while not stopped).
        sync = getattr(self.arm, "sync_reference", None)
        if callable(sync):
            sync()
        elif not self.arm.is_stopped:
            self.arm.recover()

    def _wrench(self, observation) -> tuple[np.ndarray, bool]:
        if self.sensor is None:
            return np.asarray(observation.wrench, dtype=np.float32), True
        reading = self.sensor.read()
        return np.asarray(reading.wrench, dtype=np.float32), reading.ok

    def record_episode(self, seed: int) -> _Attempt:
        """Run one episode from a fresh scene drawn with ``seed`` until a button, success,
        the time limit or a protective stop ends it."""
        cfg = self.config
        if self.task is not None:
            self._reset_task(seed)
        if self.sensor is not None and cfg.bias_sensor:
            self.sensor.bias()
        observe_env = getattr(self.teleop, "set_environment_state", None)
        begin = getattr(self.teleop, "begin_episode", None)
        if callable(begin):
            begin()
        if self.policy is not None:
            self.policy.begin_episodes(1)
        events_before = len(getattr(self.arm, "events", []))
        keys = ["observation.state", "observation.wrench", "action", "next.success", "intervention"]
        records_intended = getattr(self.teleop, "reports_intended_action", False)
        if records_intended:
            keys.append("action.intended")
        if self.task is not None:
            keys.append("observation.environment_state")
        keys += [f"observation.images.{c}" for c in cfg.cameras]
        frames: dict[str, list] = {k: [] for k in keys}
        previous = np.asarray(self.arm.get_observation().tcp_pose, dtype=np.float64)
        timer = LoopTimer(1.0 / cfg.fps, cfg.realtime, cfg.spin_s)
        outcome, interventions, intervention_steps, sensor_faults = "timeout", 0, 0, 0
        was_intervening = False
        started = time.monotonic()
        # A collector pause of a few ms in the middle of an episode is jitter the arm feels;
        # collect between episodes instead (the loop makes little cyclic garbage).
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(cfg.max_steps):
                timer.wait()
                observation = self.arm.get_observation()
                env_state = None
                if self.task is not None:
                    env_state = np.asarray(self.task.environment_state(), dtype=np.float32)
                    if observe_env is not None:
                        observe_env(env_state)
                self.teleop.observe(observation)
                command = self.teleop.read()
                pressed = set(command.buttons) & set(BUTTONS)
                if pressed:
                    # One press, one meaning: the most destructive wins when several arrive.
                    outcome = next(
                        b for b in ("quit", "rerecord", "discard", "save") if b in pressed
                    )
                    break
                if command.intervention:
                    intervention_steps += 1
                    interventions += not was_intervening
                was_intervening = bool(command.intervention)
                state = observation.state_vector()
                if self.policy is not None and not command.intervention:
                    policy_obs = state if env_state is None else np.concatenate([state, env_state])
                    delta = np.asarray(self.policy.act(policy_obs[None])[0], dtype=np.float64)
                else:
                    delta = np.asarray(command.delta_pose, dtype=np.float64)
                    if not command.enabled:
                        delta = np.zeros(6)  # the dead-man is released: keep streaming a hold
                try:
                    sent = np.asarray(self.arm.send_action(compose_delta(previous, delta)))
                except ProtectiveStop as exc:
                    self._say(f"protective stop: {exc}")
                    outcome = "protective_stop"
                    break
                if self.task is not None:
                    self.task.update(self.arm)
                success = bool(self.task.metrics().get("success", False)) if self.task else False
                wrench, healthy = self._wrench(observation)
                sensor_faults += not healthy
                frames["observation.state"].append(state)
                frames["intervention"].append(np.array([bool(command.intervention)]))
                if records_intended:
                    # A command without an intention of its own meant what it sent.
                    meant = command.delta_pose if command.intended is None else command.intended
                    frames["action.intended"].append(np.asarray(meant, dtype=np.float32))
                frames["observation.wrench"].append(wrench)
                frames["action"].append(pose_delta(previous, sent).astype(np.float32))
                frames["next.success"].append(np.array([success]))
                if env_state is not None:
                    frames["observation.environment_state"].append(env_state)
                for cam in cfg.cameras:
                    image = self.camera(cam, cfg.image_width, cfg.image_height)
                    frames[f"observation.images.{cam}"].append(np.asarray(image, dtype=np.uint8))
                previous = sent.astype(np.float64)
                timer.done()
                if success and cfg.end_on_success:
                    outcome = "success"
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
        events = getattr(self.arm, "events", [])[events_before:]
        meta = {
            "outcome": outcome,
            "seed": int(seed),
            "length": len(frames["action"]),
            "duration_s": time.monotonic() - started,
            "interventions": int(interventions),
            "intervention_steps": int(intervention_steps),
            "safety_clips": sum(e.kind == "clip" for e in events),
            "sensor_faults": int(sensor_faults),
            "timing": timer.stats(),
            "periods_s": np.diff(timer.starts),
            "lateness_s": np.asarray(timer.lateness),
            "work_s": np.asarray(timer.work),
            "missed": timer.missed,
        }
        if self.task is not None:
            meta["metrics"] = {k: _plain(v) for k, v in self.task.metrics().items()}
        return _Attempt(outcome, frames, meta)

    # ---------------------------------------------------------------- the session
    def run(self) -> dict:
        """Record until ``num_episodes`` are saved or the operator quits; returns the
        session summary (also stored in ``self.summary``)."""
        cfg = self.config
        with contextlib.ExitStack() as stack:
            for device, up, down, on in (
                (self.arm, "connect", "disconnect", "is_connected"),
                (self.teleop, "connect", "disconnect", "is_connected"),
                (self.sensor, "start", "stop", "is_running"),
            ):
                if device is not None and not getattr(device, on):
                    getattr(device, up)()
                    stack.callback(getattr(device, down))
            self._check_rate()
            if self.task is not None:
                self._reset_task(cfg.seed)
            self._check_policy()
            self.writer = DurableEpisodeWriter(
                cfg.root, cfg.repo_id, cfg.fps, self.features(), resume=cfg.resume
            )
            if cfg.resume and self.writer.created:
                self.log(f"resume: no dataset at {self.writer.root} yet, starting a new one")
            elif cfg.resume:
                self.log(f"resume: {self.writer.num_episodes} episodes at {self.writer.root}")
            return self._session()

    def _check_rate(self) -> None:
        arm_hz = 1.0 / self.arm.control_period_s
        if abs(arm_hz - self.config.fps) > 0.01 * self.config.fps:
            raise ConfigError(
                f"record fps={self.config.fps} but the arm runs at {arm_hz:.4g} Hz: set the "
                f"arm's control_hz to {self.config.fps} (or record.fps to match the arm)"
            )

    def _check_policy(self) -> None:
        expected = getattr(self.policy, "obs_dim", None)
        if expected is None:
            return
        dims = 2 * self.arm.n_joints + 12
        if self.task is not None:
            dims += len(np.asarray(self.task.environment_state()).reshape(-1))
        if expected != dims:
            raise ConfigError(
                f"the policy takes {expected}-dim observations but this arm and task give {dims}: "
                "use a policy trained on recordings of this setup"
            )

    def _session(self) -> dict:
        cfg, writer = self.config, self.writer
        counts = {"saved": 0, "discarded": 0, "rerecorded": 0, "stopped": 0}
        periods, lateness, work, missed, successes, saved_meta = [], [], [], 0, [], []
        quit_requested = False
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.num_episodes, desc="episodes saved", unit="ep")
            self._say = bar.write  # messages above the bar, not through it
        attempt_seed = cfg.seed + writer.num_episodes
        started = time.monotonic()
        try:
            while counts["saved"] < cfg.num_episodes:
                try:
                    attempt = self.record_episode(attempt_seed)
                except KeyboardInterrupt:
                    # Ctrl-C is the operator's emergency quit: the running episode is dropped,
                    # the saved ones are already durable.
                    self._say("interrupted: the running episode was dropped")
                    quit_requested = True
                    break
                meta = attempt.meta
                periods.append(meta.pop("periods_s"))
                lateness.append(meta.pop("lateness_s"))
                work.append(meta.pop("work_s"))
                missed += meta.pop("missed")
                if attempt.keep:
                    index = writer.save_episode(
                        {k: np.stack(v) for k, v in attempt.frames.items()}, cfg.task, meta
                    )
                    counts["saved"] += 1
                    saved_meta.append(meta)
                    if "metrics" in meta:
                        successes.append(bool(meta["metrics"].get("success", False)))
                    if bar is not None:
                        bar.update(1)
                    self._say(f"episode {index} saved ({meta['length']} frames, {attempt.outcome})")
                elif attempt.outcome == "rerecord":
                    counts["rerecorded"] += 1
                    self._say("episode dropped: recording it again")
                    continue  # same seed: the same scene again
                elif attempt.outcome == "protective_stop":
                    counts["stopped"] += 1
                    self._say(
                        "episode dropped after a protective stop: clear the cause, then run "
                        "again with --resume"
                    )
                    quit_requested = True
                elif attempt.outcome == "quit":
                    quit_requested = True
                else:
                    counts["discarded"] += 1
                    self._say("episode discarded")
                attempt_seed += 1
                if quit_requested:
                    break
        finally:
            if bar is not None:
                bar.close()
            self._say = self.log
        all_periods = np.concatenate(periods) if periods else np.zeros(0)
        all_lateness = np.concatenate(lateness) if lateness else np.zeros(0)
        all_work = np.concatenate(work) if work else np.zeros(0)
        self.summary = {
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
            "timing": timing_stats(
                all_periods, 1.0 / cfg.fps, missed, cfg.realtime, all_lateness, all_work
            ),
        }
        return self.summary


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


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
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def load_policy_episodes(root: str | Path, action_key: str = "action") -> list:
    """The episodes of a recording with policy observations: ``observation.state`` followed by
    ``observation.environment_state`` when the recording has one (for ``task=peel`` that is
    ``PeelEnv``'s ``(35,)`` observation), ready for ``train_bc``.

    ``action_key="action.intended"`` takes the operator's intended commands as the actions
    (recorded by teleops with ``reports_intended_action``, e.g. a scripted operator with
    execution noise): the labels of DART / DAgger-style imitation."""
    import dataclasses

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robopref.data import load_episodes

    episodes = load_episodes(root)
    ds = LeRobotDataset(f"local/{Path(root).name}", root=root)
    if action_key not in ds.features or tuple(ds.features[action_key]["shape"]) != (6,):
        available = [k for k in ds.features if k.startswith("action")]
        raise ConfigError(
            f"recording {root} has no 6-D '{action_key}' feature (it has {available}): record "
            "with a teleop that reports intended actions, or use action_key='action'"
        )
    table = ds.hf_dataset.with_format("numpy")
    index = np.asarray(table["episode_index"])
    env = None
    if "observation.environment_state" in ds.features:
        env = np.asarray(table["observation.environment_state"], dtype=np.float32)
    actions = np.asarray(table[action_key], dtype=np.float32)
    replaced = []
    for i, ep in enumerate(episodes):
        rows = index == i
        observations = ep.observations if env is None else np.concatenate(
            [ep.observations, env[rows]], 1
        )
        replaced.append(dataclasses.replace(ep, observations=observations, actions=actions[rows]))
    return replaced
