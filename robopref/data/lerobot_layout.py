"""One episode's files in lerobot's v3.0 layout, written directly (pyarrow for Parquet, PyAV
for videos), and the dataset-level metadata a writer keeps in memory between saves.

Layout (lerobot 0.6.1, ``codebase_version`` ``v3.0``), one file of each kind per episode::

    data/chunk-CCC/file-FFF.parquet            the episode's frames, one row group
    meta/episodes/chunk-CCC/file-FFF.parquet   one row: length, tasks, global frame range,
                                               file locations, stats/<feature>/<statistic>
    videos/<key>/chunk-CCC/file-FFF.mp4        per ``dtype: "video"`` camera, from_timestamp 0
    meta/info.json  meta/stats.json  meta/tasks.parquet     dataset-level, a few kB

File indices advance as in lerobot's own writer (``update_chunk_file_indices``:
``chunks_size`` files per chunk folder), and columns, their types and their order are the ones
lerobot writes, so lerobot reads and edits these datasets as its own. Per-episode stats come
from lerobot's ``get_feature_stats`` / ``compute_episode_stats`` and the dataset's from its
``aggregate_stats``, which is associative: the running aggregate and the new episode's stats
give the new aggregate, so a save never re-reads earlier episodes. Nothing here depends on
the number of episodes already saved.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopref.data.video_files import encode_episode_video, video_encoder, video_info

__all__ = ["EpisodeFiles", "LerobotMeta"]

_VISUAL = ("image", "video")


@dataclass
class EpisodeFiles:
    """What writing one episode produced: the new files (relative to the dataset folder,
    each written once and never changed) and the metadata after the episode."""

    files: list[Path]
    meta: LerobotMeta
    length: int


@dataclass
class LerobotMeta:
    """The dataset-level state a save updates: ``info`` (lerobot's ``DatasetInfo``), the
    aggregated ``stats`` (feature -> statistic -> array), ``tasks`` (task string -> index) and
    ``last``, the previous episode's file locations (``None`` before the first episode)."""

    info: object
    stats: dict | None
    tasks: dict[str, int]
    last: dict | None = None
    _hf_schema: object = field(default=None, repr=False, compare=False)

    # ---------------------------------------------------------------- open / create
    @classmethod
    def create(cls, fps: int, features: dict) -> LerobotMeta:
        """Metadata of a new, empty dataset of ``features`` (lerobot's feature spec)."""
        from lerobot.datasets.dataset_metadata import CODEBASE_VERSION
        from lerobot.datasets.feature_utils import create_empty_dataset_info
        from lerobot.utils.constants import DEFAULT_FEATURES

        full = {**copy.deepcopy(features), **copy.deepcopy(DEFAULT_FEATURES)}
        for spec in full.values():
            spec["shape"] = tuple(spec["shape"])
        use_videos = any(spec["dtype"] == "video" for spec in full.values())
        info = create_empty_dataset_info(CODEBASE_VERSION, int(fps), full, use_videos)
        return cls(info=info, stats=None, tasks={})

    @classmethod
    def load(cls, root: Path) -> LerobotMeta:
        """The metadata of the dataset at ``root``; reads the last ``meta/episodes`` file for
        where the next episode's files go (one folder listing, once per session)."""
        from lerobot.datasets.io_utils import load_info, load_stats, load_tasks

        info = load_info(root)
        tasks_path = root / "meta" / "tasks.parquet"
        tasks = {}
        if tasks_path.is_file():
            frame = load_tasks(root)
            tasks = {
                str(task): int(i) for task, i in zip(frame.index, frame["task_index"], strict=True)
            }
        last = None
        files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
        if files:
            table = pq.read_table(files[-1])
            row = table.slice(table.num_rows - 1).to_pylist()[0]
            last = _locations(row, _video_keys(info.features))
        return cls(info=info, stats=load_stats(root), tasks=tasks, last=last)

    # ---------------------------------------------------------------- properties
    @property
    def total_episodes(self) -> int:
        return int(self.info.total_episodes)

    @property
    def total_frames(self) -> int:
        return int(self.info.total_frames)

    @property
    def video_keys(self) -> list[str]:
        return _video_keys(self.info.features)

    def _schema(self) -> pa.Schema:
        if self._hf_schema is None:
            from lerobot.datasets.feature_utils import get_hf_features_from_features

            self._hf_schema = get_hf_features_from_features(self.info.features).arrow_schema
        return self._hf_schema

    def _next(self, kind: str, chunks_size: int) -> tuple[int, int]:
        from lerobot.datasets.utils import update_chunk_file_indices

        if self.last is None or self.last.get(kind) is None:
            return 0, 0
        return update_chunk_file_indices(*self.last[kind], chunks_size)

    # ---------------------------------------------------------------- one episode
    def write_episode(self, folder: Path, frames: dict[str, np.ndarray], task: str) -> EpisodeFiles:
        """Write episode ``total_episodes`` (``frames``: feature -> ``(T, *shape)``) into the
        dataset folder ``folder`` as new files; returns them and the metadata after it (this
        object is left unchanged until the caller adopts the new one)."""
        from lerobot.datasets.compute_stats import aggregate_stats
        from lerobot.utils.utils import flatten_dict

        info = self.info
        features = info.features
        length = len(next(iter(frames.values())))
        index, start = self.total_episodes, self.total_frames
        tasks = dict(self.tasks)
        task_index = tasks.setdefault(task, len(tasks))
        chunks = info.chunks_size
        data_at, meta_at = self._next("data", chunks), self._next("meta", chunks)
        columns = {
            key: _as_feature(frames[key], spec, length, key)
            for key, spec in features.items()
            if key in frames
        }
        # Stored as float32; lerobot's stats see the float64 seconds (as its add_frame makes).
        columns["timestamp"] = np.arange(length) / info.fps
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["episode_index"] = np.full(length, index, np.int64)
        columns["index"] = np.arange(start, start + length, dtype=np.int64)
        columns["task_index"] = np.full(length, task_index, np.int64)
        missing = [k for k in features if k not in columns]
        if missing:
            raise ValueError(f"episode frames lack feature(s) {', '.join(missing)}")

        written = []
        row = {"episode_index": index, "tasks": [task], "length": length}
        data_path = Path(info.data_path.format(chunk_index=data_at[0], file_index=data_at[1]))
        self._write_data(folder / data_path, columns)
        written.append(data_path)
        row.update(
            {
                "data/chunk_index": data_at[0],
                "data/file_index": data_at[1],
                "dataset_from_index": start,
                "dataset_to_index": start + length,
            }
        )
        new_info = copy.deepcopy(info)
        video_at = {}
        for key in self.video_keys:
            video_at[key] = self._next(key, chunks)
            path = Path(
                info.video_path.format(
                    video_key=key, chunk_index=video_at[key][0], file_index=video_at[key][1]
                )
            )
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            encode_episode_video(folder / path, columns[key], info.fps, video_encoder())
            written.append(path)
            if not features[key].get("info"):
                # lerobot probes the first episode's video for the stream settings.
                new_info.features[key]["info"] = video_info(folder / path)
            row.update(
                {
                    f"videos/{key}/chunk_index": video_at[key][0],
                    f"videos/{key}/file_index": video_at[key][1],
                    f"videos/{key}/from_timestamp": 0.0,
                    f"videos/{key}/to_timestamp": length / info.fps,
                }
            )
        stats = _episode_stats(columns, features)
        row.update(flatten_dict({"stats": stats}))
        row.update(
            {"meta/episodes/chunk_index": meta_at[0], "meta/episodes/file_index": meta_at[1]}
        )
        meta_path = Path(f"meta/episodes/chunk-{meta_at[0]:03d}/file-{meta_at[1]:03d}.parquet")
        table = pa.Table.from_pydict(
            {k: [v.tolist() if isinstance(v, np.ndarray) else v] for k, v in row.items()}
        )
        (folder / meta_path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / meta_path, compression="snappy", use_dictionary=True)
        written.append(meta_path)

        new_info.total_episodes = index + 1
        new_info.total_frames = start + length
        new_info.total_tasks = len(tasks)
        new_info.splits = {"train": f"0:{index + 1}"}
        after = LerobotMeta(
            info=new_info,
            stats=aggregate_stats([self.stats, stats]) if self.stats else stats,
            tasks=tasks,
            last={"data": data_at, "meta": meta_at, **video_at},
            _hf_schema=self._hf_schema,
        )
        return EpisodeFiles(files=written, meta=after, length=length)

    def _write_data(self, path: Path, columns: dict[str, np.ndarray]) -> None:
        schema = self._schema()
        arrays = [_arrow_column(columns[f.name], f.type) for f in schema]  # casts as stored
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_arrays(arrays, schema=schema)
        pq.write_table(table, path, compression="snappy", use_dictionary=True)

    def write_dataset_files(self, folder: Path, tasks: bool = True) -> list[Path]:
        """Write ``meta/info.json``, ``meta/stats.json`` and (with ``tasks``)
        ``meta/tasks.parquet`` into ``folder`` in lerobot's format; returns their paths."""
        import pandas as pd
        from lerobot.datasets.io_utils import write_info, write_stats, write_tasks

        write_info(self.info, folder)
        paths = [folder / "meta" / "info.json"]
        if self.stats is not None:
            write_stats(self.stats, folder)
            paths.append(folder / "meta" / "stats.json")
        if tasks and self.tasks:
            frame = pd.DataFrame(
                {"task_index": list(self.tasks.values())},
                index=pd.Index(list(self.tasks), name="task"),
            )
            write_tasks(frame, folder)
            paths.append(folder / "meta" / "tasks.parquet")
        return paths


# -- helpers --------------------------------------------------------------------------------
def _video_keys(features: dict) -> list[str]:
    return [k for k, spec in features.items() if spec["dtype"] == "video"]


def _locations(row: dict, video_keys: list[str]) -> dict:
    """Where an episode-metadata row says its files are: kind -> (chunk, file)."""
    out = {
        "data": (int(row["data/chunk_index"]), int(row["data/file_index"])),
        "meta": (int(row["meta/episodes/chunk_index"]), int(row["meta/episodes/file_index"])),
    }
    for key in video_keys:
        chunk = row.get(f"videos/{key}/chunk_index")
        if chunk is not None:
            out[key] = (int(chunk), int(row[f"videos/{key}/file_index"]))
    return out


def _as_feature(values, spec: dict, length: int, key: str) -> np.ndarray:
    """``values`` as a ``(T, *shape)`` array of the feature's dtype (images: uint8 HWC)."""
    array = np.asarray(values)
    shape = tuple(spec["shape"])
    if len(array) != length:
        raise ValueError(f"feature '{key}' has {len(array)} frames, the episode {length}")
    if array.shape[1:] != shape and not (shape == (1,) and array.ndim == 1):
        raise ValueError(f"feature '{key}' frames are {array.shape[1:]}, the dataset's {shape}")
    dtype = np.uint8 if spec["dtype"] in _VISUAL else np.dtype(spec["dtype"])
    array = array.astype(dtype, copy=False)
    return array.reshape(length) if shape == (1,) else array


def _png(image: np.ndarray) -> bytes:
    import PIL.Image

    buffer = io.BytesIO()
    # Level 6, as lerobot's writer uses for image features.
    PIL.Image.fromarray(image).save(buffer, format="png", compress_level=6)
    return buffer.getvalue()


def _arrow_column(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_struct(arrow_type):  # datasets.Image: {bytes, path}
        data = pa.array([_png(image) for image in values], pa.binary())
        paths = pa.nulls(len(values), pa.string())
        return pa.StructArray.from_arrays([data, paths], fields=list(arrow_type))
    if pa.types.is_fixed_size_list(arrow_type):
        flat = pa.array(values.reshape(-1), arrow_type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, arrow_type.list_size)
    if pa.types.is_nested(arrow_type) or isinstance(arrow_type, pa.ExtensionType):
        raise ValueError(f"features of arrow type {arrow_type} are not supported: use 1-D ones")
    return pa.array(values.reshape(len(values)), arrow_type)


def _episode_stats(columns: dict[str, np.ndarray], features: dict) -> dict:
    """Per-episode stats exactly as lerobot's writer computes them (feature order kept)."""
    from lerobot.datasets.compute_stats import (
        auto_downsample_height_width,
        compute_episode_stats,
        get_feature_stats,
        sample_indices,
    )

    plain = {k: v for k, v in columns.items() if features[k]["dtype"] not in _VISUAL}
    stats = compute_episode_stats(plain, {k: features[k] for k in plain})
    for key in columns:
        if features[key]["dtype"] not in _VISUAL:
            continue
        # lerobot samples frames, makes them CHW and downsamples big ones (sample_images).
        images = [
            auto_downsample_height_width(np.transpose(columns[key][i], (2, 0, 1)))
            for i in sample_indices(len(columns[key]))
        ]
        raw = get_feature_stats(np.stack(images), axis=(0, 2, 3), keepdims=True)
        stats[key] = {
            k: v if k == "count" else np.squeeze(v / 255.0, axis=0) for k, v in raw.items()
        }
    return {key: stats[key] for key in columns if key in stats}
