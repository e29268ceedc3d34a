"""Videos of labelled segments: simulator states recorded by rollouts, deterministic
re-rendering, the WebM cache (sim frames, dataset camera frames, failures, restarts), wrench
traces, and the server's video endpoint over the real cache."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before MuJoCo is first imported

import time
import warnings

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from robopref.data import Episode, Segment, load_episodes, save_episodes
from robopref.envs import MetaWorldConfig
from robopref.envs.metaworld_render import MetaWorldRenderer
from robopref.envs.metaworld_task import MetaWorldTask
from robopref.label import LabelStore, open_database
from robopref.label.datasets import DatasetResolver
from robopref.label.server import create_app
from robopref.label.video import (
    NoFramesError,
    SimRenderers,
    VideoCache,
    dataset_traces,
    default_video_folder,
    encode_webm,
    segment_frames,
    wrench_trace,
)
from robopref.preferences.base import Query
from robopref.rollout import collect_episodes

warnings.filterwarnings("ignore", module=r"metaworld\..*")

TASK, STEPS, FPS = "push-v3", 20, 80
SIZE = {"height": 60, "width": 80}  # small frames: these tests check plumbing, not looks


def decode(path) -> tuple[np.ndarray, float]:
    """``(frames (n, H, W, 3) uint8, frames per second)`` of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return frames, float(stream.average_rate)


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory):
    """Two short push-v3 expert rollouts saved as a dataset: ``(episodes as loaded, root)``."""
    task = MetaWorldTask(MetaWorldConfig(TASK, max_episode_steps=STEPS))
    vec = task.make_vector_env(1, asynchronous=False)
    try:
        episodes = collect_episodes(vec, task.make_expert(None, 1), [[0, 3], [0, 7]], TASK,
                                    STEPS, progress=False)
    finally:
        vec.close()
    root = save_episodes(episodes, tmp_path_factory.mktemp("mw") / "rollouts", fps=FPS,
                         state_dim=task.state_dim)
    loaded = load_episodes(root)
    for saved, back in zip(episodes, loaded, strict=True):
        np.testing.assert_array_equal(saved.sim_states, back.sim_states)  # bit for bit
    return loaded, root


def saved_episode(root, **fields) -> tuple[Episode, str]:
    """A 12-step synthetic episode with ``fields`` saved at ``root`` (fps 10)."""
    rng = np.random.default_rng(3)
    episode = Episode(rng.normal(size=(12, 3)), rng.normal(size=(12, 2)), np.zeros(12),
                      np.zeros(12, bool), task="synthetic", **fields)
    save_episodes([episode], root, fps=10)
    return load_episodes(root)[0], str(root)


