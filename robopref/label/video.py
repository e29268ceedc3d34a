"""Videos and force/torque traces of the segments people label.

A segment's frames come from the dataset's own cameras when the episode has images
(recordings), else are re-rendered from its simulator states (Meta-World rollouts: see
``robopref.envs.metaworld_render``), else replayed from its actions in the scene it started
from (Peel-v0 rollouts, whose ``meta["replay"]`` names the settings: see
``robopref.envs.peel.replay``); an episode with none of these cannot be shown.
:class:`VideoCache` is what the label server serves videos from: a background worker renders
requested segments to VP9 WebM files in a folder, named by a hash of the segment and the
render settings, so a restarted server finds them again and a change of settings (or of
:data:`CACHE_VERSION`) never serves a stale file.

    cache = VideoCache("videos", DatasetResolver(["runs/"]))
    cache.request([(segment, dataset_path_hint)])   # queued, rendered in the background
    cache.wait(segment, hint, timeout_s=1.0)        # the WebM path once ready, else None
    cache.close()
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from robopref.data import Episode, Segment
from robopref.data.atomic import write_bytes_atomic
from robopref.errors import ConfigError, RobopError
from robopref.label.datasets import DatasetResolver

log = logging.getLogger(__name__)

# Part of every cache file's name: raise it when the frames or the encoding change, so old
# files are ignored (they stay on disk until the folder is cleared).
CACHE_VERSION = 1
DEFAULT_SIM_CAMERA = "workspace"  # robopref.envs.metaworld_render.FREE_CAMERAS
DEFAULT_HEIGHT, DEFAULT_WIDTH = 360, 480
# VP9 quality (0 best .. 63 worst, constant-quality mode): 30 keeps the gripper's edges sharp
# at ~1 kB per frame at 360x480.
DEFAULT_CRF = 30
# A failed render is answered from memory this long (s), then tried again on request: the
# dataset may have been put back in the meantime.
FAILURE_TTL_S = 60.0
# Requests kept waiting; older ones are dropped first (they are requested again if needed).
MAX_PENDING = 512


class NoFramesError(RobopError):
    """An episode has no camera frames, no simulator state and no replay settings."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not isinstance(exc, RobopError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:300]


# -- frames and traces -----------------------------------------------------------------
class SimRenderers:
    """Simulator renderers by task, built on first use and reused (a renderer owns a GL
    context: build, use and close this object in one thread)."""

    def __init__(self, camera: str = DEFAULT_SIM_CAMERA, height: int = DEFAULT_HEIGHT,
                 width: int = DEFAULT_WIDTH, max_tasks: int = 4):
        self.camera, self.height, self.width = camera, height, width
        self.max_tasks = max(1, max_tasks)
        self._renderers: OrderedDict[str, object] = OrderedDict()
        self._replayer = None  # Peel-v0's, built on first use

    def render(self, task: str, variation, states: np.ndarray) -> np.ndarray:
        """``(n, height, width, 3)`` uint8 frames of ``states`` ``(n, S)``."""
        from robopref.envs.metaworld import metaworld_task_names

        if task not in metaworld_task_names():
            raise NoFramesError(f"task '{task or 'unnamed'}' has no renderer for its simulator "
                                "state (Meta-World only): record it with cameras")
        if task not in self._renderers:
            from robopref.envs.metaworld_render import MetaWorldRenderer

            self._renderers[task] = MetaWorldRenderer(task, self.camera, self.height,
                                                      self.width)
            while len(self._renderers) > self.max_tasks:
                self._renderers.popitem(last=False)[1].close()
        self._renderers.move_to_end(task)
        return self._renderers[task].render(variation, states)

    def replay(self, episode: Episode, start: int, end: int) -> np.ndarray:
        """``(end - start, height, width, 3)`` uint8 frames replayed from the episode's
        actions in its start scene (``episode.meta["replay"]``), checked against its
        observations at every step."""
        if self._replayer is None:
            from robopref.envs.peel.replay import PeelReplayer

            self._replayer = PeelReplayer(width=self.width, height=self.height)
        return self._replayer.render(episode.meta["replay"], episode.meta.get("variation"),
                                     episode.actions, start, end, episode.observations)

    def close(self) -> None:
        while self._renderers:
            self._renderers.popitem()[1].close()
        if self._replayer is not None:
            self._replayer.close()
            self._replayer = None


