"""The recorder: frames and metadata, buttons, protective stops, loop timing, and crash safety
(a recording SIGKILLed mid-episode or mid-save keeps every saved episode; --resume continues)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robopref.data import load_episodes
from robopref.data.durable_writer import DurableEpisodeWriter
from robopref.errors import ConfigError, DatasetError
from robopref.geometry import compose_delta, pose_delta
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.safety import SafeArm, SafetyConfig
from robopref.hardware.teleop import ScriptedConfig, ScriptedTeleop
from robopref.recording import LoopTimer, Recorder, RecorderConfig, format_summary

REPO = "test/recording"
STEP = np.array([0.002, -0.001, 0.0005, 0.0, 0.0, 0.01])  # m and rad per tick


def lerobot_dataset(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO, root=root)


def episode_lengths(ds) -> list[int]:
    index = np.asarray(ds.hf_dataset["episode_index"])
    return [int((index == i).sum()) for i in range(ds.num_episodes)]


def recorder(
    root: Path,
    teleop_config: ScriptedConfig,
    policy=None,
    hz: int = 100,
    sensor=None,
    task=None,
    camera=None,
    **overrides,
) -> Recorder:
    """A recorder of the fake arm driven by a scripted operator (constant ``STEP``)."""
    config = RecorderConfig(
        root=str(root), repo_id=REPO, fps=hz, max_episode_s=0.5, realtime=False, **overrides
    )
    arm = FakeForceArm(FakeArmConfig(control_hz=float(hz)))
    policy = (lambda obs: STEP) if policy is None else policy
    teleop = ScriptedTeleop(teleop_config, policy=policy)
    return Recorder(config, arm, teleop, sensor, task, camera, log=lambda m: None)


# -- pose arithmetic and timing ------------------------------------------------------------
def test_compose_and_pose_delta_invert_each_other_and_match_scipy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        pose = np.r_[rng.normal(size=3), rng.normal(size=3)]
        delta = np.r_[rng.normal(size=3) * 0.01, rng.normal(size=3) * 0.3]
        moved = compose_delta(pose, delta)
        expected = Rotation.from_rotvec(delta[3:]) * Rotation.from_rotvec(pose[3:])
        assert np.allclose(Rotation.from_rotvec(moved[3:]).as_matrix(), expected.as_matrix())
        assert np.allclose(moved[:3], pose[:3] + delta[:3])
        assert np.allclose(pose_delta(pose, moved), delta)
    # Tool pointing down (180 deg): the result stays continuous with the input rotation vector.
    down = np.array([0.4, 0.0, 0.3, np.pi, 0.0, 0.0])
    nudged = compose_delta(down, np.array([0, 0, 0, 0.01, 0, 0]))
    assert np.linalg.norm(nudged[3:] - down[3:]) < 0.02


class FakeClock:
    """A clock that ``sleep`` advances; ``work`` adds time spent inside a tick."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1e-6  # reading a clock takes a little time, so spins end
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_loop_timer_paces_counts_overruns_and_keeps_phase():
    clock = FakeClock()
    timer = LoopTimer(0.01, realtime=True, spin_s=0.0005, clock=clock, sleep=clock.sleep)
    starts = []
    for tick in range(10):
        starts.append(timer.wait())
        if tick == 4:
            clock.now += 0.025  # this tick's work overruns two and a half periods
        timer.done()
    stats = timer.stats()
    gaps = np.diff(starts)
    assert np.allclose(gaps[:4], 0.01, atol=1e-4)
    # The overrun skips the deadlines already past instead of bursting: the next start is on
    # the original phase (a multiple of the period after the first start).
    assert np.isclose((starts[5] - starts[0]) / 0.01, 7, atol=0.02)  # the first after 6.5
    assert np.allclose(gaps[5:], 0.01, atol=1e-4)
    assert stats["missed_deadlines"] == 1
    assert stats["period_error_max_ms"] == pytest.approx(20.0, abs=0.1)
    assert stats["periods"] == 9


