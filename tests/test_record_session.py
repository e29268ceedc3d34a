"""The recording session around the writer: saves handed to a background thread (bounded,
durable only when it says so, failures reported on one line), the reset phase between
episodes (countdown, buttons ignored), camera streams stored as video, and start-up."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robopref.data import load_episodes
from robopref.data.background_writer import BackgroundEpisodeWriter
from robopref.errors import ConfigError, DatasetError
from robopref.hardware.fake.arm import FakeArmConfig, FakeForceArm
from robopref.hardware.teleop import KeyboardConfig, KeyboardTeleop, ScriptedConfig, ScriptedTeleop
from robopref.recording import Recorder, RecorderConfig, format_summary
from robopref.recording.reset import Countdown

REPO = "test/session"
STEP = np.array([0.001, 0.0, 0.0, 0.0, 0.0, 0.0])  # m and rad per tick


FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
    "action": {"dtype": "float32", "shape": (2,), "names": None},
}


def frames(length: int) -> dict:
    return {
        "observation.state": np.zeros((length, 3), np.float32),
        "action": np.ones((length, 2), np.float32),
    }


def python_script(script: str, *args) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter (``python -c``), as a recorder's own process."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_background_writer_saves_in_its_own_process_one_episode_at_a_time(tmp_path):
    durable = []
    writer = BackgroundEpisodeWriter(tmp_path / "ds", REPO, 10, FEATURES, on_durable=durable.append)
    assert writer.pid != os.getpid() and writer.created and writer.num_episodes == 0
    indices = [writer.submit(frames(3 + i), "t", {"i": i}) for i in range(3)]
    assert indices == [0, 1, 2] and writer.wait(60)
    assert [r.index for r in durable] == [0, 1, 2] and writer.num_episodes == 3
    # Bounded: each episode was handed over only once the one before it was durable.
    for before, after in zip(writer.records, writer.records[1:], strict=False):
        handed_at = after.durable_at - after.durable_s + after.blocked_s
        assert handed_at >= before.durable_at
        assert after.durable_s >= after.write_s > 0
    writer.close()
    assert not writer._process.is_alive()
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [3, 4, 5]
    with pytest.raises(DatasetError, match="--resume"):  # opening errors come back whole
        BackgroundEpisodeWriter(tmp_path / "ds", REPO, 10, FEATURES)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to leave one free")
def test_the_writer_runs_idle_and_leaves_a_cpu_to_the_control_loop(tmp_path):
    writer = BackgroundEpisodeWriter(tmp_path / "ds", REPO, 10, FEATURES)
    try:
        ours = os.sched_getaffinity(0)
        # The encoder's threads inherit both, so neither can take the loop's CPU.
        assert os.sched_getaffinity(writer.pid) == ours - {min(ours)}
        assert os.sched_getscheduler(writer.pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(0) == ours  # the recorder itself is left as it was
    finally:
        writer.close()


def test_a_failed_save_is_reported_on_one_line_and_nothing_after_it_is_written(tmp_path):
    writer = BackgroundEpisodeWriter(tmp_path / "ds", REPO, 10, FEATURES, max_pending=2)
    writer.submit(frames(3), "t", {"i": 0})
    writer.submit(frames(4), "t", {"i": object()})  # metadata that is not JSON
    with pytest.raises(DatasetError) as info:
        writer.wait(60)
    message = str(info.value)
    assert "saving episode 1 failed" in message and "JSON" in message
    assert "--resume" in message and "\n" not in message
    with pytest.raises(DatasetError):
        writer.submit(frames(5), "t", {})
    with pytest.raises(DatasetError):
        writer.close()
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [3]


def test_a_writer_process_that_dies_is_reported_and_earlier_episodes_stay(tmp_path):
    writer = BackgroundEpisodeWriter(tmp_path / "ds", REPO, 10, FEATURES)
    writer.save_episode(frames(3), "t", {})
    os.kill(writer.pid, signal.SIGFPE)  # as an encoder crash would
    writer._process.join(30)
    with pytest.raises(DatasetError, match="SIGFPE.*--resume"):
        writer.save_episode(frames(4), "t", {})
    with pytest.raises(DatasetError):
        writer.close()
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [3]


@pytest.mark.slow
def test_the_writer_process_dies_with_the_recorder(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        from robopref.data.background_writer import BackgroundEpisodeWriter
        features = {
            "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
            "action": {"dtype": "float32", "shape": (2,), "names": None},
        }
        writer = BackgroundEpisodeWriter(sys.argv[1], "t/x", 10, features)
        frames = {k: np.zeros((3, v["shape"][0]), np.float32) for k, v in features.items()}
        writer.save_episode(frames, "t", {})
        print(writer.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = python_script(script, tmp_path / "ds")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    child = int(result.stdout.split()[0])
    for _ in range(300):  # the kernel kills it at once; this only waits for that
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"writer process {child} outlived the recorder")
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [3]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_countdown_rewrites_one_line_on_a_terminal_and_prints_lines_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (io.StringIO(), Terminal()):
        countdown = Countdown("reset the scene", stream)
        for left in (2.0, 1.6, 1.0, 0.4, 0.0):
            countdown.show(left)
        countdown.say("episode 0 durable")
        countdown.done("reset done")
        text = stream.getvalue()
        if countdown.tty:
            assert "\n" not in text.split("episode 0 durable")[0]  # rewritten in place
            assert text.count("\r\x1b[2K") >= 4 and text.endswith("reset done\n")
        else:
            assert text.splitlines() == [
                "reset the scene: 2 s left",
                "reset the scene: 1 s left",
                "reset the scene: 0 s left",
                "episode 0 durable",
                "reset done",
            ]


def recorder(root: Path, teleop, hz: int = 100, stream=None, **overrides) -> Recorder:
    settings = {"max_episode_s": 0.5, "realtime": False, **overrides}
    config = RecorderConfig(root=str(root), repo_id=REPO, fps=hz, **settings)
    arm = FakeForceArm(FakeArmConfig(control_hz=float(hz)))
    messages = []
    rec = Recorder(config, arm, teleop, log=messages.append, stream=stream or io.StringIO())
    rec.messages = messages
    return rec


def test_buttons_during_the_reset_are_ignored_and_the_next_episode_starts_after_it(tmp_path):
    # Reads since connect: episode 0 saves on read 4; the reset is reads 5-14 (0.1 s at
    # 100 Hz) with a "save" pressed on read 8; episode 1 then records reads 15-18 and saves
    # on 19. Had the press reached episode 1, it would have ended it at its first read.
    teleop = ScriptedTeleop(
        ScriptedConfig(buttons_schedule={4: "save", 8: "save", 19: "save"}),
        policy=lambda obs: STEP,
    )
    stream = io.StringIO()
    rec = recorder(tmp_path / "ds", teleop, num_episodes=2, reset_time_s=0.1, stream=stream)
    summary = rec.run()
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [4, 4]
    assert summary["reset_buttons_dropped"] == 1 and summary["episodes_saved"] == 2
    assert "reset the scene: 1 s left" in stream.getvalue()
    assert "1 button press(es) ignored" in stream.getvalue()
    assert summary["save_durable_after"]["max_s"] >= summary["save_blocked"]["max_s"] > 0
    assert "save: loop blocked" in format_summary(summary) and "reset phase" in format_summary(
        summary
    )
    # The operator heard when each episode was on disk, and lerobot loaded at start-up.
    assert rec.messages[0].startswith("opening the dataset writer")
    assert sum("durable" in m for m in rec.messages) + stream.getvalue().count("durable") == 2


def test_an_enter_pressed_during_the_reset_does_not_end_the_next_episode(tmp_path):
    r, w = os.pipe()
    pressed = threading.Event()

    class Screen(io.StringIO):
        """The countdown's screen: the operator presses Enter when it first appears."""

        def write(self, text):
            if "s left" in text and not pressed.is_set():
                pressed.set()
                os.write(w, b"\n")
            return super().write(text)

    try:
        teleop = KeyboardTeleop(KeyboardConfig(), source=r)
        rec = recorder(
            tmp_path / "ds",
            teleop,
            num_episodes=2,
            reset_time_s=0.5,
            stream=Screen(),
            max_episode_s=0.05,
        )
        summary = rec.run()
    finally:
        os.close(r)
        os.close(w)
    assert pressed.is_set() and summary["reset_buttons_dropped"] == 1
    # Both episodes ran to their time limit: no empty, discarded second episode.
    assert summary["episodes_saved"] == 2 and summary["episodes_discarded"] == 0
    assert [len(e) for e in load_episodes(tmp_path / "ds")] == [5, 5]


