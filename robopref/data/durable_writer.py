"""Append episodes to a LeRobotDataset (v3.0) so that each save is atomic, durable, and costs
the same at any dataset size.

lerobot 0.6.1 appends episodes to a Parquet file that only ``finalize()`` closes and rewrites
``meta/info.json`` and ``meta/stats.json`` in place (huggingface/lerobot#3522: a killed
recorder loses the open file), and its ``resume`` re-reads every episode's metadata (a save
then costs time linear in the dataset's size). Here:

- each episode is written as new files of its own in lerobot's layout (its frames, its
  ``meta/episodes`` row, one video per camera; ``robopref.data.lerobot_layout``), never
  reopened, and the dataset-level files (info, stats, tasks, the ``robopref.json`` sidecar)
  are rewritten whole; the running stats and counters live in memory;
- the live dataset folder is never written in place. A *twin* folder beside it
  (``.<name>.staging-<pid>``) holds the previous version, its unchanging files hard links of
  the live ones. A save brings the twin up to date (hard links to the files the last save
  added: a constant number), writes the new episode into it, ``fsync``s what changed, and
  swaps twin and live folder in one atomic ``renameat2(RENAME_EXCHANGE)``; the swapped-out
  folder is the next save's twin. A reader, or a process killed at any instant, sees the
  dataset before the episode or after it, and every file lerobot reads agrees.

Nothing a save does depends on the number of episodes already saved, except what is appended
to the sidecar (O(1) too: the twin's sidecar is extended in place, see ``_write_sidecar``).
Opening a dataset to resume, and the first save of a session, cost one pass over its files
(the twin is built by hard-linking the whole folder). Where the exchange is not available
(not Linux, or a filesystem without it) two renames do the swap; a kill between them leaves
no folder for an instant, and the next writer on that root puts the complete new version in
place. ``close()`` removes the twin; one left by a killed session is removed by the next
writer on that root.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robopref.data.lerobot_io import (
    FORMAT_VERSION,
    READABLE_VERSIONS,
    SIDECAR,
    _json_default,
    _quiet_datasets,
    _v1_id,
    new_dataset_id,
)
from robopref.data.lerobot_layout import LerobotMeta
from robopref.errors import DatasetError

__all__ = ["DurableEpisodeWriter"]

# Files written once and never changed (one per episode): hard-linked into the twin. The
# rest (info, stats, tasks, the sidecar) is rewritten whole by every save.
_IMMUTABLE_DIRS = ("data", "meta/episodes", "videos")
_STAGING_MARK = ".staging-"
_PREVIOUS_MARK = ".previous-"
# Between saves the twin's sidecar goes by this name, so tools that find datasets by their
# sidecar (the labelling server's resolver) never take the twin for the dataset.
_IDLE_SIDECAR = ".robopref.json.twin"
# renameat2 errors meaning "no atomic exchange here" (another OS, or a filesystem without it).
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


# -- file system primitives ------------------------------------------------------------------
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


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        os.unlink(dst)
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(src, dst)  # a file system without hard links: correct, only slower


def _total_episodes(folder: Path) -> int:
    try:
        return int(json.loads((folder / "meta" / "info.json").read_text())["total_episodes"])
    except (OSError, ValueError, KeyError):
        return -1


def _import_writer_libraries() -> None:
    """Import lerobot and the codecs now (~10 s the first time), not at the first save."""
    import av  # noqa: F401
    import lerobot.datasets.compute_stats  # noqa: F401
    import lerobot.datasets.feature_utils  # noqa: F401
    import lerobot.datasets.io_utils  # noqa: F401
    import lerobot.datasets.video_utils  # noqa: F401
    import pandas  # noqa: F401

    _quiet_datasets()


# -- the dataset writer ----------------------------------------------------------------------
class DurableEpisodeWriter:
    """Append episodes to the LeRobotDataset at ``root``; each ``save_episode`` is atomic and
    durable on its own and costs the same at any dataset size (see the module docstring).

    Args:
        root: dataset folder (created on the first saved episode).
        repo_id: lerobot repository id (kept for the caller; lerobot's files do not store it).
        fps: frames per second (the control rate, Hz).
        features: lerobot feature spec (``{"name": {"dtype", "shape", "names"}}``); a camera
            of ``dtype: "video"`` is stored as one AV1 MP4 per episode, ``"image"`` as PNG
            frames inside the Parquet file.
        resume: append to an existing dataset at ``root`` (features must match); without it
            an existing ``root`` is an error.

    Constructing one imports lerobot and the codecs (seconds, once per process). Call
    ``close()`` (or use it as a context manager) when done: it removes the twin folder.
    """

    def __init__(
        self, root: str | Path, repo_id: str, fps: int, features: dict, resume: bool = False
    ):
        _import_writer_libraries()
        self.root = Path(root).absolute()
        self.repo_id, self.fps, self.features = repo_id, int(fps), features
        self._finish_interrupted_swap()
        self._remove_stale_staging()
        self.num_frames = 0
        self._entries: list[bytes] = []  # each episode's sidecar entry, serialised once
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
            self._meta = LerobotMeta.load(self.root)
        else:
            self._meta = LerobotMeta.create(self.fps, features)
        self.start_episodes = self.num_episodes
        # Named per writer: two writers of one process never share a twin.
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._twin = self.root.with_name(f".{self.root.name}{_STAGING_MARK}{tag}")
        self._twin_ready = False
        self._twin_lag: list[Path] = []  # files the last save added, which the twin lacks
        self._unflushed: set[Path] = set()  # twin paths to fsync before the next swap
        # What each folder's sidecar body holds: entries and byte length (None: unknown).
        self._live_sidecar: tuple[int, int] | None = None
        self._twin_sidecar: tuple[int, int] | None = None
        self._live_tasks = self._twin_tasks = -1  # tasks in each folder's tasks.parquet
        # Asked right before each swap; False abandons the save (the twin is discarded).
        self.may_commit: Callable[[], bool] | None = None

    @property
    def num_episodes(self) -> int:
        return len(self._entries)

    def __enter__(self) -> DurableEpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the twin folder (the dataset itself is complete after every save)."""
        self._discard_twin()

    # ---------------------------------------------------------------- opening
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
        # The swap's new version is the staged folder with the most episodes (an older twin,
        # left by another writer of this process, has fewer).
        newest = max(staged, key=_total_episodes, default=previous[0])
        os.rename(newest, self.root)

    def _remove_stale_staging(self) -> None:
        # A killed session leaves its twin (or, mid-fallback, the swapped-out old version).
        if self.root.parent.is_dir():
            for mark in (_STAGING_MARK, _PREVIOUS_MARK):
                for stale in self.root.parent.glob(f".{self.root.name}{mark}*"):
                    shutil.rmtree(stale, ignore_errors=True)

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
                hint = ""
                if {recorded.get(key, ("",))[0], spec["dtype"]} == {"image", "video"}:
                    hint = " (record.video picks video or PNG cameras)"
                raise DatasetError(
                    f"cannot resume {self.root}: feature '{key}' is {recorded.get(key)} there "
                    f"but {(spec['dtype'], list(spec['shape']))} in this session{hint}: resume "
                    "with the same arm, sensor, task and cameras, or record into a new root"
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
        self._entries = [self._entry(i, e) for i, e in enumerate(sidecar["episodes"])]
        self.num_frames = int(info["total_frames"])
        # A version-1 recording keeps the id its episodes were already named by.
        self.dataset_id = sidecar.get("dataset_id") or _v1_id(self.root)

    # ---------------------------------------------------------------- the twin
    def prepare(self) -> None:
        """Build the twin folder now (for a resumed dataset, one pass over its files) rather
        than in the first save; nothing is written to the dataset itself."""
        if self.root.exists():
            self._ready_twin()

    def _ready_twin(self) -> None:
        """Make the twin folder the live version's copy (its files hard links); the twin's
        paths whose entries or contents must be flushed before the swap go to
        ``_unflushed``."""
        if self._twin_ready and self._twin.is_dir():
            for rel in self._twin_lag:
                _link(self.root / rel, self._twin / rel)
            self._unflushed |= {(self._twin / rel).parent for rel in self._twin_lag}
            self._twin_lag = []
            return
        shutil.rmtree(self._twin, ignore_errors=True)
        touched = self._unflushed = set()
        for dirpath, _, filenames in os.walk(self.root):
            src_dir = Path(dirpath)
            rel_dir = src_dir.relative_to(self.root)
            (self._twin / rel_dir).mkdir(parents=True, exist_ok=True)
            touched.add(self._twin / rel_dir)
            immutable = any(
                rel_dir == Path(d) or Path(d) in rel_dir.parents for d in _IMMUTABLE_DIRS
            )
            for name in filenames:
                if immutable:
                    _link(src_dir / name, self._twin / rel_dir / name)
                elif not (rel_dir == Path(".") and name == SIDECAR):  # the save rewrites it
                    shutil.copy2(src_dir / name, self._twin / rel_dir / name)
                    touched.add(self._twin / rel_dir / name)
        self._twin_lag, self._twin_ready = [], True
        self._twin_sidecar, self._twin_tasks = None, -1

    def _discard_twin(self) -> None:
        shutil.rmtree(self._twin, ignore_errors=True)
        self._twin_ready, self._twin_lag, self._unflushed = False, [], set()

    def _swap(self, staging: Path) -> None:
        """Put the complete ``staging`` folder at ``root`` atomically; the old version ends
        up at ``staging`` (the next twin) or nowhere (a new dataset)."""
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
            os.rename(previous, staging)

    # ---------------------------------------------------------------- the sidecar
    def _entry(self, index: int, entry: dict) -> bytes:
        text = json.dumps(entry, default=_json_default)
        return (("\n  " if index == 0 else ",\n  ") + text).encode()

    def _sidecar_head(self) -> bytes:
        head = {
            "format_version": FORMAT_VERSION,
            "dataset_id": self.dataset_id,
            "state_dim": self._state_dim(),
        }
        inner = json.dumps(head, indent=1)[:-2]  # without the closing "\n}"
        return (inner + ',\n "episodes": [').encode()

    def _write_sidecar(self, folder: Path, entries: list[bytes], frames: int, known) -> tuple:
        """The ``robopref.json`` of ``entries`` into ``folder``: the sidecar format of
        ``lerobot_io.sidecar_payload`` (version 2), laid out with the episode list before the
        ``written`` counts, one episode per line, so the twin's copy, which lacks the last
        save's episode, is extended in place (``known``: entries and byte length of its body).
        Returns the new body's ``(entries, length)``."""
        tail = json.dumps({"total_episodes": len(entries), "total_frames": int(frames)})
        tail_bytes = f'\n ],\n "written": {tail}\n}}\n'.encode()
        path = folder / SIDECAR
        with open(path, "r+b" if known and path.is_file() else "wb") as handle:
            if known and path.is_file():
                count, length = known
                handle.seek(length)
            else:
                count, length = 0, handle.write(self._sidecar_head())
            for entry in entries[count:]:
                length += handle.write(entry)
            handle.write(tail_bytes)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return len(entries), length

    def _state_dim(self) -> int | None:
        if "observation.environment_state" not in self.features:
            return None
        return int(self.features["observation.state"]["shape"][0])

    # ---------------------------------------------------------------- saving
    def save_episode(self, frames: dict[str, np.ndarray], task: str, meta: dict) -> int:
        """Append one episode and make it durable; returns its episode index.

        Args:
            frames: feature name -> ``(T, *shape)`` array, one per feature in ``features``
                (images ``(T, H, W, 3)`` uint8).
            task: the lerobot task string of every frame.
            meta: JSON-serialisable episode metadata for the ``robopref.json`` sidecar.
        """
        missing = sorted(set(self.features) - set(frames))
        if missing:
            raise ValueError(f"episode frames lack feature(s) {', '.join(missing)}")
        length = len(next(iter(frames.values())))
        if length == 0 or any(len(frames[k]) != length for k in self.features):
            raise ValueError("episode features must share one non-zero length T")
        index = self.num_episodes
        # Serialised first: metadata that is not JSON fails before anything is written.
        entries = [*self._entries, self._entry(index, {"task": task, "meta": meta})]
        fresh = not self.root.exists()
        staging = self._twin
        try:
            if fresh:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                self._twin_sidecar, self._twin_tasks = None, -1
                self._unflushed = set()
            else:
                self._ready_twin()
                idle = staging / _IDLE_SIDECAR
                if idle.is_file():
                    os.rename(idle, staging / SIDECAR)
            touched = self._unflushed
            written = self._meta.write_episode(staging, {k: frames[k] for k in self.features}, task)
            after = written.meta
            changed = [staging / rel for rel in written.files]
            changed += after.write_dataset_files(
                staging, tasks=self._twin_tasks != len(after.tasks)
            )
            sidecar = self._write_sidecar(
                staging, entries, self.num_frames + length, self._twin_sidecar
            )
            for path in changed + [p for p in touched if p.is_file()]:
                _fsync_path(path)
            folders = {p.parent for p in changed} | {p for p in touched if p.is_dir()}
            folders |= {a for p in folders for a in p.parents if staging in a.parents}
            for folder in sorted(folders | {staging}, key=lambda p: -len(p.parts)):
                _fsync_path(folder)  # deepest first: new entries, then the folders naming them
            if self.may_commit is not None and not self.may_commit():
                raise DatasetError(f"episode {index} was not saved: its recorder has gone")
            self._swap(staging)
        except BaseException:
            self._discard_twin()  # in an unknown state: the next save rebuilds it
            raise
        # Swapped in: the old live folder is now the twin (none for a new dataset).
        self._unflushed = set()
        self._meta, self._entries = after, entries
        self.num_frames += length
        self._twin_ready = not fresh
        self._twin_lag = list(written.files)
        self._twin_sidecar, self._live_sidecar = self._live_sidecar, sidecar
        self._twin_tasks, self._live_tasks = self._live_tasks, len(after.tasks)
        if not fresh:
            with contextlib.suppress(OSError):
                os.rename(staging / SIDECAR, staging / _IDLE_SIDECAR)
        _fsync_path(self.root.parent)  # the swap itself, made durable
        return index
