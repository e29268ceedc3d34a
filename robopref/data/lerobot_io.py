"""Store and reload episodes as a LeRobotDataset (v3.0) through lerobot's own API.

Layout written by :func:`save_episodes`::

    ROOT/                     a normal LeRobotDataset folder (lerobot's tools read it)
      meta/info.json ...
      data/chunk-000/...
      robopref.json           our sidecar: format version + per-episode metadata

Frame features: ``observation.state`` (obs_dim,), ``action`` (act_dim,), ``next.reward`` (1,),
``next.success`` (1,), optionally ``observation.wrench`` (6,) in N and N·m, and
``observation.images.<camera>`` (H, W, 3).

The dataset is written into a temporary sibling folder and renamed into place only after
lerobot's ``finalize()``, so a crash never leaves a half-written dataset at ``ROOT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from robopref.data.episode import Episode
from robopref.errors import DatasetError

FORMAT_VERSION = 1
SIDECAR = "robopref.json"


def _quiet_datasets() -> None:
    # HF datasets prints a progress bar per saved episode; our own bar is the one to watch.
    import datasets

    datasets.disable_progress_bars()


def _features(example: Episode) -> dict:
    feats = {
        "observation.state": {"dtype": "float32", "shape": (example.obs_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (example.act_dim,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    if example.wrenches is not None:
        feats["observation.wrench"] = {
            "dtype": "float32",
            "shape": (6,),
            "names": ["fx", "fy", "fz", "tx", "ty", "tz"],
        }
    for cam, frames in example.images.items():
        feats[f"observation.images.{cam}"] = {
            "dtype": "image",
            "shape": tuple(frames.shape[1:]),
            "names": ["height", "width", "channels"],
        }
    return feats


def _check_compatible(episodes: list[Episode]) -> None:
    first = episodes[0]
    for i, ep in enumerate(episodes):
        same = (
            ep.obs_dim == first.obs_dim
            and ep.act_dim == first.act_dim
            and (ep.wrenches is None) == (first.wrenches is None)
            and set(ep.images) == set(first.images)
        )
        if not same:
            raise ValueError(
                f"episode {i} has other features than episode 0; one dataset holds one "
                "kind of episode: save them into separate folders"
            )


def save_episodes(
    episodes: list[Episode],
    root: str | Path,
    fps: int,
    repo_id: str = "robopref/episodes",
    overwrite: bool = False,
    use_videos: bool = False,
) -> Path:
    """Write ``episodes`` as a new LeRobotDataset at ``root`` (atomically) and return ``root``."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not episodes:
        raise ValueError("save_episodes needs at least one episode")
    if root.exists() and not overwrite:
        raise DatasetError(
            f"dataset folder {root} already exists: choose another folder or pass overwrite=True"
        )
    _check_compatible(episodes)
    _quiet_datasets()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    target = staging / "dataset"
    ds = None
    try:
        ds = LeRobotDataset.create(
            repo_id, fps=fps, features=_features(episodes[0]), root=target, use_videos=use_videos
        )
        for ep in episodes:
            for t in range(len(ep)):
                frame = {
                    "observation.state": ep.observations[t],
                    "action": ep.actions[t],
                    "next.reward": ep.rewards[t : t + 1],
                    "next.success": ep.successes[t : t + 1],
                    "task": ep.task or "unspecified",
                }
                if ep.wrenches is not None:
                    frame["observation.wrench"] = ep.wrenches[t]
                for cam, frames in ep.images.items():
                    frame[f"observation.images.{cam}"] = frames[t]
                ds.add_frame(frame)
            ds.save_episode()
        ds.finalize()
        sidecar = {
            "format_version": FORMAT_VERSION,
            "episodes": [{"task": ep.task, "meta": ep.meta} for ep in episodes],
        }
        (target / SIDECAR).write_text(json.dumps(sidecar, indent=1, default=_json_default))
        if root.exists():
            shutil.rmtree(root)
        os.replace(target, root)
    except BaseException:
        if ds is not None:
            # lerobot's writer flushes buffered metadata when garbage-collected, which would
            # recreate files in the staging folder after we remove it: close it first.
            for close in (ds.writer.finalize, ds.meta.finalize):
                with contextlib.suppress(Exception):
                    close()
            ds = None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"episode meta value {value!r} is not JSON-serialisable")


def load_episodes(root: str | Path) -> list[Episode]:
    """Read every episode of the LeRobotDataset at ``root``.

    Datasets written by other tools load too when they have ``observation.state`` and
    ``action``; missing rewards read as NaN and missing success flags as False.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(
            f"{root} is not a LeRobotDataset folder (no meta/info.json): check the path, "
            "or record/convert a dataset there first"
        )
    sidecar = _read_sidecar(root)
    _quiet_datasets()
    try:
        ds = LeRobotDataset(f"local/{root.name}", root=root)
        table = ds.hf_dataset.with_format("numpy")
        columns = set(table.column_names)
        for needed in ("observation.state", "action", "episode_index"):
            if needed not in columns:
                raise DatasetError(
                    f"dataset {root} has no '{needed}' feature: robopref needs state and action "
                    "per frame"
                )
        index = np.asarray(table["episode_index"])
        obs = np.asarray(table["observation.state"], dtype=np.float32)
        act = np.asarray(table["action"], dtype=np.float32)
        n = len(index)
        rew = (
            np.asarray(table["next.reward"], dtype=np.float32).reshape(n)
            if "next.reward" in columns
            else np.full(n, np.nan, np.float32)
        )
        suc = (
            np.asarray(table["next.success"]).reshape(n).astype(bool)
            if "next.success" in columns
            else np.zeros(n, bool)
        )
        wrench = (
            np.asarray(table["observation.wrench"], dtype=np.float32)
            if "observation.wrench" in columns
            else None
        )
        image_keys = [k for k in ds.meta.camera_keys]
    except DatasetError:
        raise
    except Exception as exc:  # lerobot/pyarrow raise many types for a damaged folder
        raise DatasetError(
            f"dataset {root} could not be read ({type(exc).__name__}: {exc}); it may be "
            "corrupt or unfinished (written without finalize()): re-record or restore it"
        ) from exc

    episodes = []
    for ep_idx in np.unique(index):
        rows = np.flatnonzero(index == ep_idx)
        images = {}
        for key in image_keys:
            frames = [np.asarray(ds[int(r)][key]) for r in rows]
            # lerobot returns CHW float in [0, 1]; Episode stores HWC uint8.
            images[key.removeprefix("observation.images.")] = np.stack(
                [(np.moveaxis(f, 0, -1) * 255).round().astype(np.uint8) for f in frames]
            )
        info = sidecar["episodes"][int(ep_idx)] if sidecar else {}
        episodes.append(
            Episode(
                observations=obs[rows],
                actions=act[rows],
                rewards=rew[rows],
                successes=suc[rows],
                task=info.get("task", ""),
                wrenches=None if wrench is None else wrench[rows],
                images=images,
                meta=info.get("meta", {}),
            )
        )
    return episodes


def _read_sidecar(root: Path) -> dict | None:
    path = root / SIDECAR
    if not path.exists():
        return None
    try:
        sidecar = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}): restore it or delete it") from exc
    version = sidecar.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{path} has format version {version}, this robopref reads {FORMAT_VERSION}: "
            "use the robopref release that wrote it"
        )
    return sidecar