def test_loop_timer_counts_late_wakeups():
    clock = FakeClock()

    def oversleep(seconds):
        clock.sleep(seconds + 0.004)  # a loaded OS wakes the loop 4 ms late

    timer = LoopTimer(0.01, realtime=True, clock=clock, sleep=oversleep)
    for _ in range(5):
        timer.wait()
        timer.done()
    stats = timer.stats()
    assert stats["missed_deadlines"] == 4  # every wait after the first
    assert stats["lateness_max_ms"] == pytest.approx(3.5, abs=0.1)


def test_config_errors_are_one_line():
    for bad in (
        dict(fps=0),
        dict(num_episodes=0),
        dict(max_episode_s=-1.0),
        dict(cameras=["front", "front"]),
        dict(repo_id="noslash"),
        dict(root=" "),
    ):
        with pytest.raises(ConfigError) as info:
            RecorderConfig(**{"root": "x", **bad})
        assert "\n" not in str(info.value)


def test_rate_mismatch_with_the_arm_is_refused(tmp_path):
    config = RecorderConfig(root=str(tmp_path / "ds"), repo_id=REPO, fps=20, realtime=False)
    rec = Recorder(
        config, FakeForceArm(FakeArmConfig(control_hz=100.0)), ScriptedTeleop(ScriptedConfig())
    )
    with pytest.raises(ConfigError, match="control_hz to 20"):
        rec.run()
    assert not (tmp_path / "ds").exists()


# -- recording -----------------------------------------------------------------------------
def test_records_episodes_readable_by_lerobot_and_robopref(tmp_path):
    root = tmp_path / "ds"
    rec = recorder(root, ScriptedConfig(save_every=8, intervention_ticks=((2, 5),)), num_episodes=3)
    summary = rec.run()
    assert summary["episodes_saved"] == 3 and summary["dataset_episodes"] == 3
    assert not rec.arm.is_connected and not rec.teleop.is_connected  # it connected them

    ds = lerobot_dataset(root)
    assert ds.num_episodes == 3 and episode_lengths(ds) == [7, 7, 7]  # the save tick: no frame
    assert ds.meta.fps == 100 and ds.meta.tasks.index.tolist() == ["teleoperated demonstration"]
    assert ds.features["observation.state"]["shape"] == (24,)
    assert ds.features["observation.wrench"]["shape"] == (6,)
    frame = ds[3]
    assert frame["observation.state"].shape == (24,) and frame["action"].shape == (6,)

    episodes = load_episodes(root)
    assert [len(e) for e in episodes] == [7, 7, 7]
    first = episodes[0]
    # Actions are what was sent after the safety layer; the fake arm takes them unclipped.
    assert np.allclose(first.actions, STEP, atol=1e-6)
    # State = joint pos (6) | joint vel (6) | TCP pose (6) | wrench (6); the TCP moves by the
    # commanded steps (the fake arm tracks half the remaining error per tick).
    tcp_x = first.observations[:, 12]
    assert np.all(np.diff(tcp_x) > 0)
    meta = first.meta
    assert meta["outcome"] == "save" and meta["length"] == 7
    assert meta["interventions"] == 1 and meta["intervention_steps"] == 3
    assert meta["timing"]["periods"] == 7 and meta["timing"]["realtime"] is False
    assert summary["timing"]["periods"] == 21
    assert "episodes saved" in format_summary(summary)


class ConstantPolicy:
    """A ``robopref.policies.Policy`` that always asks for ``step``; records what it saw."""

    def __init__(self, step: np.ndarray):
        self.step, self.seen, self.episodes = step, [], 0

    def begin_episodes(self, n: int) -> None:
        self.episodes += 1

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(obs.copy())
        return np.tile(self.step, (len(obs), 1))


def test_a_policy_drives_and_the_person_takes_over_while_intervening(tmp_path):
    root = tmp_path / "ds"
    config = RecorderConfig(
        root=str(root), repo_id=REPO, fps=100, max_episode_s=0.5, realtime=False, num_episodes=2
    )
    policy = ConstantPolicy(-STEP)
    # The person (scripted here) asks for +STEP and intervenes on reads 2, 3 and 4.
    teleop = ScriptedTeleop(
        ScriptedConfig(save_every=8, intervention_ticks=((2, 5),)), policy=lambda obs: STEP
    )
    arm = FakeForceArm(FakeArmConfig(control_hz=100.0))
    Recorder(config, arm, teleop, policy=policy, log=lambda m: None).run()

    episodes = load_episodes(root)
    assert policy.episodes == 2 and [len(e) for e in episodes] == [7, 7]
    person = np.zeros(7, bool)
    person[2:5] = True
    assert np.allclose(episodes[0].actions[person], STEP, atol=1e-6)
    assert np.allclose(episodes[0].actions[~person], -STEP, atol=1e-6)
    # The policy saw the recorded state (and no task: no environment state) when it acted.
    assert np.allclose(policy.seen[0][0], episodes[0].observations[0])
    ds = lerobot_dataset(root)
    flags = np.asarray(ds.hf_dataset["intervention"]).reshape(-1)[:7].astype(bool)
    assert np.array_equal(flags, person)


