"""Contract tests for robopref's environments: every env factory passes the same suite."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from robopref.envs import (
    BatchedExpert,
    ExpertConfig,
    MetaWorldConfig,
    MetaWorldEnv,
    NoisyExpert,
    metaworld_task_names,
)
from robopref.envs.metaworld_task import MetaWorldTask
from robopref.errors import ConfigError, NonFiniteError
from robopref.rollout import collect_episodes


def make_vector_env(config: MetaWorldConfig, num_envs: int, asynchronous: bool = False):
    return MetaWorldTask(config).make_vector_env(num_envs, asynchronous=asynchronous)


def ExpertPolicy(task: str, config: ExpertConfig, num_envs: int) -> BatchedExpert:  # noqa: N802
    return BatchedExpert(task, config, num_envs)

warnings.filterwarnings("ignore", module=r"metaworld\..*")

ENV_FACTORIES = {
    "metaworld-push": lambda: MetaWorldEnv(MetaWorldConfig("push-v3", max_episode_steps=30)),
    "metaworld-reach": lambda: MetaWorldEnv(MetaWorldConfig("reach-v3", max_episode_steps=30)),
}


@pytest.fixture(scope="module", params=sorted(ENV_FACTORIES))
def env(request):
    env = ENV_FACTORIES[request.param]()
    yield env
    env.close()


class TestEnvContract:
    """What the loop, the teacher and the recorder rely on, for any env."""

    def test_reset_and_step_follow_gymnasium(self, env):
        obs, info = env.reset(seed=0)
        assert env.observation_space.shape == obs.shape
        action = env.action_space.sample()
        out = env.step(action)
        assert len(out) == 5
        obs2, reward, terminated, truncated, info = out
        assert obs2.shape == obs.shape
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert np.isfinite(reward)

    def test_info_reports_success_and_true_reward(self, env):
        env.reset(seed=0)
        _, reward, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert isinstance(info["success"], bool)
        assert info["true_reward"] == pytest.approx(float(reward))

    def test_truncates_at_max_episode_steps(self, env):
        env.reset(seed=0)
        limit = env.config.max_episode_steps
        for t in range(limit):
            _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))
            assert not terminated
            if t < limit - 1:
                assert not truncated
        assert truncated

    def test_goal_index_selects_a_reproducible_start(self, env):
        a, info_a = env.reset(options={"goal_index": 7})
        env.reset(options={"goal_index": 8})
        b, info_b = env.reset(options={"goal_index": 7})
        assert info_a["goal_index"] == info_b["goal_index"] == 7
        np.testing.assert_array_equal(a, b)

    def test_goal_index_out_of_range_is_rejected(self, env):
        with pytest.raises(ConfigError, match="goal_index"):
            env.reset(options={"goal_index": 50})

    def test_nan_action_is_rejected(self, env):
        env.reset(seed=0)
        with pytest.raises(NonFiniteError, match="NaN"):
            env.step(np.array([np.nan, 0, 0, 0], np.float32))

    def test_nan_observation_is_rejected(self, env):
        with pytest.raises(NonFiniteError, match="NaN/inf observation"):
            env._check_obs(np.array([0.0, np.inf]))


def test_unknown_task_names_close_matches():
    with pytest.raises(ConfigError, match=r"unknown Meta-World task 'pusj-v3'.*push-v3"):
        MetaWorldConfig("pusj-v3")


def test_all_fifty_tasks_are_listed():
    names = metaworld_task_names()
    assert len(names) == 50 and "push-v3" in names


def test_episode_length_limit_is_validated():
    with pytest.raises(ConfigError, match="max_episode_steps"):
        MetaWorldConfig("push-v3", max_episode_steps=501)


def test_expert_quality_knob_orders_success():
    """The clean expert solves reach; heavy mis-targeting makes it fail (mostly: a shifted goal
    clipped back into the workspace can still land near the true one)."""
    cfg = MetaWorldConfig("reach-v3", max_episode_steps=100)
    vec = make_vector_env(cfg, 1, asynchronous=False)
    try:
        starts = [[0, i] for i in range(4)]
        good = collect_episodes(
            vec, ExpertPolicy("reach-v3", ExpertConfig(action_noise=0.0), 1), starts,
            "reach-v3", 100, progress=False,
        )
        bad_cfg = ExpertConfig(action_noise=0.0, mistarget_prob=1.0, mistarget_offset=0.3)
        bad = collect_episodes(
            vec, ExpertPolicy("reach-v3", bad_cfg, 1), starts, "reach-v3", 100, progress=False,
        )
    finally:
        vec.close()
    assert all(e.success for e in good)
    assert sum(e.success for e in bad) <= 1
    assert np.mean([e.true_return for e in good]) > np.mean([e.true_return for e in bad])


def test_expert_pauses_emit_zero_actions():
    expert = NoisyExpert("reach-v3", ExpertConfig(action_noise=0.0, pause_prob=1.0, pause_steps=3))
    expert.begin_episode()
    obs = np.zeros(39)
    assert np.all(expert.act(obs) == 0)


def test_expert_config_validation():
    with pytest.raises(ConfigError):
        ExpertConfig(pause_prob=1.5)
    with pytest.raises(ConfigError):
        ExpertConfig(action_noise=-0.1)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_env_sets_goals_per_worker(asynchronous):
    cfg = MetaWorldConfig("reach-v3", max_episode_steps=5)
    vec = make_vector_env(cfg, 2, asynchronous=asynchronous)
    try:
        assert isinstance(vec, gym.vector.VectorEnv)
        vec.set_attr("next_variation", [[0, 3], [2, 11]])
        obs, info = vec.reset()
        assert list(info["goal_index"]) == [3, 11]
        assert not np.array_equal(obs[0], obs[1])
        single = MetaWorldEnv(cfg)
        expected, _ = single.reset(options={"variation": [2, 11]})
        np.testing.assert_allclose(obs[1], expected)
        other_set, _ = single.reset(options={"goal_index": 11})  # goal 11 of goal set 0
        assert not np.allclose(other_set, expected)
    finally:
        vec.close()


def test_collect_episodes_records_every_requested_goal():
    cfg = MetaWorldConfig("reach-v3", max_episode_steps=10)
    vec = make_vector_env(cfg, 2, asynchronous=False)
    try:
        episodes = collect_episodes(
            vec, ExpertPolicy("reach-v3", ExpertConfig(), 2), [[0, 1], [0, 2], [3, 3]],
            "reach-v3", 10, progress=False,
        )
    finally:
        vec.close()
    assert [e.meta["variation"] for e in episodes] == [[0, 1], [0, 2], [3, 3]]
    assert all(len(e) == 10 and e.obs_dim == 39 and e.act_dim == 4 for e in episodes)
    assert all(np.isfinite(e.rewards).all() for e in episodes)


def test_metaworld_splits_are_disjoint_and_the_test_split_has_100_variations():
    task = MetaWorldTask(MetaWorldConfig("push-v3"))
    splits = {s: {tuple(v) for v in task.variations(s)} for s in ("train", "validation", "test")}
    assert len(splits["test"]) == 100 and len(splits["train"]) == 50
    assert not splits["train"] & splits["test"] and not splits["validation"] & splits["test"]
    assert task.first("test", 100) == [list(v) for v in sorted(splits["test"])]
    with pytest.raises(ConfigError, match="share"):
        MetaWorldConfig("push-v3", train_goal_sets=[0, 2], test_goal_sets=[2, 3])


def test_peel_test_scenes_are_disjoint_from_recorder_and_demo_seeds():
    from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task

    task = PeelV0Task(PeelTaskConfig())
    train, test = task.variations("train"), task.variations("test")
    assert range(0, 10_000)[-1] in train and not set(range(0, 10_000)) & set(test[:10_000])
    assert test[0] > train[-1] and task.variations("validation")[0] > train[-1]
    assert task.action_units == "m, rad per tick" and np.all(task.action_high < 0.1)


def test_peel_episodes_succeed_by_their_end_state():
    from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task

    task = PeelV0Task(PeelTaskConfig())
    assert task.episode_meta()["success_at_end"] is True
    vec_env = task.make_vector_env(1)
    try:
        episodes = collect_episodes(
            vec_env, task.make_expert(None, num_envs=1), task.first("validation", 3), task.name,
            task.episode_steps, progress=False, meta=task.episode_meta(),
            quality_names=task.quality_metric_names,
        )
    finally:
        vec_env.close()
    assert all(e.meta["success_at_end"] for e in episodes)
    assert [e.success for e in episodes] == [e.meta["metrics"]["success"] for e in episodes]