def segment_frames(episode: Episode, segment: Segment, renderers: SimRenderers | None = None,
                   camera: str | None = None) -> np.ndarray:
    """``(len(segment), H, W, 3)`` uint8 frames of ``segment`` of ``episode``.

    The dataset's camera ``camera`` (default: its first) when the episode has images, else
    frames rendered from ``episode.sim_states``, else replayed from its actions
    (``episode.meta["replay"]``), by ``renderers`` (a new one, closed after, when ``None``).
    Raises :class:`NoFramesError` when the episode has none of these.
    """
    if segment.end > len(episode):
        raise NoFramesError(f"segment [{segment.start}, {segment.end}) runs past episode "
                            f"{_name(episode)} ({len(episode)} frames): the dataset changed")
    if episode.images:
        name = camera if camera is not None else next(iter(episode.images))
        if name not in episode.images:
            raise ConfigError(f"episode {_name(episode)} has no camera '{name}' (it has "
                              f"{', '.join(episode.images)}): pick one of those")
        return np.asarray(episode.images[name][segment.start:segment.end], dtype=np.uint8)
    replayable = isinstance(episode.meta.get("replay"), dict)
    if episode.sim_states is None and not replayable:
        raise NoFramesError(f"episode {_name(episode)} has no camera frames, no simulator "
                            "state and no replay settings: record with cameras, or re-run "
                            "the rollout with this robopref")
    own = renderers is None
    renderers = renderers or SimRenderers()
    try:
        if episode.sim_states is None:
            return renderers.replay(episode, segment.start, segment.end)
        variation = episode.meta.get("variation")
        return renderers.render(episode.task, variation,
                                episode.sim_states[segment.start:segment.end])
    finally:
        if own:
            renderers.close()


def _name(episode: Episode) -> str:
    return episode.id if episode.dataset_id is not None and episode.episode_index is not None \
        else "(unsaved)"


def wrench_trace(episode: Episode, segment: Segment, fps: float) -> dict | None:
    """The force/torque of ``segment``: ``{"t": (n,) s from the segment's first frame,
    "force": (n, 3) N, "torque": (n, 3) N·m}`` in the sensor's tool frame, at the dataset's
    ``fps`` (Hz); ``None`` when the episode has no wrench data."""
    if episode.wrenches is None:
        return None
    if not fps > 0:
        raise ConfigError(f"fps must be positive to time a trace, got {fps}")
    wrench = episode.wrenches[segment.start:segment.end]
    return {"t": np.arange(len(wrench)) / float(fps), "force": wrench[:, :3],
            "torque": wrench[:, 3:6]}


def dataset_fps(resolver: DatasetResolver, episode: Episode,
                dataset_path: str | None = None) -> float:
    """The frame rate (Hz) of the dataset ``episode`` was loaded from (its meta/info.json)."""
    folder = resolver.path_of(episode.dataset_id, dataset_path)
    return float(json.loads((folder / "meta" / "info.json").read_text())["fps"])


def dataset_traces(resolver: DatasetResolver) -> Callable[[Segment, str | None], dict | None]:
    """The server's ``traces(segment, dataset_path)``: wrench traces read through
    ``resolver`` (the one the video cache uses, so each dataset is loaded once)."""

    def traces(segment: Segment, dataset_path: str | None) -> dict | None:
        episode = resolver(segment, dataset_path)
        if episode.wrenches is None:
            return None
        return wrench_trace(episode, segment, dataset_fps(resolver, episode, dataset_path))

    return traces


