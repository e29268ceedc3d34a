"""Peel-v0: env API, determinism, the layer bookkeeping, and the scripted expert's quality."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robopref.envs import TASKS, PeelConfig, PeelEnv, PeelExpert, PeelExpertConfig, PeelTask
from robopref.envs.peel import ENV_STATE_DIM, GYM_ID, N_LANES, OBS_DIM, register_gym_envs
from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.safety import SafeArm, SafetyConfig
from robopref.hardware.sim import SimArmConfig, SimForceArm

METRIC_KEYS = {
    "removed_fraction",
    "gouged_fraction",
    "depth_error_per_segment",
    "peak_contact_force_n",
    "mean_contact_force_n",
    "over_force_ticks",
    "success",
}


def run_episode(env: PeelEnv, expert: PeelExpert, seed: int) -> dict:
    obs, _ = env.reset(seed=seed)
    expert.begin_episodes(1)
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs[None])[0])
        if terminated or truncated:
            return info


@pytest.fixture(scope="module")
def env():
    env = PeelEnv(PeelConfig())
    yield env
    env.close()


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "options",
    [
        {"episode_steps": 0},
        {"min_depth_m": 0.003},  # above the target depth
        {"max_depth_m": 0.001},  # below the target depth
        {"force_limit_n": -1.0},
        {"layer_half_angle_rad": 2.0},
        {"radius_range_m": (0.05, 0.04)},
        {"object_center_m": (0.5, 0.0)},
        {"n_arc": 0},
        {"n_arc": 2},  # fewer patch columns than lanes
    ],
)
def test_bad_peel_config(options):
    with pytest.raises(ConfigError) as info:
        PeelConfig(**options)
    assert "\n" not in str(info.value)


def test_bad_expert_config():
    with pytest.raises(ConfigError):
        PeelExpertConfig(pause_prob=2.0)
    with pytest.raises(ConfigError):
        PeelExpertConfig(action_noise=-0.1)
    with pytest.raises(ConfigError):
        PeelExpertConfig(depth_offset_m=0.5)


def test_registered_in_envs_registry_and_gymnasium():
    config_cls, task_cls = TASKS["peel"]
    task = task_cls(config_cls(peel={"episode_steps": 3}))
    env = task.make_env(seed=1)
    assert isinstance(env.unwrapped, PeelEnv) and isinstance(env.unwrapped.arm, SafeArm)
    first, _ = env.reset(options={"variation": task.first("test", 1)[0]})
    again, _ = env.reset(options={"variation": task.first("test", 1)[0]})
    np.testing.assert_array_equal(first, again)  # a variation names one scene
    register_gym_envs()
    register_gym_envs()  # idempotent
    env = gym.make(GYM_ID, config=PeelConfig(episode_steps=3))
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 3
    env.close()


# ----------------------------------------------------------------------------- env API
@pytest.mark.filterwarnings("ignore:.*Box observation space (min|max)imum value is")
def test_gymnasium_env_checker_passes():
    register_gym_envs()
    env = gym.make(GYM_ID, config=PeelConfig(episode_steps=20), render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    frame = env.unwrapped.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8


def test_observation_layout_and_info(env):
    obs, info = env.reset(seed=4)
    assert obs.shape == (OBS_DIM,) == (35,) and obs.dtype == np.float32
    live = env.sim.get_observation()
    np.testing.assert_allclose(obs[0:6], live.joint_positions, atol=1e-6)
    np.testing.assert_allclose(obs[12:18], live.tcp_pose, atol=1e-6)
    np.testing.assert_allclose(obs[18:24], live.wrench, atol=1e-5)
    state = obs[24:]
    assert len(state) == ENV_STATE_DIM
    np.testing.assert_allclose(state, env.task.environment_state())
    assert 0.035 <= state[3] <= 0.045 and state[4] == 0.0
    np.testing.assert_array_equal(state[5:8], np.zeros(N_LANES))  # per-lane removed fractions
    tip = live.tcp_pose[:3] - state[:3]  # the tip in the fruit frame: axial, angle, depth
    rho = np.hypot(tip[1], tip[2])
    np.testing.assert_allclose(state[8:], [tip[0], np.arctan2(tip[1], tip[2]),
                                           state[3] + env.task.tip_radius - rho], atol=1e-6)
    assert state[10] < -0.01  # the home pose is well above the skin
    assert set(info) >= METRIC_KEYS
    obs, reward, terminated, truncated, info = env.step(np.zeros(6))
    assert set(info) >= METRIC_KEYS and "true_reward" in info
    assert not terminated and not truncated


def test_actions_are_clipped_to_the_step_limit_and_composed_on_the_target(env):
    env.reset(seed=5)
    before = env._target.copy()
    env.step(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # asks for 1 m in one tick
    assert env._target[0] - before[0] == pytest.approx(env.config.max_translation_step_m)
    with pytest.raises(NonFiniteError):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0]))


def test_same_seed_same_episode_and_different_seed_different_fruit():
    def rollout(seed: int) -> np.ndarray:
        env = PeelEnv(PeelConfig(episode_steps=15))
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trajectory = [obs]
        for _ in range(15):
            obs, *_ = env.step(env.action_space.high * rng.uniform(-1, 1, 6))
            trajectory.append(obs)
        return np.array(trajectory)

    first, again, other = rollout(11), rollout(11), rollout(12)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0, 24:28], other[0, 24:28])


def test_analytic_depth_matches_mujoco_penetration_after_resize():
    """The task changes the fruit's radius in the compiled model; contact must follow it."""
    arm = SimForceArm(SimArmConfig())
    arm.connect()
    for radius in (0.035, 0.045):
        task = PeelTask(PeelConfig(radius_range_m=(radius, radius)))
        task.reset(arm, np.random.default_rng(0))
        pose = arm.get_observation().tcp_pose.copy()
        pose[:3] = task.center + [0.0, 0.0, radius + task.tip_radius - 0.005]
        for _ in range(30):
            arm.send_action(pose)
        tip = arm.get_observation().tcp_pose[:3] - task.center
        depth = radius - (np.hypot(tip[1], tip[2]) - task.tip_radius)
        touching = [
            arm.data.contact[i].dist
            for i in range(arm.data.ncon)
            if arm.model.geom(arm.data.contact[i].geom1).name == "blade_tip"
        ]
        assert len(touching) == 1
        assert depth > 0.0005
        assert depth == pytest.approx(-touching[0], abs=2e-5)