def test_the_reset_time_must_be_seconds():
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ConfigError, match="reset_time_s"):
            RecorderConfig(root="x", reset_time_s=bad)
    with pytest.raises(ConfigError, match="record.video=false"):
        RecorderConfig(root="x", cameras=["front"], image_width=2, image_height=2)


def test_cameras_are_stored_as_video_several_times_smaller_than_png(tmp_path):
    """A small recording of the simulated arm's front camera, once as AV1 video and once as
    PNG frames: the same frames read back (within the codec's error) through robopref and
    lerobot, and the video dataset is several times smaller."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robopref.hardware.sim import SimArmConfig, SimForceArm

    sizes, images = {}, {}
    for video in (True, False):
        arm = SimForceArm(SimArmConfig(control_hz=20.0))
        config = RecorderConfig(
            root=str(tmp_path / f"video_{video}"),
            repo_id=REPO,
            fps=20,
            max_episode_s=2.0,
            num_episodes=2,
            realtime=False,
            cameras=["front"],
            video=video,
        )
        teleop = ScriptedTeleop(ScriptedConfig(), policy=lambda obs: STEP)
        Recorder(config, arm, teleop, camera=arm.render, log=lambda m: None).run()
        root = Path(config.root)
        sizes[video] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        images[video] = [e.images["front"] for e in load_episodes(root)]
        ds = LeRobotDataset(REPO, root=root)
        assert ds.features["observation.images.front"]["dtype"] == ("video" if video else "image")
        assert tuple(ds[45]["observation.images.front"].shape) == (3, 96, 128)
    for coded, exact in zip(images[True], images[False], strict=True):
        error = np.abs(coded.astype(int) - exact.astype(int))
        assert coded.shape == exact.shape == (40, 96, 128, 3)
        assert error.mean() < 3.0
    ratio = sizes[False] / sizes[True]
    print(f"\ncamera recording: PNG {sizes[False]} B, video {sizes[True]} B ({ratio:.1f}x)")
    assert ratio > 3


@pytest.mark.slow
def test_lerobot_is_loaded_when_the_writer_opens_not_at_the_first_save(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from robopref.data.durable_writer import DurableEpisodeWriter
        heavy = "lerobot.datasets.compute_stats"
        assert heavy not in sys.modules
        features = {"action": {"dtype": "float32", "shape": (2,), "names": None}}
        DurableEpisodeWriter(sys.argv[1], "t/x", 10, features)
        assert heavy in sys.modules and "av" in sys.modules
        """
    )
    result = python_script(script, tmp_path / "ds")
    assert result.returncode == 0, result.stderr[-2000:]