def test_intended_actions_are_recorded_and_load_as_labels(tmp_path):
    """A scripted operator with execution noise: ``action`` holds what was sent (noisy),
    ``action.intended`` what was meant, also on ticks a policy drove (DAgger labels)."""
    from robopref.data import load_episodes

    root = tmp_path / "ds"
    config = RecorderConfig(
        root=str(root), repo_id=REPO, fps=100, max_episode_s=0.5, realtime=False, num_episodes=1
    )
    teleop = ScriptedTeleop(
        ScriptedConfig(save_every=12, intervention_ticks=((0, 6),), execution_noise=0.0005),
        policy=lambda obs: STEP,
    )
    arm = FakeForceArm(FakeArmConfig(control_hz=100.0))
    Recorder(config, arm, teleop, policy=ConstantPolicy(-STEP), log=lambda m: None).run()

    ds = lerobot_dataset(root)
    assert ds.features["action.intended"]["shape"] == (6,)
    sent = load_episodes(root)[0].actions
    intended = load_episodes(root, action_key="action.intended")[0].actions
    assert len(sent) == len(intended) == 11
    np.testing.assert_allclose(intended, np.tile(STEP, (11, 1)), atol=1e-7)
    person = np.arange(11) < 6
    assert not np.allclose(sent[person], STEP, atol=1e-4)  # the person's noisy commands
    np.testing.assert_allclose(sent[person], np.tile(STEP, (6, 1)), atol=5 * 0.0005)
    np.testing.assert_allclose(sent[~person], np.tile(-STEP, (5, 1)), atol=1e-6)  # policy drove
    with pytest.raises(DatasetError, match="action.missing"):
        load_episodes(root, action_key="action.missing")


def test_devices_without_intended_actions_record_no_such_feature(tmp_path):
    from robopref.hardware.teleop import KeyboardTeleop

    assert not KeyboardTeleop.reports_intended_action
    root = tmp_path / "ds"
    rec = recorder(root, ScriptedConfig(save_every=4), num_episodes=1)
    rec.teleop.reports_intended_action = False  # as a device that only knows what it sends
    rec.run()
    assert "action.intended" not in lerobot_dataset(root).features


def test_buttons_save_discard_rerecord_and_quit(tmp_path):
    root = tmp_path / "ds"
    # Reads are counted from connect(); the button's own tick records no frame.
    schedule = {4: "save", 9: "discard", 12: "rerecord", 18: "save", 20: "quit"}
    rec = recorder(root, ScriptedConfig(buttons_schedule=schedule), num_episodes=5, seed=10)
    summary = rec.run()
    assert summary["episodes_saved"] == 2
    assert summary["episodes_discarded"] == 1 and summary["episodes_rerecorded"] == 1
    assert summary["quit"] is True
    episodes = load_episodes(root)
    assert [len(e) for e in episodes] == [4, 5]
    # Episode 0 drew scene seed 10; the discard moved on to 11; 12 was re-recorded as 12.
    assert [e.meta["seed"] for e in episodes] == [10, 12]