# ----------------------------------------------------------------------------- bookkeeping
def test_layer_bookkeeping_from_a_synthetic_trace():
    config = PeelConfig(radius_range_m=(0.04, 0.04), object_jitter_m=(0.0, 0.0, 0.0))
    task = PeelTask(config)
    task.reset(SimForceArm(SimArmConfig()), np.random.default_rng(0))
    centre, r, tip = task.center, task.radius, task.tip_radius
    x = np.linspace(-0.07, 0.07, 400)

    def path(depth: float) -> np.ndarray:
        return centre + np.stack([x, 0 * x, 0 * x + r + tip - depth], axis=1)

    task.process_trace(path(-0.002), np.zeros(400))  # hovering above: nothing happens
    assert task.metrics()["removed_fraction"] == 0.0
    task.process_trace(path(0.0015), np.full(400, 8.0))  # a good stroke along the top
    m = task.metrics()
    # The blade (12 mm wide) takes the middle columns along the whole layer, no gouging.
    assert task.removed[:, 3:5].all() and not task.removed[:, 0].any()
    # Lanes are thirds of the arc (columns 0-2, 3-4, 5-7): the middle one is peeled.
    np.testing.assert_allclose(task.lane_removed_fractions(), [1 / 3, 1.0, 1 / 3])
    np.testing.assert_allclose(task.environment_state()[5:8], [1 / 3, 1.0, 1 / 3], rtol=1e-6)
    assert 0.2 < m["removed_fraction"] < 0.6 and m["gouged_fraction"] == 0.0
    assert m["depth_error_per_segment"] == pytest.approx([0.0] * 6, abs=1e-9)
    assert m["mean_contact_force_n"] == pytest.approx(8.0)
    assert not m["success"]
    task.process_trace(path(0.004), np.full(400, 40.0))  # too deep, too hard
    m = task.metrics()
    assert m["gouged_fraction"] > 0.2 and m["peak_contact_force_n"] == 40.0
    assert m["over_force_ticks"] == 400
    assert all(0.0 < e < 0.003 for e in m["depth_error_per_segment"])


def test_task_runs_through_the_safety_layer_like_the_recorder_uses_it():
    arm = SafeArm(SimForceArm(SimArmConfig()), SafetyConfig())
    task = PeelTask()
    task.reset(arm, np.random.default_rng(0))
    arm.connect()
    pose = arm.get_observation().tcp_pose
    sent = arm.send_action(pose)
    task.update(arm)
    assert arm.arm.pop_trace()["tcp_position"].shape == (0, 3)  # the task consumed it
    assert np.asarray(sent).shape == (6,)
    assert arm.arm.render("front", 64, 64).shape == (64, 64, 3)
    assert task.metrics()["removed_fraction"] == 0.0


