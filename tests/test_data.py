"""Episodes, segments, preferences, and LeRobotDataset storage."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
from conftest import eid, make_episode, make_episodes

from robopref.data import (
    FORMAT_VERSION,
    Episode,
    Label,
    Preference,
    Segment,
    load_episodes,
    preference_targets,
    save_episodes,
    segment_pair_arrays,
    stack_transitions,
)
from robopref.errors import DatasetError, NonFiniteError

# --------------------------------------------------------------------------- Episode


def _arrays(T=6, obs_dim=3, act_dim=2):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(T, obs_dim)),
        rng.normal(size=(T, act_dim)),
        rng.normal(size=T),
        np.zeros(T, bool),
    )


def test_episode_casts_dtypes_and_reports_dims():
    obs, act, rew, suc = _arrays()
    ep = Episode(obs, act, rew.reshape(-1, 1), suc.astype(int))
    assert ep.observations.dtype == np.float32
    assert ep.actions.dtype == np.float32
    assert ep.rewards.dtype == np.float32 and ep.rewards.shape == (6,)
    assert ep.successes.dtype == bool
    assert (len(ep), ep.obs_dim, ep.act_dim) == (6, 3, 2)


@pytest.mark.parametrize("field", ["actions", "rewards", "successes"])
def test_episode_length_mismatch_raises(field):
    obs, act, rew, suc = _arrays()
    parts = {"observations": obs, "actions": act, "rewards": rew, "successes": suc}
    parts[field] = parts[field][:-1]
    with pytest.raises(ValueError, match="disagree on length"):
        Episode(**parts)


def test_episode_wrench_and_image_length_mismatch_raise():
    obs, act, rew, suc = _arrays(T=6)
    with pytest.raises(ValueError, match="wrenches"):
        Episode(obs, act, rew, suc, wrenches=np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"images\[cam\]"):
        Episode(obs, act, rew, suc, images={"cam": np.zeros((7, 4, 4, 3), np.uint8)})


def test_episode_rejects_wrong_rank_and_empty():
    obs, act, rew, suc = _arrays()
    with pytest.raises(ValueError, match=r"\(T, dim\)"):
        Episode(obs[:, 0], act, rew, suc)
    with pytest.raises(ValueError, match="at least one step"):
        Episode(np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_episode_non_finite_observations_raise(bad):
    obs, act, rew, suc = _arrays()
    obs[2, 1] = bad
    with pytest.raises(NonFiniteError, match="observations"):
        Episode(obs, act, rew, suc)


def test_episode_non_finite_actions_raise_and_is_value_error():
    obs, act, rew, suc = _arrays()
    act[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="actions"):
        Episode(obs, act, rew, suc)
    assert issubclass(NonFiniteError, ValueError)


def test_episode_nan_rewards_are_allowed():
    obs, act, rew, suc = _arrays()
    ep = Episode(obs, act, np.full(6, np.nan), suc)
    assert np.isnan(ep.true_return)


def test_episode_success_and_true_return():
    obs, act, _, _ = _arrays(T=4)
    rewards = np.array([1.0, 2.5, -0.5, 3.0])
    ep = Episode(obs, act, rewards, [False, False, True, False])
    assert ep.success is True
    assert ep.true_return == pytest.approx(6.0)
    assert Episode(obs, act, rewards, np.zeros(4, bool)).success is False


def test_a_task_that_judges_the_end_state_succeeds_only_by_its_last_step():
    # Peel-v0's flag is "success so far": a gouge after the bar was crossed undoes it.
    obs, act, rewards, _ = _arrays(T=4)
    lost = Episode(obs, act, rewards, [False, True, True, False], meta={"success_at_end": True})
    kept = Episode(obs, act, rewards, [False, False, True, True], meta={"success_at_end": True})
    assert lost.success is False and kept.success is True
    assert Episode(obs, act, rewards, [False, True, True, False]).success is True


def test_stack_transitions_concatenates_in_order():
    eps = [make_episode(3, seed=1), make_episode(5, seed=2)]
    obs, act = stack_transitions(eps)
    assert obs.shape == (8, 5) and act.shape == (8, 2)
    np.testing.assert_array_equal(obs[3:], eps[1].observations)
    with pytest.raises(ValueError):
        stack_transitions([])


# --------------------------------------------------------------------------- Segment, Preference


def test_segment_slices_episode_arrays(episodes):
    seg = Segment(eid(2), 3, 9)
    ep = episodes[2]
    assert len(seg) == 6
    np.testing.assert_array_equal(seg.observations(episodes), ep.observations[3:9])
    np.testing.assert_array_equal(seg.actions(episodes), ep.actions[3:9])
    np.testing.assert_array_equal(seg.rewards(episodes), ep.rewards[3:9])


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (4, 4), (5, 2)])
def test_segment_rejects_bad_bounds(start, end):
    with pytest.raises(ValueError, match="start < end"):
        Segment(eid(0), start, end)


def test_preference_rejects_unequal_segment_lengths():
    with pytest.raises(ValueError, match="equal length"):
        Preference(Segment(eid(0), 0, 5), Segment(eid(1), 0, 6), Label.FIRST)


@pytest.mark.parametrize("target", [-0.01, 1.01, float("nan")])
def test_preference_rejects_soft_target_outside_unit_interval(target):
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        Preference(Segment(eid(0), 0, 5), Segment(eid(1), 0, 5), target)


@pytest.mark.parametrize("weight", [-1.0, float("inf"), float("nan")])
def test_preference_rejects_bad_weights(weight):
    with pytest.raises(ValueError, match="weight"):
        Preference(Segment(eid(0), 0, 5), Segment(eid(1), 0, 5), 1.0, weight=weight)


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_preference_accepts_soft_targets_and_names_discrete_ones(target):
    pref = Preference(Segment(eid(0), 0, 5), Segment(eid(1), 2, 7), target, weight=2.0)
    assert pref.target == target and pref.weight == 2.0
    expected = {0.0: Label.SECOND, 0.5: Label.EQUAL, 1.0: Label.FIRST}.get(target)
    assert pref.label is expected


def test_label_targets():
    assert Label.FIRST.target == 1.0
    assert Label.SECOND.target == 0.0
    assert Label.EQUAL.target == 0.5
    assert Label("first") is Label.FIRST
    prefs = [
        Preference(Segment(eid(0), 0, 2), Segment(eid(1), 0, 2), label)
        for label in (Label.SECOND, Label.EQUAL, Label.FIRST)
    ]
    targets = preference_targets(prefs)
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, [0.0, 0.5, 1.0])


def test_segment_pair_arrays_shapes_and_content(episodes):
    pairs = [
        (Segment(eid(0), 0, 4), Segment(eid(1), 10, 14)),
        (Segment(eid(3), 5, 9), Segment(eid(3), 16, 20)),
    ]
    obs, act = segment_pair_arrays(pairs, episodes)
    assert obs.shape == (2, 2, 4, 5)
    assert act.shape == (2, 2, 4, 2)
    np.testing.assert_array_equal(obs[0, 1], episodes[1].observations[10:14])
    np.testing.assert_array_equal(act[1, 0], episodes[3].actions[5:9])


# --------------------------------------------------------------------------- LeRobotDataset I/O


def _io_episodes(with_wrench=False, with_images=False):
    eps = []
    for i, T in enumerate((12, 7)):
        rng = np.random.default_rng(50 + i)
        extra = {}
        if with_wrench:
            extra["wrenches"] = rng.normal(size=(T, 6))
        if with_images:
            extra["images"] = {"front": rng.integers(0, 256, size=(T, 8, 8, 3), dtype=np.uint8)}
        eps.append(
            make_episode(
                T,
                seed=10 + i,
                task=f"task-{i}",
                meta={"seed": i, "policy": "bc", "goal": [1, 2]},
                **extra,
            )
        )
    return eps


def _assert_same_episodes(saved, loaded):
    assert len(loaded) == len(saved)
    for a, b in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.successes, b.successes)
        assert a.task == b.task
        assert a.meta == b.meta


@pytest.mark.parametrize("with_wrench", [False, True])
def test_lerobot_round_trip(tmp_path, with_wrench):
    eps = _io_episodes(with_wrench=with_wrench)
    root = save_episodes(eps, tmp_path / "ds", fps=10)
    assert root == tmp_path / "ds"
    loaded = load_episodes(root)
    _assert_same_episodes(eps, loaded)
    for a, b in zip(eps, loaded, strict=True):
        if with_wrench:
            assert b.wrenches.shape == (len(a), 6)
            np.testing.assert_array_equal(a.wrenches, b.wrenches)
        else:
            assert b.wrenches is None
        assert b.images == {}
    sidecar = json.loads((root / "robopref.json").read_text())
    assert sidecar["format_version"] == FORMAT_VERSION
    # Only the dataset itself is left in the parent: no staging folder.
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_lerobot_round_trip_with_images(tmp_path):
    eps = _io_episodes(with_images=True)
    loaded = load_episodes(save_episodes(eps, tmp_path / "ds", fps=10))
    _assert_same_episodes(eps, loaded)
    for a, b in zip(eps, loaded, strict=True):
        assert set(b.images) == {"front"}
        frames = b.images["front"]
        assert frames.dtype == np.uint8 and frames.shape == a.images["front"].shape
        diff = np.abs(frames.astype(int) - a.images["front"].astype(int))
        assert diff.max() <= 1


def test_lerobot_round_trip_of_simulator_states_is_exact_and_no_policy_input(tmp_path):
    from lerobot.utils.feature_utils import dataset_to_policy_features

    eps = _io_episodes()
    for i, ep in enumerate(eps):
        ep.sim_states = np.random.default_rng(i).normal(size=(len(ep), 9)) * 1e3
    root = save_episodes(eps, tmp_path / "ds", fps=10)
    for a, b in zip(eps, load_episodes(root), strict=True):
        assert b.sim_states.dtype == np.float64
        np.testing.assert_array_equal(a.sim_states, b.sim_states)  # float64, bit for bit
    features = json.loads((root / "meta" / "info.json").read_text())["features"]
    assert features["sim.state"]["dtype"] == "float64"
    assert "sim.state" not in dataset_to_policy_features(features)
    # Datasets written before (or without) simulator states load with None.
    old = load_episodes(save_episodes(_io_episodes(), tmp_path / "old", fps=10))
    assert all(ep.sim_states is None for ep in old)
    with pytest.raises(ValueError, match="sim_states"):
        make_episode(6, sim_states=np.zeros((5, 9)))


def test_lerobot_round_trip_of_unknown_rewards(tmp_path):
    nan_rewards = lambda obs, act: np.full(len(obs), np.nan)  # noqa: E731  (a real robot)
    eps = [make_episode(6, seed=1, reward_fn=nan_rewards), make_episode(4, seed=2)]
    loaded = load_episodes(save_episodes(eps, tmp_path / "ds", fps=10))
    assert np.isnan(loaded[0].rewards).all() and loaded[0].rewards.shape == (6,)
    np.testing.assert_array_equal(loaded[1].rewards, eps[1].rewards)


def test_load_without_sidecar_reads_arrays_with_empty_task_and_meta(tmp_path):
    eps = _io_episodes()
    root = save_episodes(eps, tmp_path / "ds", fps=10)
    (root / "robopref.json").unlink()
    loaded = load_episodes(root)
    assert [(e.task, e.meta) for e in loaded] == [("", {}), ("", {})]
    for a, b in zip(eps, loaded, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.rewards, b.rewards)


def test_saved_folder_opens_with_lerobot(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    eps = _io_episodes(with_wrench=True)
    root = save_episodes(eps, tmp_path / "ds", fps=15, repo_id="robopref/test")
    ds = LeRobotDataset("robopref/test", root=root)
    assert ds.num_episodes == 2
    assert ds.num_frames == 12 + 7
    assert ds.fps == 15
    for key in ("observation.state", "action", "next.reward", "next.success", "observation.wrench"):
        assert key in ds.features
    frame = ds[12]  # first frame of the second episode
    assert int(frame["episode_index"]) == 1
    np.testing.assert_allclose(np.asarray(frame["observation.state"]), eps[1].observations[0])


def test_save_refuses_existing_folder_without_overwrite(tmp_path):
    eps = make_episodes(1, T=5)
    root = tmp_path / "ds"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="already exists"):
        save_episodes(eps, root, fps=10)
    assert (root / "keep.txt").read_text() == "x"
    save_episodes(eps, root, fps=10, overwrite=True)
    assert not (root / "keep.txt").exists()
    _assert_same_episodes(eps, load_episodes(root))


def test_save_rejects_empty_and_mixed_episodes(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        save_episodes([], tmp_path / "a", fps=10)
    mixed = [make_episode(5, obs_dim=5), make_episode(5, obs_dim=4)]
    with pytest.raises(ValueError, match="other features"):
        save_episodes(mixed, tmp_path / "b", fps=10)
    assert list(tmp_path.iterdir()) == []


def test_load_missing_folder_raises(tmp_path):
    with pytest.raises(DatasetError, match="meta/info.json"):
        load_episodes(tmp_path / "nope")


def test_load_corrupted_data_parquet_raises(tmp_path):
    root = save_episodes(make_episodes(2, T=6), tmp_path / "ds", fps=10)
    data_files = sorted((root / "data").rglob("*.parquet"))
    assert data_files
    for path in data_files:
        path.write_bytes(b"this is not a parquet file" * 10)
    with pytest.raises(DatasetError, match="could not be read"):
        load_episodes(root)


def _fail_lerobot_write(monkeypatch, method):
    """Make ``LeRobotDataset.<method>`` raise (``save_episode``: on the second episode)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    calls = {"n": 0}
    original = getattr(LeRobotDataset, method)

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if method == "save_episode" and calls["n"] == 1:
            return original(self, *args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(LeRobotDataset, method, failing)


@pytest.mark.parametrize("method", ["save_episode", "finalize"])
def test_failure_mid_write_leaves_nothing_behind(tmp_path, monkeypatch, method):
    _fail_lerobot_write(monkeypatch, method)
    parent = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="disk full"):
        save_episodes(make_episodes(2, T=5), parent / "ds", fps=10)
    gc.collect()
    assert not (parent / "ds").exists()
    # No half-written dataset anywhere in the parent (and no leftover staging folder:
    # see the test below).
    assert not list(parent.rglob("data/*/*.parquet"))
    assert not list(parent.rglob("info.json"))


@pytest.mark.parametrize("method", ["save_episode", "finalize"])
def test_failure_mid_write_leaves_nothing_behind_after_gc(tmp_path, monkeypatch, method):
    _fail_lerobot_write(monkeypatch, method)
    parent = tmp_path / "runs"
    try:
        save_episodes(make_episodes(2, T=5), parent / "ds", fps=10)
    except RuntimeError:
        pass
    else:
        pytest.fail("save_episodes should have raised")
    gc.collect()  # the failed dataset object is gone now: nothing may reappear
    assert not (parent / "ds").exists()
    assert list(parent.iterdir()) == []


def test_sidecar_with_wrong_format_version_raises(tmp_path):
    root = save_episodes(make_episodes(1, T=5), tmp_path / "ds", fps=10)
    sidecar_path = root / "robopref.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["format_version"] = FORMAT_VERSION + 1
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(DatasetError, match="format version"):
        load_episodes(root)


def test_sidecar_invalid_json_raises(tmp_path):
    root = save_episodes(make_episodes(1, T=5), tmp_path / "ds", fps=10)
    (root / "robopref.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_episodes(root)
