"""Append episodes to a LeRobotDataset (v3.0) so that each save is atomic and durable.

lerobot 0.6.1 appends episodes to a Parquet file that only ``finalize()`` closes, and rewrites
``meta/info.json`` and ``meta/stats.json`` in place on every ``save_episode()``
(huggingface/lerobot#3522: a killed recorder loses the open file). Here the dataset folder is
never written in place. Each saved episode is written into a staging clone of the dataset
(finalized Parquet files are hard-linked, never rewritten: on ``resume`` lerobot opens new
data and episode-metadata files), finalized, flushed to disk with ``fsync``, and then swapped
with the live folder in one atomic ``renameat2(RENAME_EXCHANGE)``. A reader, or a process
killed at any instant, sees either the dataset before the episode or after it. Where the
exchange is not available (not Linux, or a filesystem without it) two renames do the swap; a
kill between them leaves no folder for an instant, and the next writer on that root
(``--resume``) puts the complete new version in place. The cost is one Parquet file per
episode (lerobot reads those like any multi-file dataset) and a save time that grows slowly
with the number of episodes (lerobot's ``resume`` re-reads the episode index).

Each episode's task and metadata go into the dataset folder's ``robopref.json`` sidecar
(``SIDECAR``), written into the same staging clone and so swapped in with its episode.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np

from robopref.data.atomic import write_json_atomic
from robopref.data.lerobot_io import (
    READABLE_VERSIONS,
    SIDECAR,
    _json_default,
    _quiet_datasets,
    _v1_id,
    new_dataset_id,
    sidecar_payload,
)
from robopref.errors import DatasetError

__all__ = ["DurableEpisodeWriter"]

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
    write_json_atomic(path, payload, default=_json_default)


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
        # The dataset's own id, kept for its whole life (a resumed session keeps it too).
        self.dataset_id = new_dataset_id()
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
        if sidecar is None or sidecar.get("format_version") not in READABLE_VERSIONS:
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
        # A version-1 recording keeps the id its episodes were already named by.
        self.dataset_id = sidecar.get("dataset_id") or _v1_id(self.root)

    def _state_dim(self) -> int | None:
        if "observation.environment_state" not in self.features:
            return None
        return int(self.features["observation.state"]["shape"][0])

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
                staging / SIDECAR,
                sidecar_payload(
                    self.dataset_id, episodes_meta, self.num_frames + length, self._state_dim()
                ),
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