def test_time_limit_saves_and_end_on_success(tmp_path):
    class CountTask:
        """A task that succeeds after 5 updates; no simulator needed."""

        def reset(self, arm, rng):
            self.n = 0

        def update(self, arm):
            self.n += 1

        def environment_state(self):
            return np.array([self.n, 1.0], dtype=np.float32)

        def metrics(self):
            return {"success": self.n >= 5, "updates": self.n}

    rec = recorder(tmp_path / "a", ScriptedConfig(), task=CountTask(), num_episodes=1)
    rec.run()
    (timeout,) = load_episodes(tmp_path / "a")
    assert len(timeout) == 50 and timeout.meta["outcome"] == "timeout"  # 0.5 s at 100 Hz
    assert timeout.meta["metrics"] == {"success": True, "updates": 50}
    assert timeout.successes[3] == False and timeout.successes[4] == True  # noqa: E712
    env_state = np.asarray(
        lerobot_dataset(tmp_path / "a").hf_dataset["observation.environment_state"]
    )
    assert env_state[0].tolist() == [0.0, 1.0]  # the state seen before the first action

    rec = recorder(
        tmp_path / "b", ScriptedConfig(), task=CountTask(), num_episodes=2, end_on_success=True
    )
    summary = rec.run()
    assert [len(e) for e in load_episodes(tmp_path / "b")] == [5, 5]
    assert summary["success_rate"] == 1.0


def test_protective_stop_drops_the_episode_and_ends_the_session(tmp_path):
    root = tmp_path / "ds"
    arm = FakeForceArm(FakeArmConfig(control_hz=100.0))
    calls = {"n": 0}

    def policy(obs):
        calls["n"] += 1
        if calls["n"] == 10:  # mid second episode: the tool hits something
            arm.inject_wrench(np.array([0.0, 0.0, 80.0, 0.0, 0.0, 0.0]))
        return STEP

    config = RecorderConfig(
        root=str(root),
        repo_id=REPO,
        fps=100,
        num_episodes=3,
        realtime=False,
        max_episode_s=0.5,
        safety=SafetyConfig(max_force_n=50.0),
    )
    teleop = ScriptedTeleop(ScriptedConfig(save_every=6), policy=policy)
    messages = []
    rec = Recorder(config, arm, teleop, log=messages.append)
    assert isinstance(rec.arm, SafeArm)  # the recorder never commands an unwrapped arm
    summary = rec.run()
    assert summary["episodes_saved"] == 1 and summary["protective_stops"] == 1
    assert summary["quit"] is True
    assert any("protective stop" in m for m in messages)
    assert [len(e) for e in load_episodes(root)] == [5]
    assert rec.arm.is_stopped  # the stop stays latched: the operator clears it


def test_cameras_and_a_separate_wrist_sensor(tmp_path):
    from robopref.hardware.base import SensorStatus, WrenchReading, WrenchSensor

    class ConstantSensor(WrenchSensor):
        def __init__(self):
            self.running, self.biased = False, 0

        def start(self):
            self.running = True

        def stop(self):
            self.running = False

        @property
        def is_running(self):
            return self.running

        def bias(self):
            self.biased += 1

        def read(self):
            status = SensorStatus.STALE if self.biased > 1 else SensorStatus.OK
            return WrenchReading(np.arange(6.0), time.monotonic(), status)

    def camera(name, width, height):
        return np.full((height, width, 3), 10 if name == "front" else 200, np.uint8)

    sensor = ConstantSensor()
    rec = recorder(
        tmp_path / "ds",
        ScriptedConfig(save_every=4),
        sensor=sensor,
        camera=camera,
        num_episodes=2,
        cameras=["front", "wrist"],
        image_width=8,
        image_height=6,
    )
    summary = rec.run()
    assert sensor.biased == 2 and not sensor.running
    episodes = load_episodes(tmp_path / "ds")
    assert episodes[0].images["front"].shape == (3, 6, 8, 3)
    assert np.all(episodes[0].images["front"] == 10)
    assert np.all(episodes[0].images["wrist"] == 200)
    assert np.allclose(episodes[0].wrenches, np.arange(6.0))
    assert [e.meta["sensor_faults"] for e in episodes] == [0]
    # The sensor goes stale in the second episode: the arm stops on the first command after
    # it (the force limit would be blind otherwise), and the episode is not kept.
    assert summary["episodes_saved"] == 1 and summary["protective_stops"] == 1
    stops = [e.detail for e in rec.arm.events if e.kind == "protective_stop"]
    assert [d["reason"] for d in stops] == ["wrist_sensor_stale"]


def test_cameras_need_a_source(tmp_path):
    config = RecorderConfig(root=str(tmp_path / "ds"), repo_id=REPO, cameras=["front"])
    with pytest.raises(ConfigError, match="camera source"):
        Recorder(config, FakeForceArm(), ScriptedTeleop(ScriptedConfig()))


