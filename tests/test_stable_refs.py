"""Stable episode references: dataset ids, global frame indices, labels that resolve in
another process after the run folder moved, datasets edited by other tools, format 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import make_episodes

from robopref.data import (
    Preference,
    Segment,
    dataset_id_of,
    load_episodes,
    save_episodes,
)
from robopref.errors import DatasetError, RobopError
from robopref.loop import RunStore, load_run_episodes

TESTS = Path(__file__).parent


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (tests/ on its path, for conftest helpers)."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_labels_written_by_one_process_resolve_to_identical_frames_after_a_move(tmp_path):
    run = tmp_path / "run"
    run_python(f"""
        import numpy as np
        from conftest import make_episodes
        from robopref.data import Preference, Segment, save_episodes, save_preferences
        from robopref.loop import RunStore
        from robopref.preferences import sample_pairs

        store = RunStore({str(run)!r})
        store.open({{"seed": 0}}, {{}})
        pool = {{}}
        for name, seed in (("demos", 0), ("rollouts_round1", 50)):
            episodes = make_episodes(4, T=30, obs_dim=6, seed=seed)
            for e in episodes:
                e.dataset_id = None  # saving gives them their dataset's id
            folder = store.path("datasets", name)
            save_episodes(episodes, folder, fps=10, state_dim=2)
            store.register_dataset(episodes[0].dataset_id, folder)
            pool.update({{e.id: e for e in episodes}})
        pairs = sample_pairs(pool, 8, 12, np.random.default_rng(0))
        prefs = [
            Preference(a, b, 0.25 * (i % 5), weight=1 + i % 3) for i, (a, b) in enumerate(pairs)
        ]
        save_preferences(prefs, store.path("labels", "round1.json"))
        frames = [np.concatenate([a.observations(pool), b.observations(pool)]) for a, b in pairs]
        np.save({str(tmp_path / "frames.npy")!r}, np.stack(frames))
    """)
    moved = tmp_path / "elsewhere" / "run_moved"
    moved.parent.mkdir()
    shutil.move(run, moved)
    out = run_python(f"""
        import numpy as np
        from robopref.data import load_preferences
        from robopref.loop import load_run_episodes

        pool = load_run_episodes({str(moved)!r})
        prefs = load_preferences({str(moved / "labels" / "round1.json")!r})
        frames = [np.concatenate([p.first.observations(pool), p.second.observations(pool)])
                  for p in prefs]
        expected = np.load({str(tmp_path / "frames.npy")!r})
        print(np.stack(frames).tobytes() == expected.tobytes(), len(prefs),
              sorted({{p.target for p in prefs}}))
    """)
    assert out.split()[0] == "True", out
    assert out.split()[1] == "12"


def test_every_saved_episode_carries_its_dataset_id_and_lerobot_frame_index(tmp_path):
    episodes = make_episodes(3, T=7, obs_dim=6)
    for e in episodes:
        e.dataset_id = None
    save_episodes(episodes, tmp_path / "ds", fps=10, state_dim=2)
    sidecar = json.loads((tmp_path / "ds" / "robopref.json").read_text())
    assert sidecar["format_version"] == 2 and sidecar["dataset_id"] == episodes[0].dataset_id
    loaded = load_episodes(tmp_path / "ds")
    assert [e.id for e in loaded] == [e.id for e in episodes]
    assert [e.frame_indices.tolist() for e in loaded] == [
        list(range(0, 7)), list(range(7, 14)), list(range(14, 21))
    ]
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["shape"] == [2]
    assert info["features"]["observation.environment_state"]["shape"] == [4]
    np.testing.assert_array_equal(loaded[1].observations, episodes[1].observations)
    assert dataset_id_of(tmp_path / "ds") == episodes[0].dataset_id


def test_a_dataset_edited_by_lerobot_tools_is_a_new_dataset(tmp_path):
    from lerobot.datasets.dataset_tools import delete_episodes
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    episodes = make_episodes(3, T=6, obs_dim=4)
    save_episodes(episodes, tmp_path / "ds", fps=10, state_dim=2)
    original = dataset_id_of(tmp_path / "ds")
    source = LeRobotDataset("local/ds", root=tmp_path / "ds")
    delete_episodes(source, [0], output_dir=tmp_path / "edited", repo_id="local/edited")
    shutil.copy(tmp_path / "ds" / "robopref.json", tmp_path / "edited" / "robopref.json")
    edited = load_episodes(tmp_path / "edited")
    assert len(edited) == 2 and edited[0].dataset_id != original
    # Episode 1 of the original is episode 0 of the edit: the old id must not resolve to it.
    old_label = Segment(f"{original}:1", 0, 6)
    with pytest.raises(DatasetError, match="none of the loaded datasets"):
        old_label.observations(edited)


def test_datasets_of_format_1_load_with_a_stable_id_and_migrate(tmp_path):
    save_episodes(make_episodes(2, T=5), tmp_path / "ds", fps=10)
    sidecar_path = tmp_path / "ds" / "robopref.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(
        json.dumps({"format_version": 1, "episodes": sidecar["episodes"]}, indent=1)
    )
    first = load_episodes(tmp_path / "ds")[0].dataset_id
    assert load_episodes(tmp_path / "ds")[0].dataset_id == first  # the same every time
    out = subprocess.run(
        [sys.executable, "-m", "robopref.cli", "migrate-dataset", str(tmp_path / "ds")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert first in out.stdout
    assert json.loads(sidecar_path.read_text())["format_version"] == 2
    assert load_episodes(tmp_path / "ds")[0].dataset_id == first


def test_run_store_names_its_datasets_relative_to_the_run(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open({"seed": 1}, {})
    episodes = make_episodes(2, T=5)
    save_episodes(episodes, store.path("datasets", "demos"), fps=10)
    store.register_dataset(episodes[0].dataset_id, store.path("datasets", "demos"))
    assert store.datasets() == {episodes[0].dataset_id: "datasets/demos"}
    shutil.rmtree(store.path("datasets", "demos"))
    with pytest.raises(RobopError, match="missing"):
        load_run_episodes(tmp_path / "run")


def test_a_label_naming_a_missing_episode_is_one_line():
    episodes = make_episodes(2, T=5)
    pref = Preference(Segment("gone:0", 0, 3), Segment(episodes[0].id, 0, 3), 1.0)
    with pytest.raises(DatasetError, match="gone:0") as info:
        pref.first.observations(episodes)
    assert "\n" not in str(info.value)


def test_per_frame_learned_reward_of_any_dataset_episode_is_one_call(tmp_path):
    from robopref.rewards import BTEnsemble, EnsembleConfig
    from robopref.training import Trainer, TrainerConfig

    episodes = make_episodes(3, T=9, obs_dim=5)
    save_episodes(episodes, tmp_path / "ds", fps=10, state_dim=2)
    trainer = Trainer(TrainerConfig(steps=1, device="cpu", progress=False))
    model = BTEnsemble(5, 2, EnsembleConfig(members=2, hidden_sizes=[8]), trainer)
    rewards = model.frame_rewards(tmp_path / "ds", 2)
    assert rewards.shape == (9,)
    np.testing.assert_allclose(rewards, model.episode_rewards(episodes[2]), rtol=1e-6)
    reloaded = BTEnsemble.load(model.save(tmp_path / "reward"), trainer)
    np.testing.assert_array_equal(reloaded.frame_rewards(tmp_path / "ds", 2), rewards)
    with pytest.raises(IndexError, match="no episode 7"):
        model.frame_rewards(tmp_path / "ds", 7)


def test_recording_peel_demos_into_test_scenes_is_refused(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "robopref.cli", "record", "hardware=sim", "teleop=scripted",
         "sensor=sim", "task=peel", "record.seed=2000000", f"record.root={tmp_path}/r"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "outside Peel-v0's train scenes" in lines[0], out.stderr
    assert not (tmp_path / "r").exists()
