"""The run store: every step of a run committed atomically into its folder, so a killed run
resumes from the last completed step.

Layout of a run folder::

    run.json        format version, the resolved config, the task
    state.json      completed steps with their small results, the step in progress, and the
                    state a resumed run restores (trainer step counters, the source's RNG)
    datasets.json   dataset id -> folder, relative to the run folder (moves with it)
    datasets/       demos and each round's rollouts (LeRobotDatasets)
    queries/        round<k>.json: the queries asked
    labels/         round<k>.json: the preferences received
    checkpoints/    policy_bc/, policy_round<k>/, reward_round<k>/, policy_selected/
    metrics.json    rewritten after every round (strict JSON: null, never NaN)

A step writes its outputs first (each atomically: temp file or folder, then rename) and is
marked complete in ``state.json`` (temp file, fsync, rename) only after them, so a kill at
any instant leaves either the old state or the new one. On resume, leftover temporary files
of an interrupted step are removed and the step runs again from its own seed, producing what
the uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from robopref.data.atomic import write_json_atomic as write_atomic
from robopref.errors import ConfigError, RobopError
from robopref.loop.evaluation import json_safe

RUN_FORMAT_VERSION = 1
RUN_FILE, STATE_FILE, DATASETS_FILE = "run.json", "state.json", "datasets.json"


def write_json_atomic(path: Path, payload) -> None:
    """Strict JSON (NaN written as null) written atomically over ``path``."""
    write_atomic(path, json_safe(payload), allow_nan=False)


def _first_difference(old, new, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                return where
            found = _first_difference(old[key], new[key], where)
            if found:
                return found
        return None
    return None if old == new else prefix or "(root)"


class RunStore:
    """One run folder. ``open`` creates it or checks that a resumed run matches it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._state: dict = {}

    # -- opening -----------------------------------------------------------------------
    def open(self, config: dict, task: dict) -> bool:
        """Start or resume the run of ``config``; returns True when resuming. A folder made
        by another format version or another config is refused with one line."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_path = self.root / RUN_FILE
        if not run_path.exists():
            write_json_atomic(
                run_path, {"format_version": RUN_FORMAT_VERSION, "config": config, "task": task}
            )
            self._state = {"format_version": RUN_FORMAT_VERSION, "completed": {}, "restore": {}}
            self._write_state()
            return False
        try:
            run = json.loads(run_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RobopError(f"{run_path} is unreadable ({exc}): start a new run folder") from None
        if run.get("format_version") != RUN_FORMAT_VERSION:
            raise RobopError(
                f"run folder {self.root} has format version {run.get('format_version')}, this "
                f"robopref resumes version {RUN_FORMAT_VERSION}: finish it with the release "
                "that started it, or start a new run"
            )
        differs = _first_difference(json_safe(run["config"]), json_safe(config))
        if differs:
            raise ConfigError(
                f"cannot resume {self.root}: its config differs at '{differs}'; resume "
                "without changing the config, or start a new run folder"
            )
        self._state = json.loads((self.root / STATE_FILE).read_text())
        self.remove_temporary_files()
        return True

    def remove_temporary_files(self) -> None:
        """Delete what an interrupted step left half-written (dot-named temp entries)."""
        for path in sorted(self.root.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
            if path.exists() and path.name.startswith("."):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    # -- steps -------------------------------------------------------------------------
    def done(self, step: str) -> bool:
        return step in self._state["completed"]

    def result(self, step: str) -> dict:
        return self._state["completed"][step]

    def completed(self) -> list[str]:
        return list(self._state["completed"])

    def start(self, step: str) -> None:
        """Mark ``step`` in progress (what a watcher sees; a resumed run redoes it)."""
        self._state["current"] = step
        self._write_state()

    def commit(self, step: str, result: dict, restore: dict) -> None:
        """Mark ``step`` complete with its ``result``, and the state to ``restore`` after it."""
        self._state["completed"][step] = result
        self._state["restore"] = restore
        self._state["current"] = None
        self._write_state()

    @property
    def restore_state(self) -> dict:
        return self._state.get("restore", {})

    def _write_state(self) -> None:
        write_json_atomic(self.root / STATE_FILE, self._state)

    # -- files -------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def register_dataset(self, dataset_id: str, folder: Path) -> None:
        """Record where dataset ``dataset_id`` lives, relative to the run folder."""
        registry = self.datasets()
        registry[dataset_id] = os.path.relpath(Path(folder).resolve(), self.root.resolve())
        write_json_atomic(self.root / DATASETS_FILE, registry)

    def datasets(self) -> dict[str, str]:
        path = self.root / DATASETS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def write_json(self, relative: str, payload) -> Path:
        path = self.root / relative
        write_json_atomic(path, payload)
        return path

    def read_json(self, relative: str):
        return json.loads((self.root / relative).read_text())


def load_run_episodes(root: str | Path) -> dict:
    """Every episode of every dataset a run folder names, by stable id (the run folder may
    have moved: paths are relative to it)."""
    from robopref.data import load_episodes

    store = RunStore(root)
    pool = {}
    for dataset_id, relative in store.datasets().items():
        folder = store.path(relative)
        if not folder.exists():
            raise RobopError(
                f"run {root} names dataset {dataset_id} at {relative}, which is missing: "
                "restore it there"
            )
        for episode in load_episodes(folder):
            pool[episode.id] = episode
    return pool


def pause_for_kill_tests() -> None:
    # Kill-and-resume tests widen every step by this many seconds (before its work and
    # between its outputs and its commit), so a kill at a random instant lands inside steps
    # that take milliseconds. Unset outside those tests.
    pause = float(os.environ.get("ROBOPREF_TEST_STEP_PAUSE_S", "0") or 0)
    if pause > 0:
        time.sleep(pause)