# -- the durable writer --------------------------------------------------------------------
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
    "action": {"dtype": "float32", "shape": (2,), "names": None},
}


def frames(length: int, value: float) -> dict:
    return {
        "observation.state": np.full((length, 3), value, np.float32),
        "action": np.full((length, 2), -value, np.float32),
    }


def test_writer_refuses_to_overwrite_and_to_resume_other_features(tmp_path):
    root = tmp_path / "ds"
    DurableEpisodeWriter(root, REPO, 10, FEATURES).save_episode(frames(3, 1.0), "t", {})
    with pytest.raises(DatasetError, match="--resume"):
        DurableEpisodeWriter(root, REPO, 10, FEATURES)
    other = {**FEATURES, "action": {"dtype": "float32", "shape": (6,), "names": None}}
    with pytest.raises(DatasetError, match="feature 'action'"):
        DurableEpisodeWriter(root, REPO, 10, other, resume=True)


def test_a_save_killed_before_the_swap_leaves_the_dataset_untouched(tmp_path, monkeypatch):
    """The live folder is never written in place: a failure anywhere before the atomic swap
    (here: the swap itself) leaves every file of the previous version byte-identical."""
    import robopref.data.durable_writer as durable_writer

    root = tmp_path / "ds"
    writer = DurableEpisodeWriter(root, REPO, 10, FEATURES)
    writer.save_episode(frames(3, 1.0), "t", {"i": 0})
    writer.save_episode(frames(4, 2.0), "t", {"i": 1})
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def crash(a, b):
        raise OSError("killed")

    monkeypatch.setattr(durable_writer, "_exchange", crash)
    with pytest.raises(OSError, match="killed"):
        writer.save_episode(frames(5, 3.0), "t", {"i": 2})
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".ds.staging-*"))  # the staging clone is cleaned up
    assert lerobot_dataset(root).num_episodes == 2

    monkeypatch.undo()
    assert writer.save_episode(frames(5, 3.0), "t", {"i": 2}) == 2
    ds = lerobot_dataset(root)
    assert episode_lengths(ds) == [3, 4, 5]
    assert [e.meta["i"] for e in load_episodes(root)] == [0, 1, 2]


