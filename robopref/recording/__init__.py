"""Teleoperated recording into a LeRobotDataset, one durable episode at a time.

- ``config``: ``RecorderConfig`` (a session's settings) and ``BUTTONS`` (the teleop buttons);
- ``recorder``: ``Recorder``, the fixed-rate control loop (frame features in its module
  docstring);
- ``session``: ``run_session``, episodes one after another with each saved episode written
  on a background thread (``robopref.data.background_writer``) while the scene is reset;
- ``reset``: the reset phase between episodes (countdown, buttons ignored);
- ``timing``: ``LoopTimer`` and ``timing_stats`` (loop pacing, rate and jitter);
- ``summary``: ``format_summary``, the end-of-session table;

The dataset writer, ``DurableEpisodeWriter`` (atomic, durable saves of constant cost, in
lerobot's layout with cameras as videos), lives in ``robopref.data.durable_writer``; pose
arithmetic (``compose_delta``, ``pose_delta``) in ``robopref.geometry``.
"""

from robopref.recording.config import BUTTONS, RecorderConfig
from robopref.recording.recorder import Recorder
from robopref.recording.summary import format_summary
from robopref.recording.timing import LoopTimer, timing_stats

__all__ = [
    "BUTTONS",
    "LoopTimer",
    "Recorder",
    "RecorderConfig",
    "format_summary",
    "timing_stats",
]
