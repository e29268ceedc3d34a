"""``robopref record``: help, one-line errors, --resume, and the 10-episode scripted recording
of the Peel contact task that a BC policy is then trained on and evaluated in ``PeelEnv``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import robopref_in_process

from robopref.data import load_episodes

FAST = ["record.realtime=false", "progress=false"]


def robopref(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "robopref.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


def session(root: Path) -> tuple[dict, str]:
    """The newest session folder beside the dataset: recording.json and config.yaml."""
    sessions = sorted((root.parent / f"{root.name}.sessions").iterdir())
    newest = sessions[-1]
    return json.loads((newest / "recording.json").read_text()), (newest / "config.yaml").read_text()


def test_help_lists_record_and_its_config_groups():
    result = robopref("--help")
    assert result.returncode == 0
    for word in (
        "record",
        "--resume",
        "hardware",
        "teleop",
        "sensor",
        "spacemouse",
        "gamepad",
        "scripted",
        "netft",
        "ft300",
        "franka",
        "ur",
    ):
        assert word in result.stdout, word


# Options a real device needs before its config validates (the shipped defaults are empty).
REQUIRED = {"ur": ["hardware.host=10.0.0.2"], "franka": ["hardware.fci_ip=172.16.0.2"]}


def test_every_record_option_composes_and_builds_its_config():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from robopref.cli import _config_groups
    from robopref.hardware import ARMS, SENSORS, TELEOPS

    registries = {"hardware": ARMS, "sensor": SENSORS, "teleop": TELEOPS}
    # Keys the CLI reads itself before handing the rest to the device's config class.
    cli_keys = {"name", "watchdog", "policy", "expert"}
    groups = _config_groups()
    for group, registry in registries.items():
        assert set(groups[group]) - {"none"} == set(registry), group
        for option in groups[group]:
            overrides = [f"{group}={option}", *REQUIRED.get(option, [])]
            with initialize_config_module("robopref.configs", version_base=None):
                cfg = OmegaConf.to_container(compose("record", overrides=overrides), resolve=True)
            values = cfg[group]
            assert values["name"] == option
            if option == "none":
                continue
            options = {k: v for k, v in values.items() if k not in cli_keys}
            config = registry.config(option, options, group)
            if group == "hardware":
                assert config.control_hz == cfg["record"]["fps"]  # the arm runs at record.fps



@pytest.mark.parametrize("config_name", ["record", "finetune"])
def test_every_safety_option_builds_a_safety_config(config_name):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from robopref.cli import _config_groups
    from robopref.hardware.safety import SafetyConfig
    from robopref.registry import build_config

    options = _config_groups()["safety"]
    assert {"default", "peel_cell"} <= set(options)
    for option in options:
        with initialize_config_module("robopref.configs", version_base=None):
            cfg = OmegaConf.to_container(
                compose(config_name, overrides=[f"safety={option}"]), resolve=True)
        config = build_config(SafetyConfig, cfg["safety"], "safety")
        if option == "peel_cell":  # the box holds every Peel-v0 fruit's top and the guard is on
            assert config.workspace_min[2] < 0.15 - 0.01 + 0.035 < config.workspace_max[2]
            assert config.contact_force_n < config.max_force_n


def test_record_errors_are_one_line(tmp_path):
    root = f"record.root={tmp_path}/ds"
    line = one_error_line(robopref("record", "hardware=fake", "sensor=sim", root, *FAST))
    assert "sensor=sim reads the simulated arm" in line
    line = one_error_line(robopref("record", "hardware=ur", "teleop=scripted", root, *FAST))
    assert "ur host is empty" in line
    line = one_error_line(robopref("record", "record.nonsense=1", root))
    assert "record.nonsense" in line
    assert not (tmp_path / "ds").exists()


def test_record_with_the_fake_arm_then_resume(tmp_path, capsys):
    root = tmp_path / "ds"
    args = [
        "record",
        "hardware=fake",
        "teleop=scripted",
        "teleop.policy=none",
        "record.fps=50",
        "record.max_episode_s=0.2",
        f"record.root={root}",
        *FAST,
    ]
    out = robopref_in_process(*args, "record.num_episodes=2", capsys=capsys)
    assert "rerecord" in out and "scripted operator" in out  # the buttons' help comes first
    assert "episodes saved" in out and "achieved rate" in out  # the final table
    summary, config = session(root)
    assert summary["episodes_saved"] == 2 and summary["first_episode_index"] == 0
    assert "fps: 50" in config and "name: fake" in config
    assert not (root / "recording.json").exists()  # session files stay out of the dataset

    with pytest.raises(SystemExit) as info:
        robopref_in_process(*args, "record.num_episodes=1", capsys=capsys)
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "already exists" in error and "--resume" in error

    robopref_in_process(*args, "record.num_episodes=1", "--resume", capsys=capsys)
    summary, config = session(root)
    assert summary["first_episode_index"] == 2 and summary["dataset_episodes"] == 3
    assert "resume: true" in config
    episodes = load_episodes(root)
    assert [len(e) for e in episodes] == [9, 9, 9]  # 10 ticks at 50 Hz, the last one saves
    assert [e.meta["seed"] for e in episodes] == [0, 1, 2]


def test_record_a_camera_as_video_with_a_reset_phase(tmp_path, capsys):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "ds"
    out = robopref_in_process(
        "record",
        "hardware=sim",
        "teleop=scripted",
        "teleop.policy=none",
        "record.num_episodes=2",
        "record.max_episode_s=0.5",
        "record.cameras=[front]",
        "record.reset_time_s=1",
        f"record.root={root}",
        *FAST,
        capsys=capsys,
    )
    # Not a terminal here: the countdown prints a line per second, then the news.
    assert "reset the scene: 1 s left" in out and "reset done" in out
    assert "episode 1 durable" in out and "opening the dataset writer" in out
    assert "save: durable after" in out and "reset phase" in out
    summary, config = session(root)
    assert summary["episodes_saved"] == 2 and summary["reset_time_s"] == 1.0
    assert "video: true" in config
    ds = LeRobotDataset("robopref/demos", root=root)
    assert ds.features["observation.images.front"]["dtype"] == "video"
    assert sorted(
        p.name for p in (root / "videos" / "observation.images.front").rglob("*.mp4")
    ) == [
        "file-000.mp4",
        "file-001.mp4",
    ]
    (first, second) = load_episodes(root)
    assert first.images["front"].shape == (9, 96, 128, 3) and len(second) == 9


def test_record_with_a_policy_driving_the_fake_arm(tmp_path, capsys):
    from robopref.policies import BCConfig, BCPolicy

    checkpoint = tmp_path / "policy.pt"
    BCPolicy(24, 6, BCConfig(hidden_sizes=[8], action_low=-0.001, action_high=0.001)).save(
        checkpoint
    )
    root = tmp_path / "ds"
    args = [
        "record",
        "hardware=fake",
        "teleop=scripted",
        "teleop.policy=none",
        "record.fps=50",
        "record.max_episode_s=0.2",
        "record.num_episodes=1",
        f"record.root={root}",
        *FAST,
    ]
    robopref_in_process(*args, f"policy_checkpoint={checkpoint}", capsys=capsys)
    (episode,) = load_episodes(root)
    # The policy acted (the scripted operator without a policy would hold still).
    assert np.abs(episode.actions[:, :3]).max() > 0

    wrong = tmp_path / "wrong.pt"
    BCPolicy(29, 6, BCConfig(hidden_sizes=[8])).save(wrong)
    with pytest.raises(SystemExit) as info:
        other_root = [a for a in args if not a.startswith("record.root")]
        robopref_in_process(
            *other_root, f"record.root={tmp_path}/ds2", f"policy_checkpoint={wrong}", capsys=capsys
        )
    assert info.value.code == 2
    assert "29-dim observations" in capsys.readouterr().err


def record_peel_and_train_bc(root: Path, eval_seeds: range, capsys) -> tuple[dict, float, list]:
    """Record 10 scripted Peel episodes through the CLI (DART-style: the operator's commands
    executed with 1 mm / 1 mrad of noise, its clean commands recorded as ``action.intended``),
    train BC on the intended actions (PeelEnv's observation layout), and evaluate it in
    PeelEnv; returns the recording summary, the BC success rate and the removed fraction per
    evaluation episode."""
    from robopref.data import load_episodes
    from robopref.envs.peel import OBS_DIM, PeelConfig, PeelEnv
    from robopref.policies import BCConfig, BCPolicy, train_bc
    from robopref.training import Trainer, TrainerConfig

    robopref_in_process(
        "record",
        "hardware=sim",
        "teleop=scripted",
        "sensor=sim",
        "task=peel",
        "record.num_episodes=10",
        "record.max_episode_s=20",
        "teleop.execution_noise=0.001",
        f"record.root={root}",
        *FAST,
        capsys=capsys,
    )
    summary, _ = session(root)
    assert summary["episodes_saved"] == 10

    episodes = load_episodes(root)
    assert len(episodes) == 10 and all(len(e) == 399 for e in episodes)  # 400 ticks, 1 saves
    assert episodes[0].observations.shape[1] == OBS_DIM  # PeelEnv's observation layout
    assert episodes[0].wrenches.shape == (399, 6)
    summary["recorded_removed_fractions"] = [
        e.meta["metrics"]["removed_fraction"] for e in episodes
    ]

    # The recorded actions are what the arm was sent: replayed open-loop in PeelEnv from the
    # same scene they reproduce the recorded states and the peel.
    config = PeelConfig()
    env = PeelEnv(config)
    first = episodes[0]
    obs, _ = env.reset(seed=first.meta["seed"])
    for t in range(len(first)):
        assert np.allclose(obs, first.observations[t], atol=1e-4), t
        obs, _, _, _, info = env.step(first.actions[t])
    assert info["removed_fraction"] == first.meta["metrics"]["removed_fraction"]
    assert info["success"] == first.meta["metrics"]["success"]

    # Noise was executed, so the sent actions differ from the intended labels BC learns.
    labelled = load_episodes(root, action_key="action.intended")
    pairs = zip(episodes, labelled, strict=True)
    noise = np.concatenate([sent.actions - meant.actions for sent, meant in pairs])
    assert 0.0005 < noise[:, :3].std() < 0.002

    torch.manual_seed(0)
    bc = BCConfig(
        hidden_sizes=[256, 256], action_low=-0.05, action_high=0.05, normalize_actions=True
    )
    policy = BCPolicy(OBS_DIM, 6, bc)
    trainer = Trainer(
        TrainerConfig(steps=3000, batch_size=256, lr=1e-3, device="cpu", progress=False),
        name="bc",
    )
    train_bc(policy, labelled, trainer)

    successes, removed = [], []
    for seed in eval_seeds:
        obs, info = env.reset(seed=seed)
        for _ in range(config.episode_steps):
            obs, _, terminated, truncated, info = env.step(policy.act(obs[None])[0])
            if terminated or truncated:
                break
        successes.append(bool(info["success"]))
        removed.append(float(info["removed_fraction"]))
    env.close()
    rate = float(np.mean(successes))
    with capsys.disabled():
        print(
            f"\nscripted expert success in the recording: {summary['success_rate']:.2f}; BC on "
            f"the 10 demos in PeelEnv (seeds {eval_seeds.start}-{eval_seeds.stop - 1}): success "
            f"{rate:.2f}, removed fraction {np.round(removed, 2).tolist()}"
        )
    return summary, rate, removed


def test_peel_recording_through_the_cli_trains_a_bc_policy(tmp_path, capsys):
    """The issue's CI check: 10 scripted-teleop episodes of the simulated contact task through
    ``robopref record``, read back, BC trained on them and evaluated in PeelEnv on 5 new
    scenes (the success rate is printed; the slow test below measures it over 20)."""
    summary, rate, removed = record_peel_and_train_bc(tmp_path / "peel", range(100, 105), capsys)
    # The demonstrator peels nearly everything; the executed noise costs it success (measured
    # 0.2: gouged 2-13% against the 5% allowed, peak force 28-31 N against 30 N), which is why
    # BC learns from the intended commands, not the sent ones.
    recorded = summary["recorded_removed_fractions"]
    assert np.mean(recorded) >= 0.9, recorded
    assert np.mean(removed) > 0.2 and np.all(np.isfinite(removed))


@pytest.mark.slow
def test_bc_from_recorded_peel_demos_completes_the_task(tmp_path, capsys):
    """Over 20 new scenes, BC from the 10 recorded demos completes the task (removed >= 0.8,
    gouged <= 5%, peak force <= 30 N) at a measured rate. What made it possible: one stroke
    direction and a continuous approach in the expert (no discontinuity for BC to blend into
    a stall), the blade's position in the fruit frame in the observation, DART-style demos
    (executed noise, intended labels) and action normalisation in BC. Without the executed
    noise (clean demonstrations), a diagnostic run with the same expert measured 0 of 10."""
    _, rate, removed = record_peel_and_train_bc(tmp_path / "peel", range(200, 220), capsys)
    assert rate >= 0.2, (rate, removed)  # measured 0.40 (8 of 20), mean removed 0.72
