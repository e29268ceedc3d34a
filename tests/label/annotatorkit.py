"""Helpers of the simulated-annotator tests: synthetic episodes, the teacher's expected
answers, and a real label server process (``python -m robopref.label.cli serve``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from robopref.data import Episode
from robopref.preferences.teacher import ScriptedTeacher, TeacherConfig


def make_episodes(n: int, length: int = 20, seed: int = 0) -> dict[str, Episode]:
    """Episodes ``ds:0..n-1`` with per-step rewards uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    episodes = {}
    for i in range(n):
        e = Episode(np.zeros((length, 3)), np.zeros((length, 2)), rng.uniform(0, 1, length),
                    np.zeros(length), dataset_id="ds", episode_index=i)
        episodes[e.id] = e
    return episodes


def teacher_choices(config: TeacherConfig, queries, episodes) -> list[str]:
    """What the scripted teacher answers to ``queries`` in order, as the server's choices."""
    labels = ScriptedTeacher(config).label([(q.first, q.second) for q in queries], episodes)
    return ["cannot_tell" if p is None else p.label.value for p in labels]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``robopref label serve`` in a subprocess on ``port``; its log goes to a file (a pipe
    nobody reads would fill with access-log lines and stall the server). It runs in the
    log's folder, so whatever it writes beside itself (a video cache) stays there."""

    def __init__(self, db_url: str, log: Path, port: int | None = None):
        self.db_url, self.log, self.port = db_url, log, port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "robopref.label.cli", "serve", "--db", self.db_url,
                 "--port", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=log, cwd=self.log.parent,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up in {timeout_s} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; only what was committed survives."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