# ----------------------------------------------------------------------------- the expert
SEEDS = range(5)


def test_good_expert_succeeds_and_degraded_experts_do_worse(env, capsys):
    good = [run_episode(env, PeelExpert(PeelExpertConfig(), env.config, seed=s), s) for s in SEEDS]
    deep = [
        run_episode(env, PeelExpert(PeelExpertConfig(depth_offset_m=0.0015), env.config, s), s)
        for s in SEEDS[:3]
    ]
    shallow = [
        run_episode(env, PeelExpert(PeelExpertConfig(depth_offset_m=-0.0012), env.config, s), s)
        for s in SEEDS[:2]
    ]
    rate = np.mean([i["success"] for i in good])
    with capsys.disabled():
        for name, infos in (("good", good), ("deep", deep), ("shallow", shallow)):
            print(
                f"\npeel expert {name}: success {np.mean([i['success'] for i in infos]):.2f} "
                f"removed {np.mean([i['removed_fraction'] for i in infos]):.2f} "
                f"gouged {np.mean([i['gouged_fraction'] for i in infos]):.2f} "
                f"peak {np.mean([i['peak_contact_force_n'] for i in infos]):.1f} N"
            )
    assert rate >= 0.8
    for info in good:
        assert info["removed_fraction"] >= 0.8 and info["gouged_fraction"] <= 0.05
        assert max(info["depth_error_per_segment"]) < 0.001
    assert np.mean([i["success"] for i in deep]) <= rate - 0.6
    assert np.mean([i["gouged_fraction"] for i in deep]) > 0.3
    assert np.mean([i["removed_fraction"] for i in shallow]) < 0.2


def test_expert_acts_from_the_observation_alone(env):
    """The expert keeps no hidden schedule: fed an episode's observations in reverse order, a
    fresh expert returns the same actions, and its strokes peel the lanes in order."""
    expert = PeelExpert(PeelExpertConfig(), env.config)
    obs, _ = env.reset(seed=8)
    observations, actions, lanes = [], [], []
    for _ in range(env.config.episode_steps):
        action = expert.act(obs[None])[0]
        observations.append(obs)
        actions.append(action)
        obs, *_ = env.step(action)
        lanes.append(obs[29:32])
    fresh = PeelExpert(PeelExpertConfig(), env.config)
    replayed = [fresh.act(o[None])[0] for o in observations[::-1]][::-1]
    np.testing.assert_array_equal(np.array(replayed), np.array(actions))
    lanes = np.array(lanes)
    finished = [int(np.argmax(lanes[:, k] >= PeelExpert.LANE_DONE)) for k in range(N_LANES)]
    assert lanes[-1].min() >= PeelExpert.LANE_DONE and finished == sorted(finished)


def test_noisy_expert_exceeds_the_force_limit(env):
    info = run_episode(env, PeelExpert(PeelExpertConfig(action_noise=0.003), env.config, 7), 7)
    assert not info["success"]
    assert info["peak_contact_force_n"] > env.config.force_limit_n


def test_expert_acts_on_a_batch(env):
    obs, _ = env.reset(seed=0)
    expert = PeelExpert(PeelExpertConfig(), env.config)
    expert.begin_episodes(2)
    actions = expert.act(np.stack([obs, obs]))
    assert actions.shape == (2, 6) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= env.action_space.high + 1e-7)
    np.testing.assert_array_equal(actions[0], actions[1])


def test_env_with_safety_layer_runs_the_expert_to_success():
    env = PeelEnv(PeelConfig(), safety=SafetyConfig())
    assert isinstance(env.arm, SafeArm)
    expert = PeelExpert(PeelExpertConfig(), env.config)
    info = run_episode(env, expert, 3)
    assert info["success"] and not info["protective_stop"]
    fruit = env.sim.model.geom("fruit").id
    assert env.sim.model.geom_rgba[fruit][2] > 0.5  # rendered peeled (pale, not green)
    # The second episode starts from a teleported home pose: the safety layer must count its
    # step limits from there, not drag the arm back toward the first episode's end.
    obs, _ = env.reset(seed=4)
    env.step(np.zeros(6))
    assert np.linalg.norm(env.sim.get_observation().tcp_pose[:3] - obs[12:15]) < 0.002


def test_env_stop_terminates_and_reset_recovers():
    env = PeelEnv(PeelConfig(episode_steps=10), safety=SafetyConfig())
    env.reset(seed=0)
    env.arm.stop()
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert terminated and info["protective_stop"]
    env.reset(seed=1)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert not terminated and not info["protective_stop"]
    assert env.sim.model.geom_rgba[env.sim.model.geom("fruit").id][2] < 0.3  # green again