def wait_for(cache: VideoCache, segment: Segment, hint: str | None, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        path = cache.wait(segment, hint, 1.0)
        if path is not None or cache.failed(segment) is not None:
            return path
    raise AssertionError(f"no video of {segment} within {timeout_s} s")


def test_rollouts_record_the_state_before_each_action(rollouts):
    episodes, root = rollouts
    for episode in episodes:
        assert episode.sim_states.shape == (STEPS, 39) and episode.sim_states.dtype == np.float64
        # Column 0 is simulated time: one control step (1/80 s) between rows.
        np.testing.assert_allclose(np.diff(episode.sim_states[:, 0]), 1 / FPS)
    assert not np.array_equal(episodes[0].sim_states[0], episodes[1].sim_states[0])


def test_re_rendering_reproduces_the_rollouts_pixels(rollouts):
    """Frames drawn live while stepping equal those re-rendered from the recorded states in a
    fresh env; the frames of different steps differ."""
    live_renderer = MetaWorldRenderer(TASK, **SIZE)
    env = live_renderer.env
    _, info = env.reset(options={"variation": [0, 3]})
    states, live = [info["sim_state"]], []
    rng = np.random.default_rng(0)
    for _ in range(6):
        _, _, _, _, info = env.step(rng.uniform(-1, 1, 4))
        states.append(info["sim_state"])
        live.append(live_renderer.draw())
    live_renderer.close()
    fresh = MetaWorldRenderer(TASK, **SIZE)
    try:
        again = fresh.render([0, 3], np.stack(states))
        twice = fresh.render([0, 3], np.stack(states))
    finally:
        fresh.close()
    assert again.shape == (7, 60, 80, 3) and again.dtype == np.uint8
    # Row t+1 is the state after step t (the reset frame's goal site is only placed by the
    # first step's forward pass, so it is compared by re-rendering alone).
    np.testing.assert_array_equal(again[1:], np.stack(live))
    np.testing.assert_array_equal(again, twice)
    assert (again[0] != again[-1]).any()


def test_a_metaworld_segment_becomes_a_webm(rollouts, tmp_path):
    episodes, root = rollouts
    cache = VideoCache(tmp_path / "videos", DatasetResolver(), **SIZE)
    segment = Segment(episodes[0].id, 4, 16)
    try:
        path = wait_for(cache, segment, str(root))
        assert path is not None, cache.failed(segment)
    finally:
        cache.close()
    frames, fps = decode(path)
    assert frames.shape == (12, 60, 80, 3) and fps == FPS
    assert cache.rendered == 1 and not [p for p in path.parent.iterdir() if p.suffix != ".webm"]
    renderers = SimRenderers(height=60, width=80)
    try:
        expected = segment_frames(episodes[0], segment, renderers)
    finally:
        renderers.close()
    error = np.abs(frames.astype(int) - expected.astype(int)).mean()
    assert error < 8, error  # the video shows those frames, through a lossy codec


def test_dataset_camera_frames_are_used_as_they_are(tmp_path):
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, size=(12, 1, 1, 3), dtype=np.uint8)
    images = np.broadcast_to(colours, (12, 31, 41, 3)).copy()  # odd sizes: cropped to even
    episode, hint = saved_episode(tmp_path / "cams", images={"front": images})
    segment = Segment(episode.id, 2, 10)
    np.testing.assert_array_equal(segment_frames(episode, segment), images[2:10])
    with pytest.raises(Exception, match="no camera 'side'.*front"):
        segment_frames(episode, segment, camera="side")
    cache = VideoCache(tmp_path / "videos", DatasetResolver(), **SIZE)
    try:
        path = wait_for(cache, segment, hint)
    finally:
        cache.close()
    frames, fps = decode(path)
    assert frames.shape == (8, 30, 40, 3) and fps == 10
    error = np.abs(frames.astype(int) - images[2:10, :30, :40].astype(int)).mean()
    assert error < 6, error  # flat colours survive VP9 and yuv420p nearly unchanged


def test_an_episode_with_nothing_to_show_fails_with_one_line(tmp_path):
    episode, hint = saved_episode(tmp_path / "bare")
    segment = Segment(episode.id, 0, 5)
    with pytest.raises(NoFramesError, match="no camera frames, no simulator state and no "
                       "replay settings"):
        segment_frames(episode, segment)
    cache = VideoCache(tmp_path / "videos", DatasetResolver(), **SIZE)
    try:
        assert wait_for(cache, segment, hint) is None
        error = cache.failed(segment)
        assert error.startswith(f"episode {episode.id} has no camera frames, no simulator")
        assert "\n" not in error and "re-run the rollout" in error
        # A failure is remembered (not re-queued) until it expires, then retried.
        cache.request([(segment, hint)])
        assert cache.failed(segment) is not None
        cache.failure_ttl_s = 0.0
        assert cache.failed(segment) is None
        cache.failure_ttl_s = 60.0
        missing = Segment("0000-not-a-dataset:0", 0, 5)
        assert wait_for(cache, missing, None) is None
        assert "was not found" in cache.failed(missing)
    finally:
        cache.close()
    assert not any(t.is_alive() for t in cache._threads)


