"""Find the episodes a label database names, in another process than the one that enqueued.

Segments in the database name episodes by stable id (``"<dataset_id>:<episode_index>"``)
and keep only a *hint* where the dataset lived (``dataset_path``). A :class:`DatasetResolver`
loads the dataset at the hint when its id matches, and otherwise looks for a dataset with
that id under its search roots (a run folder, a data folder), so a run folder that moved
still resolves. A dataset whose id matches nowhere is one clear error naming the fix.

Datasets are loaded once and kept (``max_datasets`` of them, least recently used first out):
the server asks for the same few rollout datasets over and over.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

from robopref.data import Episode, Segment, dataset_id_of, load_episodes
from robopref.errors import DatasetError

SIDECAR = "robopref.json"


def _dataset_of(episode_id: str) -> str:
    dataset_id, sep, index = episode_id.rpartition(":")
    if not sep or not index.isdigit():
        raise DatasetError(f"'{episode_id}' is not a stable episode id '<dataset_id>:<index>': "
                           "enqueue segments cut from saved datasets")
    return dataset_id


class DatasetResolver:
    """Episodes by stable id, loaded from dataset folders (path hints, then search roots).

    ``roots``: folders searched (recursively, for LeRobotDataset folders with a robopref
    sidecar) when a hint is missing or points at another dataset. Thread-safe.
    """

    def __init__(self, roots: Iterable[str | Path] = (), max_datasets: int = 16):
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise DatasetError(f"dataset search root {root} is not a folder: check the path")
        self.max_datasets = max(1, int(max_datasets))
        self._loaded: OrderedDict[str, dict[str, Episode]] = OrderedDict()
        self._paths: dict[str, Path] = {}
        self._indexed = False
        self._lock = threading.RLock()

    def __call__(self, segment: Segment, dataset_path: str | None = None) -> Episode:
        """The episode ``segment`` was cut from, checked to be long enough."""
        episodes = self.dataset(_dataset_of(segment.episode_id), dataset_path)
        return segment.episode(episodes)

    def episode(self, episode_id: str, dataset_path: str | None = None) -> Episode:
        episodes = self.dataset(_dataset_of(episode_id), dataset_path)
        try:
            return episodes[episode_id]
        except KeyError:
            raise DatasetError(f"dataset {_dataset_of(episode_id)} has no episode "
                               f"{episode_id}: the dataset changed since it was enqueued") from None

    def pool(self, dataset_paths: Mapping[str, str | None]) -> dict[str, Episode]:
        """Every episode of the datasets ``{dataset_id: path hint}``, by stable id."""
        pool: dict[str, Episode] = {}
        for dataset_id, hint in dataset_paths.items():
            pool.update(self.dataset(dataset_id, hint))
        return pool

    def dataset(self, dataset_id: str, dataset_path: str | None = None) -> dict[str, Episode]:
        """Episodes of dataset ``dataset_id`` by stable id (loaded once, then cached)."""
        with self._lock:
            if dataset_id in self._loaded:
                self._loaded.move_to_end(dataset_id)
                return self._loaded[dataset_id]
            folder = self._locate(dataset_id, dataset_path)
            episodes = {e.id: e for e in load_episodes(folder)}
            self._loaded[dataset_id] = episodes
            while len(self._loaded) > self.max_datasets:
                self._loaded.popitem(last=False)
            return episodes

    def path_of(self, dataset_id: str, dataset_path: str | None = None) -> Path:
        """The folder holding dataset ``dataset_id``."""
        with self._lock:
            return self._locate(dataset_id, dataset_path)

    def _locate(self, dataset_id: str, hint: str | None) -> Path:
        if dataset_id in self._paths:
            return self._paths[dataset_id]
        if hint is not None and self._matches(Path(hint), dataset_id):
            self._paths[dataset_id] = Path(hint)
            return Path(hint)
        if not self._indexed:
            self._index()
        if dataset_id in self._paths:
            return self._paths[dataset_id]
        where = f"not at {hint}" if hint else "no path was stored for it"
        searched = (f" nor under {', '.join(map(str, self.roots))}" if self.roots
                    else "; give the folder that holds it as a search root (--datasets DIR)")
        raise DatasetError(f"dataset {dataset_id} was not found ({where}{searched}): it moved, "
                           "was edited by another tool, or was deleted")

    @staticmethod
    def _matches(folder: Path, dataset_id: str) -> bool:
        try:
            return dataset_id_of(folder) == dataset_id
        except (DatasetError, OSError, ValueError, KeyError):
            return False

    def _index(self) -> None:
        for root in self.roots:
            for sidecar in sorted(root.rglob(SIDECAR)):
                folder = sidecar.parent
                try:
                    self._paths.setdefault(dataset_id_of(folder), folder)
                except (DatasetError, OSError, ValueError, KeyError):
                    continue  # an unfinished or foreign folder: not ours to resolve
        self._indexed = True
