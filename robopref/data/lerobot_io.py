"""Store and reload episodes as a LeRobotDataset (v3.0) through lerobot's own API.

Layout written by :func:`save_episodes`::

    ROOT/                     a normal LeRobotDataset folder (lerobot's tools read it)
      meta/info.json ...
      data/chunk-000/...
      robopref.json           our sidecar: format version + per-episode metadata

Frame features: ``observation.state`` (the robot's own state: the first ``state_dim``
entries of the policy observation), ``observation.environment_state`` (the rest: objects,
goal; absent when ``state_dim`` covers everything), ``action`` (act_dim,), ``next.reward``
(1,), ``next.success`` (1,), optionally ``observation.wrench`` (6,) in N and N·m,
``observation.images.<camera>`` (H, W, 3), and ``sim.state`` (S,) float64: the simulator's
state before the action, from which the labelling server re-renders the frame (named outside
``observation.*`` so lerobot's trainers never take it as a policy input), and ``next.metrics``
(K,): the task's per-step metrics after the action, with their names as the feature's
``names`` (Peel-v0's removed fraction gained, peak force in N, ...; absent on Meta-World).
lerobot's own trainers need an image or an environment state among the inputs, which the
split provides.

The sidecar (format version 2) carries the dataset's own ``dataset_id`` (a UUID): episode
``i`` of the dataset is named ``"<dataset_id>:<i>"`` wherever the folder moves. It also
records the episode and frame counts it was written with; a dataset edited afterwards by
another tool (lerobot's editors renumber episodes) no longer matches them and loads as a
new dataset, with a new id, so old labels cannot silently point at other frames. Version-1
sidecars (no id) load with an id derived from their bytes, the same in every process; ``robopref
migrate-dataset DIR`` writes that id into a version-2 sidecar.

The dataset is written into a temporary sibling folder and renamed into place only after
lerobot's ``finalize()``, so a crash never leaves a half-written dataset at ``ROOT``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np

from robopref.data.atomic import write_json_atomic
from robopref.data.episode import Episode, assign_ids
from robopref.data.video_files import camera_frames
from robopref.errors import DatasetError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SIDECAR = "robopref.json"
# The simulator state per frame: outside ``observation.*``, so no lerobot policy reads it.
SIM_STATE_KEY = "sim.state"
# The task's per-step metrics after each action (``Episode.metrics``), named by the feature's
# ``names``; outside ``observation.*`` for the same reason.
METRICS_KEY = "next.metrics"
# Derived ids (version-1 sidecars, datasets edited by other tools) live in their own namespace.
_DERIVED_ID_NAMESPACE = uuid.UUID("5d1f0e8a-7c7e-4a59-9d39-2f4a3d0c9b61")


def new_dataset_id() -> str:
    return str(uuid.uuid4())


def sidecar_payload(
    dataset_id: str, episodes_meta: list[dict], total_frames: int, state_dim: int | None
) -> dict:
    """The ``robopref.json`` content for a dataset of ``len(episodes_meta)`` episodes."""
    return {
        "format_version": FORMAT_VERSION,
        "dataset_id": dataset_id,
        "state_dim": state_dim,
        "written": {"total_episodes": len(episodes_meta), "total_frames": int(total_frames)},
        "episodes": episodes_meta,
    }


def _quiet_datasets() -> None:
    # HF datasets prints a progress bar per saved episode; our own bar is the one to watch.
    import datasets

    datasets.disable_progress_bars()


def _features(example: Episode, state_dim: int | None) -> dict:
    split = state_dim is not None and 0 < state_dim < example.obs_dim
    feats = {
        "observation.state": {
            "dtype": "float32",
            "shape": (state_dim if split else example.obs_dim,),
            "names": None,
        },
        "action": {"dtype": "float32", "shape": (example.act_dim,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    if split:
        feats["observation.environment_state"] = {
            "dtype": "float32",
            "shape": (example.obs_dim - state_dim,),
            "names": None,
        }
    if example.wrenches is not None:
        feats["observation.wrench"] = {
            "dtype": "float32",
            "shape": (6,),
            "names": ["fx", "fy", "fz", "tx", "ty", "tz"],
        }
    if example.sim_states is not None:
        feats[SIM_STATE_KEY] = {
            "dtype": "float64",
            "shape": (example.sim_states.shape[1],),
            "names": None,
        }
    if example.metrics is not None:
        feats[METRICS_KEY] = {
            "dtype": "float32",
            "shape": (len(example.metric_names),),
            "names": list(example.metric_names),
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
            and _sim_width(ep) == _sim_width(first)
            and (ep.metrics is None) == (first.metrics is None)
            and ep.metric_names == first.metric_names
        )
        if not same:
            raise ValueError(
                f"episode {i} has other features than episode 0; one dataset holds one "
                "kind of episode: save them into separate folders"
            )


def _sim_width(episode: Episode) -> int | None:
    return None if episode.sim_states is None else episode.sim_states.shape[1]


def save_episodes(
    episodes: list[Episode],
    root: str | Path,
    fps: int,
    repo_id: str = "robopref/episodes",
    overwrite: bool = False,
    use_videos: bool = False,
    state_dim: int | None = None,
) -> Path:
    """Write ``episodes`` as a new LeRobotDataset at ``root`` (atomically) and return ``root``.

    ``state_dim``: the observation's first ``state_dim`` entries are stored as
    ``observation.state``, the rest as ``observation.environment_state`` (``None``: all of it
    as ``observation.state``). Episodes that already carry one ``dataset_id`` with indices
    ``0..n-1`` keep it; otherwise they are given a new one (in place), as they are given
    lerobot's global frame indices.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not episodes:
        raise ValueError("save_episodes needs at least one episode")
    if root.exists() and not overwrite:
        raise DatasetError(
            f"dataset folder {root} already exists: choose another folder or pass overwrite=True"
        )
    _check_compatible(episodes)
    ids = {e.dataset_id for e in episodes}
    indices = [e.episode_index for e in episodes]
    dataset_id = ids.pop() if len(ids) == 1 and None not in ids else None
    if dataset_id is None or indices != list(range(len(episodes))):
        dataset_id = new_dataset_id()
    assign_ids(episodes, dataset_id)
    split = state_dim is not None and 0 < state_dim < episodes[0].obs_dim
    _quiet_datasets()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    target = staging / "dataset"
    ds = None
    try:
        ds = LeRobotDataset.create(
            repo_id,
            fps=fps,
            features=_features(episodes[0], state_dim),
            root=target,
            use_videos=use_videos,
        )
        for ep in episodes:
            for t in range(len(ep)):
                frame = {
                    "observation.state": ep.observations[t, :state_dim]
                    if split
                    else ep.observations[t],
                    "action": ep.actions[t],
                    "next.reward": ep.rewards[t : t + 1],
                    "next.success": ep.successes[t : t + 1],
                    "task": ep.task or "unspecified",
                }
                if split:
                    frame["observation.environment_state"] = ep.observations[t, state_dim:]
                if ep.wrenches is not None:
                    frame["observation.wrench"] = ep.wrenches[t]
                if ep.sim_states is not None:
                    frame[SIM_STATE_KEY] = ep.sim_states[t]
                if ep.metrics is not None:
                    frame[METRICS_KEY] = ep.metrics[t]
                for cam, frames in ep.images.items():
                    frame[f"observation.images.{cam}"] = frames[t]
                ds.add_frame(frame)
            ds.save_episode()
        ds.finalize()
        sidecar = sidecar_payload(
            dataset_id,
            [{"task": ep.task, "meta": ep.meta} for ep in episodes],
            sum(len(e) for e in episodes),
            state_dim if split else None,
        )
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