# -- encoding ----------------------------------------------------------------------------
def encode_webm(frames: np.ndarray, fps: float, path: str | Path, crf: int = DEFAULT_CRF) -> Path:
    """Write ``frames`` ``(n, H, W, 3)`` uint8 RGB as a VP9 WebM (yuv420p, which every
    browser decodes) at ``fps`` Hz to ``path``, atomically; returns ``path``. An odd height
    or width loses its last row or column (yuv420p needs even sizes)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ConfigError(f"frames must be (n, H, W, 3) uint8 with n >= 1, got "
                          f"{frames.shape} {frames.dtype}")
    height, width = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    if height < 2 or width < 2:
        raise ConfigError(f"frames of {frames.shape[1]}x{frames.shape[2]} px are too small")
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        # Realtime mode: 5x faster than "good" here for ~20% more bytes; rendering costs more.
        options = {"crf": str(int(crf)), "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        stream = container.add_stream("libvpx-vp9", rate=Fraction(fps).limit_denominator(1001),
                                      options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            image = np.ascontiguousarray(frame[:height, :width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return write_bytes_atomic(path, buffer.getvalue())


# -- the cache ---------------------------------------------------------------------------
def default_video_folder(database: str | Path) -> Path:
    """``videos/`` beside a SQLite label database, else in the working folder."""
    from sqlalchemy.engine import make_url

    from robopref.label.database import database_url

    url = make_url(database_url(database))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).expanduser().resolve().parent / "videos"
    return Path("videos").resolve()


class VideoCache:
    """Segment videos rendered in the background into ``folder`` (the label server's cache).

    ``resolver`` finds the episodes. ``camera``: the dataset camera shown (default: each
    dataset's first); ``sim_camera``, ``height``, ``width``: how simulator states are drawn;
    ``crf``: VP9 quality. ``workers`` threads render (one per core at most: rendering is
    CPU-bound without a GPU). Each :meth:`request` goes ahead of older pending ones, its
    segments in the order given (the server lists the query being served first).
    """

    def __init__(self, folder: str | Path, resolver: DatasetResolver, *,
                 camera: str | None = None, sim_camera: str = DEFAULT_SIM_CAMERA,
                 height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH,
                 crf: int = DEFAULT_CRF, workers: int = 1, failure_ttl_s: float = FAILURE_TTL_S):
        if not 0 <= crf <= 63:
            raise ConfigError(f"crf={crf} is outside VP9's [0, 63]: 30 is a good default")
        if workers < 1:
            raise ConfigError(f"workers={workers}: a video cache needs at least one")
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.resolver = resolver
        self.settings = {"version": CACHE_VERSION, "camera": camera, "sim_camera": sim_camera,
                         "height": int(height), "width": int(width), "crf": int(crf)}
        self.failure_ttl_s = failure_ttl_s
        self.rendered = 0  # videos this cache rendered (not found on disk)
        self._cond = threading.Condition()
        self._pending: OrderedDict[Segment, str | None] = OrderedDict()
        self._running: set[Segment] = set()
        self._failed: dict[Segment, tuple[str, float]] = {}
        self._fps: dict[str, float] = {}
        self._closed = False
        self._remove_leftovers()
        self._threads = [threading.Thread(target=self._work, name=f"video-render-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()
        log.info("video cache in %s (%s)", self.folder, self.settings)

    # The server's VideoCache protocol ------------------------------------------------------
    def file_of(self, segment: Segment) -> Path:
        """Where the video of ``segment`` is (or will be) stored."""
        key = json.dumps({**self.settings, "episode": segment.episode_id,
                          "start": segment.start, "end": segment.end}, sort_keys=True)
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.webm"

    def path(self, segment: Segment) -> Path | None:
        """The ready WebM of ``segment``, or ``None``."""
        file = self.file_of(segment)
        return file if file.is_file() else None

    def request(self, items: list[tuple[Segment, str | None]]) -> None:
        """Queue ``(segment, dataset path hint)`` items not yet rendered, ahead of older ones."""
        with self._cond:
            if self._closed:
                return
            fresh: OrderedDict[Segment, str | None] = OrderedDict()
            for segment, hint in items:
                if (segment in self._running or segment in fresh
                        or self._failure(segment) is not None or self.path(segment)):
                    continue
                self._pending.pop(segment, None)
                fresh[segment] = hint
            fresh.update(self._pending)
            while len(fresh) > MAX_PENDING:
                fresh.popitem(last=True)
            self._pending = fresh
            if items:
                self._cond.notify_all()

    def wait(self, segment: Segment, dataset_path: str | None, timeout_s: float) -> Path | None:
        """The WebM of ``segment`` once rendered, or ``None`` after ``timeout_s`` seconds or
        when the render failed (see :meth:`failed`)."""
        self.request([(segment, dataset_path)])
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._failure(segment) is not None
                or (segment not in self._pending and segment not in self._running),
                timeout=timeout_s,
            )
        return self.path(segment)

    def failed(self, segment: Segment) -> str | None:
        """The one-line reason the last render of ``segment`` failed (for a while), or None."""
        with self._cond:
            return self._failure(segment)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the workers: pending requests are dropped, a render in progress finishes."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)
                if thread.is_alive():
                    log.warning("video worker %s still rendering after %.0f s; left behind",
                                thread.name, timeout_s)

    # Work -------------------------------------------------------------------------------
    def _remove_leftovers(self, age_s: float = 3600.0) -> None:
        # Temp files of writes a killed process never renamed into place (write_bytes_atomic
        # names them ".<file>.<random>"); an hour old, no live writer still owns them.
        for leftover in self.folder.glob(".*.webm.*"):
            try:
                if time.time() - leftover.stat().st_mtime > age_s:
                    leftover.unlink()
            except OSError:
                continue

    def _failure(self, segment: Segment) -> str | None:
        entry = self._failed.get(segment)
        if entry is not None and time.monotonic() - entry[1] > self.failure_ttl_s:
            del self._failed[segment]
            return None
        return None if entry is None else entry[0]

    def _work(self) -> None:
        renderers = None  # built in this thread: GL contexts belong to their thread
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or self._pending)
                    if self._closed:
                        return
                    segment, hint = self._pending.popitem(last=False)
                    self._running.add(segment)
                error = None
                try:
                    if self.path(segment) is None:  # another process may have made it
                        if renderers is None:
                            renderers = SimRenderers(self.settings["sim_camera"],
                                                     self.settings["height"],
                                                     self.settings["width"])
                        self._render(segment, hint, renderers)
                except Exception as exc:  # one segment's failure must not stop the worker
                    error = _one_line(exc)
                    log.warning("video of %s [%d, %d) failed: %s", segment.episode_id,
                                segment.start, segment.end, error)
                with self._cond:
                    self._running.discard(segment)
                    if error is not None:
                        self._failed[segment] = (error, time.monotonic())
                    self._cond.notify_all()
        finally:
            if renderers is not None:
                renderers.close()

    def _render(self, segment: Segment, hint: str | None, renderers: SimRenderers) -> Path:
        began = time.perf_counter()
        episode = self.resolver(segment, hint)
        if episode.dataset_id not in self._fps:
            self._fps[episode.dataset_id] = dataset_fps(self.resolver, episode, hint)
        frames = segment_frames(episode, segment, renderers, self.settings["camera"])
        rendered = time.perf_counter()
        path = encode_webm(frames, self._fps[episode.dataset_id], self.file_of(segment),
                           self.settings["crf"])
        with self._cond:
            self.rendered += 1
        log.info("video of %s [%d, %d): %d frames of %dx%d, %.1f s to draw, %.1f s to encode",
                 segment.episode_id, segment.start, segment.end, len(frames), frames.shape[2],
                 frames.shape[1], rendered - began, time.perf_counter() - rendered)
        return path