def test_without_an_atomic_exchange_two_renames_swap_and_an_interrupted_one_is_finished(
    tmp_path, monkeypatch
):
    import errno

    import robopref.data.durable_writer as durable_writer

    def unsupported(a, b):
        raise OSError(errno.EINVAL, "RENAME_EXCHANGE not supported")

    monkeypatch.setattr(durable_writer, "_exchange", unsupported)
    root = tmp_path / "ds"
    writer = DurableEpisodeWriter(root, REPO, 10, FEATURES)
    for i in range(2):
        writer.save_episode(frames(3 + i, float(i)), "t", {"i": i})
    assert episode_lengths(lerobot_dataset(root)) == [3, 4]
    # Between saves the previous version waits beside the dataset as the next save's twin.
    assert [p.name.startswith(".ds.staging-") for p in sorted(tmp_path.iterdir())] == [True, False]

    # Killed between the two renames: the old version is aside, the complete new one staged.
    real_rename = os.rename

    def killed_after_first_rename(src, dst):
        real_rename(src, dst)
        if ".previous-" in str(dst):
            raise KeyboardInterrupt  # stands in for the kill: nothing after it runs

    monkeypatch.setattr(durable_writer.os, "rename", killed_after_first_rename)
    monkeypatch.setattr(durable_writer.shutil, "rmtree", lambda *a, **k: None)  # no cleanup either
    with pytest.raises(KeyboardInterrupt):
        writer.save_episode(frames(5, 2.0), "t", {"i": 2})
    assert not root.exists()
    monkeypatch.undo()

    resumed = DurableEpisodeWriter(root, REPO, 10, FEATURES, resume=True)
    assert resumed.num_episodes == 3  # the staged episode was complete: it is kept
    assert episode_lengths(lerobot_dataset(root)) == [3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# -- crash: SIGKILL a recording subprocess -------------------------------------------------
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
    from robopref.hardware.teleop import ScriptedConfig, ScriptedTeleop
    from robopref.recording import Recorder, RecorderConfig

    root, mode = sys.argv[1], sys.argv[2]
    if mode == "mid_episode":
        # Three 4-frame episodes, then an episode that never ends (realtime, 1000 s).
        teleop = ScriptedConfig(buttons_schedule={4: "save", 9: "save", 14: "save"})
        config = dict(num_episodes=100, max_episode_s=1000.0, realtime=True)
    else:
        # Back-to-back 2-frame episodes: nearly all the time goes into saving them.
        teleop = ScriptedConfig(save_every=3)
        config = dict(num_episodes=1000, max_episode_s=10.0, realtime=False, resume=True)
    rec = Recorder(
        RecorderConfig(root=root, repo_id="test/recording", fps=50, **config),
        FakeForceArm(FakeArmConfig(control_hz=50.0)),
        ScriptedTeleop(teleop, policy=lambda obs: np.full(6, 0.001)),
    )
    rec.run()
    """
)


def start_child(root: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), mode],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def saved_episodes(root: Path) -> int:
    try:
        return len(json.loads((root / "robopref.json").read_text())["episodes"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def wait_for_episodes(child: subprocess.Popen, root: Path, n: int, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while saved_episodes(root) < n:
        if child.poll() is not None:
            pytest.fail(f"recording exited early: {child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"no {n} saved episodes after {timeout} s")
        time.sleep(0.05)


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def test_sigkill_mid_episode_keeps_saved_episodes_and_resume_continues(tmp_path):
    root = tmp_path / "ds"
    child = start_child(root, "mid_episode")
    wait_for_episodes(child, root, 3)
    time.sleep(1.0)  # well inside the fourth episode, which runs for 1000 s
    kill(child)

    ds = lerobot_dataset(root)
    assert ds.num_episodes == 3 and ds.num_frames == 12
    assert episode_lengths(ds) == [4, 4, 4]
    assert np.asarray(ds.hf_dataset["index"]).tolist() == list(range(12))
    assert [len(e) for e in load_episodes(root)] == [4, 4, 4]

    # Resume in this process: two more episodes, indices continue.
    rec = recorder(root, ScriptedConfig(save_every=6), hz=50, num_episodes=2, resume=True)
    summary = rec.run()
    assert summary["first_episode_index"] == 3 and summary["dataset_episodes"] == 5
    ds = lerobot_dataset(root)
    assert episode_lengths(ds) == [4, 4, 4, 5, 5]
    assert np.asarray(ds.hf_dataset["episode_index"]).tolist() == sorted(
        [0] * 4 + [1] * 4 + [2] * 4 + [3] * 5 + [4] * 5
    )
    assert np.asarray(ds.hf_dataset["index"]).tolist() == list(range(22))
    episodes = load_episodes(root)
    assert [len(e) for e in episodes] == [4, 4, 4, 5, 5]
    assert [e.meta["seed"] for e in episodes] == [0, 1, 2, 3, 4]  # fresh scenes on resume


@pytest.mark.slow
def test_sigkill_at_any_moment_of_saving_keeps_a_readable_dataset(tmp_path):
    """Kill recorders that do little but save, at unaligned moments: whatever each was doing
    (cloning, lerobot's writes, fsync, the swap, cleanup), the dataset reads back whole and
    agrees with its sidecar, and the next session resumes it."""
    root = tmp_path / "ds"
    rng = np.random.default_rng()
    n = 0
    for _ in range(3):
        child = start_child(root, "back_to_back")  # resumes the dataset the last one left
        wait_for_episodes(child, root, n + 2)
        time.sleep(float(rng.uniform(0.0, 1.5)))
        kill(child)
        ds = lerobot_dataset(root)
        assert ds.num_episodes >= n + 2 and saved_episodes(root) == ds.num_episodes
        n = ds.num_episodes
        assert episode_lengths(ds) == [2] * n
        assert np.asarray(ds.hf_dataset["index"]).tolist() == list(range(2 * n))
    recorder(root, ScriptedConfig(save_every=3), hz=50, num_episodes=1, resume=True).run()
    assert not list(tmp_path.glob(".ds.staging-*"))  # the killed sessions' leftovers are gone
    assert episode_lengths(lerobot_dataset(root)) == [2] * (n + 1)