def load_episodes(root: str | Path, action_key: str = "action") -> list[Episode]:
    """Read every episode of the LeRobotDataset at ``root``.

    The policy observation is ``observation.state`` followed by
    ``observation.environment_state`` when the dataset has one. ``action_key`` picks the
    action feature (e.g. ``"action.intended"``: an operator's clean commands, the labels of
    DART/DAgger-style imitation). Each episode carries its stable id and lerobot's global
    frame ``index``, and its simulator states when the dataset has ``sim.state`` (else
    ``None``). Datasets written by other tools load too when they have
    ``observation.state`` and the action; missing rewards read as NaN, missing success flags
    as False.
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
        for needed in ("observation.state", action_key, "episode_index"):
            if needed not in columns:
                available = sorted(k for k in columns if k.startswith(("action", "observation")))
                raise DatasetError(
                    f"dataset {root} has no '{needed}' feature (it has {', '.join(available)}): "
                    "robopref needs a state and an action per frame"
                )
        index = np.asarray(table["episode_index"])
        n = len(index)
        obs = np.asarray(table["observation.state"], dtype=np.float32).reshape(n, -1)
        if "observation.environment_state" in columns:
            env = np.asarray(table["observation.environment_state"], dtype=np.float32)
            obs = np.concatenate([obs, env.reshape(n, -1)], axis=1)
        act = np.asarray(table[action_key], dtype=np.float32).reshape(n, -1)
        frames = (
            np.asarray(table["index"], dtype=np.int64) if "index" in columns else np.arange(n)
        )
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
        sim = _float64_column(ds.hf_dataset, SIM_STATE_KEY, n) if SIM_STATE_KEY in columns \
            else None
        metrics, metric_names = None, ()
        if METRICS_KEY in columns:
            metrics = np.asarray(table[METRICS_KEY], dtype=np.float32).reshape(n, -1)
            metric_names = tuple(ds.meta.features[METRICS_KEY].get("names") or ())
        image_keys = [k for k in ds.meta.camera_keys]
        total_episodes = int(ds.meta.total_episodes)
    except DatasetError:
        raise
    except Exception as exc:  # lerobot/pyarrow raise many types for a damaged folder
        raise DatasetError(
            f"dataset {root} could not be read ({type(exc).__name__}: {exc}); it may be "
            "corrupt or unfinished (written without finalize()): re-record or restore it"
        ) from exc

    dataset_id, per_episode = _identity(root, sidecar, total_episodes, n)
    episodes = []
    for ep_idx in np.unique(index):
        rows = np.flatnonzero(index == ep_idx)
        images = {}
        for key in image_keys:
            # HWC uint8, a video decoded in one call (robopref.data.video_files).
            images[key.removeprefix("observation.images.")] = camera_frames(
                ds, key, int(ep_idx), rows
            )
        info = per_episode[int(ep_idx)] if per_episode else {}
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
                dataset_id=dataset_id,
                episode_index=int(ep_idx),
                frame_indices=frames[rows],
                sim_states=None if sim is None else sim[rows],
                metrics=None if metrics is None else metrics[rows],
                metric_names=metric_names if metrics is not None else (),
            )
        )
    return episodes


def _float64_column(hf_dataset, key: str, n: int) -> np.ndarray:
    """``(n, width)`` float64 of a list column, read from Arrow: HF datasets' numpy format
    casts float64 to float32, which moves a re-rendered simulator frame by a pixel."""
    column = hf_dataset.with_format("arrow")[key].combine_chunks()
    return np.asarray(column.flatten().to_numpy(), dtype=np.float64).reshape(n, -1)


def dataset_id_of(root: str | Path) -> str:
    """The stable id episodes of the dataset at ``root`` are named by (cheap: reads metadata)."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root} is not a LeRobotDataset folder (no meta/info.json)")
    info = json.loads(info_path.read_text())
    dataset_id, _ = _identity(
        root, _read_sidecar(root), int(info["total_episodes"]), int(info["total_frames"])
    )
    return dataset_id