def test_a_restarted_cache_serves_from_disk_and_new_settings_render_again(tmp_path):
    images = np.full((12, 16, 16, 3), 90, np.uint8)
    episode, hint = saved_episode(tmp_path / "cams", images={"front": images})
    segment = Segment(episode.id, 0, 12)
    first = VideoCache(tmp_path / "videos", DatasetResolver(), crf=40)
    try:
        path = wait_for(first, segment, hint)
    finally:
        first.close()
    again = VideoCache(tmp_path / "videos", DatasetResolver(), crf=40)
    try:
        assert again.path(segment) == path  # found on disk, before any request
        assert again.wait(segment, hint, 0.1) == path and again.rendered == 0
    finally:
        again.close()
    other = VideoCache(tmp_path / "videos", DatasetResolver(), crf=20)
    try:
        assert other.path(segment) is None  # other settings: another file
        assert wait_for(other, segment, hint) != path and other.rendered == 1
    finally:
        other.close()


def test_wrench_traces_are_in_seconds_newtons_and_newton_metres(tmp_path):
    wrenches = np.arange(12 * 6, dtype=np.float32).reshape(12, 6)
    episode, hint = saved_episode(tmp_path / "ft", wrenches=wrenches)
    segment = Segment(episode.id, 3, 8)
    trace = wrench_trace(episode, segment, fps=10)
    np.testing.assert_allclose(trace["t"], [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(trace["force"], wrenches[3:8, :3])
    np.testing.assert_array_equal(trace["torque"], wrenches[3:8, 3:])
    through_dataset = dataset_traces(DatasetResolver())(segment, hint)  # fps from info.json
    np.testing.assert_allclose(through_dataset["t"], trace["t"])
    bare, bare_hint = saved_episode(tmp_path / "bare")
    assert wrench_trace(bare, Segment(bare.id, 0, 4), fps=10) is None
    assert dataset_traces(DatasetResolver())(Segment(bare.id, 0, 4), bare_hint) is None


def test_encoding_is_atomic_and_refuses_bad_frames(tmp_path):
    target = tmp_path / "v.webm"
    with pytest.raises(Exception, match="uint8"):
        encode_webm(np.zeros((3, 8, 8, 3), np.float32), 10, target)
    assert list(tmp_path.iterdir()) == []
    encode_webm(np.zeros((3, 8, 8, 3), np.uint8), 12.5, target)
    assert [p.name for p in tmp_path.iterdir()] == ["v.webm"]
    frames, fps = decode(target)
    assert frames.shape == (3, 8, 8, 3) and fps == 12.5


def test_the_default_video_folder_sits_beside_a_sqlite_database(tmp_path):
    assert default_video_folder(tmp_path / "labels.db") == tmp_path / "videos"
    assert default_video_folder(f"sqlite:///{tmp_path}/x/l.db") == tmp_path / "x" / "videos"
    assert default_video_folder("postgresql+psycopg://u@h/db") == (
        default_video_folder("postgresql://u@h/other"))


def test_the_server_plays_a_rendered_rollout_segment(rollouts, tmp_path):
    episodes, root = rollouts
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    first, second = Segment(episodes[0].id, 0, 10), Segment(episodes[1].id, 5, 15)
    [qid] = store.enqueue_pairs([Query("q0", first, second)],
                                dataset_paths={episodes[0].dataset_id: str(root)})
    _, token = store.create_annotator("alice")
    headers = {"Authorization": f"Bearer {token}"}
    resolver = DatasetResolver()
    cache = VideoCache(tmp_path / "videos", resolver, **SIZE)
    try:
        with TestClient(create_app(db, videos=cache, traces=dataset_traces(resolver))) as client:
            assert client.get("/api/next", headers=headers).json()["id"] == qid  # queues both
            deadline = time.monotonic() + 60
            while True:
                response = client.get(f"/api/queries/{qid}/video/second", headers=headers)
                if response.status_code != 202 or time.monotonic() > deadline:
                    break
                assert response.headers["retry-after"] == "1"
                time.sleep(0.2)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "video/webm"
            (tmp_path / "got.webm").write_bytes(response.content)
            frames, fps = decode(tmp_path / "got.webm")
            assert frames.shape == (10, 60, 80, 3) and fps == FPS
            trace = client.get(f"/api/queries/{qid}/trace/first", headers=headers)
            assert trace.status_code == 204  # Meta-World has no force/torque sensor
    finally:
        cache.close()
        db.close()


def test_serve_wires_a_video_cache_and_closes_it(tmp_path, monkeypatch, capsys):
    import uvicorn

    from robopref.label import cli

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    (tmp_path / "runs").mkdir()
    cli.main(["serve", "--db", str(tmp_path / "labels.db"), "--datasets", str(tmp_path / "runs"),
              "--videos", str(tmp_path / "cache")])
    [app] = served
    cache = app.state.videos
    assert isinstance(cache, VideoCache) and cache.folder == tmp_path / "cache"
    assert cache.resolver.roots == [tmp_path / "runs"]
    assert not any(t.is_alive() for t in cache._threads)  # closed when the server stopped
    assert "videos in" in capsys.readouterr().err
    cli.main(["serve", "--db", str(tmp_path / "labels.db")])
    assert served[1].state.videos.folder == tmp_path / "videos"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["serve", "--db", str(tmp_path / "labels.db"), "--datasets", "/no/such/dir"])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not a folder" in err


PEEL_STEPS = 12


@pytest.fixture(scope="module")
def peel_rollout(tmp_path_factory):
    """One short Peel-v0 expert rollout carrying the task's replay settings, saved and loaded
    back: ``(episode, root, frames rendered live before each action)``."""
    from robopref.envs.peel_task import PeelTaskConfig, PeelV0Task

    task = PeelV0Task(PeelTaskConfig(peel={"episode_steps": PEEL_STEPS}))
    vec = task.make_vector_env(1, asynchronous=False)
    live = []
    sim = vec.envs[0].env.sim  # the simulated arm under the task's wrapper and env

    class Watching:
        """The expert, with the scene drawn before each of its actions."""

        def __init__(self, policy):
            self.policy = policy

        def begin_episodes(self, n):
            self.policy.begin_episodes(n)

        def act(self, obs):
            live.append(sim.render("front", SIZE["width"], SIZE["height"]))
            return self.policy.act(obs)

    try:
        episodes = collect_episodes(vec, Watching(task.make_expert(None, 1)), [7], task.name,
                                    PEEL_STEPS, progress=False, meta=task.episode_meta())
    finally:
        vec.close()
    root = save_episodes(episodes, tmp_path_factory.mktemp("peel") / "rollouts", fps=task.fps,
                         state_dim=task.state_dim)
    [episode] = load_episodes(root)
    assert episode.sim_states is None and episode.meta["replay"]["kind"] == "peel-v0"
    return episode, root, np.stack(live)


def test_a_peel_rollout_is_replayed_to_the_pixels_it_showed(peel_rollout):
    episode, _, live = peel_rollout
    renderers = SimRenderers(**SIZE)
    try:
        frames = segment_frames(episode, Segment(episode.id, 3, 9), renderers)
        again = segment_frames(episode, Segment(episode.id, 3, 9), renderers)
    finally:
        renderers.close()
    assert frames.shape == (6, 60, 80, 3)
    np.testing.assert_array_equal(frames, live[3:9])
    np.testing.assert_array_equal(frames, again)


def test_a_peel_replay_that_leaves_the_recording_is_refused(peel_rollout):
    from robopref.errors import DatasetError

    episode, _, _ = peel_rollout
    tampered = Episode(episode.observations, episode.actions[::-1].copy(), episode.rewards,
                       episode.successes, task=episode.task, meta=episode.meta,
                       dataset_id=episode.dataset_id, episode_index=episode.episode_index)
    renderers = SimRenderers(**SIZE)
    try:
        with pytest.raises(DatasetError, match="left the recorded episode at step"):
            segment_frames(tampered, Segment(episode.id, 2, 8), renderers)
    finally:
        renderers.close()


def test_a_peel_segment_becomes_a_webm(peel_rollout, tmp_path):
    episode, root, live = peel_rollout
    cache = VideoCache(tmp_path / "videos", DatasetResolver(), **SIZE)
    segment = Segment(episode.id, 2, 10)
    try:
        path = wait_for(cache, segment, str(root))
        assert path is not None, cache.failed(segment)
    finally:
        cache.close()
    frames, fps = decode(path)
    assert frames.shape == (8, 60, 80, 3) and fps == 20
    assert np.abs(frames.astype(int) - live[2:10].astype(int)).mean() < 8