def _identity(
    root: Path, sidecar: dict | None, total_episodes: int, total_frames: int
) -> tuple[str, list[dict] | None]:
    """``(dataset_id, per-episode sidecar entries or None)`` for a dataset read from disk."""
    fingerprint = f"{total_episodes}:{total_frames}"
    if sidecar is None:
        # Another tool's dataset: an id from its content summary, the same in every process.
        info = (root / "meta" / "info.json").read_bytes()
        return _derived_id(hashlib.sha256(info).hexdigest(), fingerprint), None
    if sidecar.get("format_version") == 1:
        return _v1_id(root), sidecar.get("episodes")
    written = sidecar.get("written", {})
    if (written.get("total_episodes"), written.get("total_frames")) != (
        total_episodes,
        total_frames,
    ):
        # Edited since robopref wrote it (episodes deleted, merged, renumbered): a new dataset.
        return _derived_id(sidecar["dataset_id"], fingerprint), None
    return sidecar["dataset_id"], sidecar.get("episodes")


def _derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_DERIVED_ID_NAMESPACE, "|".join(parts)))


def _v1_id(root: Path) -> str:
    digest = hashlib.sha256((root / SIDECAR).read_bytes())
    digest.update((root / "meta" / "info.json").read_bytes())
    return _derived_id("v1", digest.hexdigest())


def migrate_dataset(root: str | Path) -> str:
    """Rewrite a version-1 sidecar as version 2 (atomically), keeping the id its episodes
    were already named by; returns the dataset id. A version-2 dataset is left alone."""
    root = Path(root)
    sidecar = _read_sidecar(root)
    if sidecar is None:
        raise DatasetError(f"{root} has no {SIDECAR}: it was not written by robopref")
    if sidecar["format_version"] == FORMAT_VERSION:
        return sidecar["dataset_id"]
    info = json.loads((root / "meta" / "info.json").read_text())
    dataset_id = _v1_id(root)
    payload = sidecar_payload(
        dataset_id, list(sidecar.get("episodes", [])), int(info["total_frames"]), None
    )
    if len(payload["episodes"]) != int(info["total_episodes"]):
        raise DatasetError(
            f"{root}: {SIDECAR} lists {len(payload['episodes'])} episodes, the dataset has "
            f"{info['total_episodes']}: it was edited by another tool; re-export it"
        )
    write_json_atomic(root / SIDECAR, payload, default=_json_default)
    return dataset_id


def _read_sidecar(root: Path) -> dict | None:
    path = root / SIDECAR
    if not path.exists():
        return None
    try:
        sidecar = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}): restore it or delete it") from exc
    version = sidecar.get("format_version")
    if version not in READABLE_VERSIONS:
        raise DatasetError(
            f"{path} has format version {version}, this robopref reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}: use the robopref release that wrote it"
        )
    if version == 2 and not sidecar.get("dataset_id"):
        raise DatasetError(f"{path} has no dataset_id: restore it from a backup")
    return sidecar
