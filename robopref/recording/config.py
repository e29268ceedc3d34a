"""A recording session's settings (``RecorderConfig``) and the teleop buttons it obeys."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopref.errors import ConfigError
from robopref.hardware.safety import SafetyConfig

__all__ = ["BUTTONS", "RecorderConfig"]

# Button name -> what it does; a teleop reports presses in ``command.buttons``.
BUTTONS = {
    "save": "end the episode and save it",
    "discard": "drop the episode; the next one starts from a new scene",
    "rerecord": "drop the episode and record it again from the same scene",
    "quit": "drop the running episode and end the session (saved episodes are kept)",
}


@dataclass
class RecorderConfig:
    """A recording session.

    Attributes:
        root: dataset folder (a LeRobotDataset; created on the first saved episode).
        repo_id: lerobot repository id written into the dataset metadata.
        task: the task description stored with every frame (lerobot's ``task`` string).
        fps: control and recording rate (Hz); must equal the arm's control rate.
        max_episode_s: an episode that runs this long (s) ends and is saved.
        num_episodes: episodes to save before the session ends.
        cameras: camera names recorded as ``observation.images.<name>`` (needs a camera
            source, e.g. the simulated arm's ``render``).
        image_width, image_height: recorded image size (pixels; at least 4 for video).
        video: store cameras as lerobot videos (one AV1 MP4 per episode and camera, encoded
            in the background) rather than PNG frames inside the Parquet files.
        reset_time_s: a reset phase of this many seconds after each episode (but the
            last): a countdown is shown, the arm follows the teleop while it is enabled,
            buttons pressed meanwhile are ignored, and the last episode is written to disk.
        resume: add episodes to an existing dataset at ``root`` (indices continue).
        realtime: pace the loop at ``fps`` on the wall clock. A synchronous simulation
            may run unpaced (``False``) for fast dry runs; real arms need ``True``.
        spin_s: the last part (s) of each wait spent busy-waiting instead of sleeping.
        end_on_success: save the episode as soon as the task reports success.
        bias_sensor: zero the wrist sensor at the start of each episode (out of contact).
        seed: seeds the task's scene per episode (episode ``i`` draws from ``seed + i``).
        safety: limits of the safety layer, used when the arm given to ``Recorder`` is not
            already a ``SafeArm``.
    """

    root: str
    repo_id: str = "robopref/recording"
    task: str = "teleoperated demonstration"
    fps: int = 20
    max_episode_s: float = 30.0
    num_episodes: int = 10
    cameras: list[str] = field(default_factory=list)
    image_width: int = 128
    image_height: int = 96
    video: bool = True
    reset_time_s: float = 0.0
    resume: bool = False
    realtime: bool = True
    spin_s: float = 0.0005
    end_on_success: bool = False
    bias_sensor: bool = True
    seed: int = 0
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        if not str(self.root).strip():
            raise ConfigError("record root is empty: set record.root=DIR (the dataset folder)")
        if not isinstance(self.fps, int) or isinstance(self.fps, bool) or not 1 <= self.fps <= 1000:
            raise ConfigError(
                f"record fps={self.fps!r} must be an integer in [1, 1000] Hz, e.g. 20"
            )
        if not 0 < self.max_episode_s < float("inf"):
            raise ConfigError(
                f"record max_episode_s={self.max_episode_s} must be positive seconds, e.g. 30"
            )
        if not isinstance(self.num_episodes, int) or self.num_episodes < 1:
            raise ConfigError(f"record num_episodes={self.num_episodes!r} must be >= 1")
        self.cameras = list(self.cameras)
        bad = [c for c in self.cameras if not str(c).isidentifier()]
        if bad or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(
                f"record cameras={self.cameras} must be distinct names made of letters, digits "
                "and '_', e.g. [front]"
            )
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 4096:
                raise ConfigError(f"record {name}={value!r} must be an integer in [1, 4096] px")
        if self.video and self.cameras and min(self.image_width, self.image_height) < 4:
            raise ConfigError(
                f"record image size {self.image_width}x{self.image_height} px is too small "
                "for video cameras: use at least 4x4, or record.video=false for PNG frames"
            )
        if isinstance(self.reset_time_s, bool) or not 0 <= self.reset_time_s < float("inf"):
            raise ConfigError(
                f"record reset_time_s={self.reset_time_s!r} must be seconds >= 0, e.g. 10 "
                "(0: no reset phase)"
            )
        if not 0 <= self.spin_s < 1.0 / self.fps:
            raise ConfigError(f"record spin_s={self.spin_s} must be in [0, 1/fps) s, e.g. 0.0005")
        if "/" not in self.repo_id:
            raise ConfigError(
                f"record repo_id={self.repo_id!r} must look like 'owner/name', e.g. "
                "'lab/peel_demos'"
            )
        if not isinstance(self.safety, SafetyConfig):
            raise ConfigError("record safety must be a SafetyConfig: build it at the edge")

    @property
    def max_steps(self) -> int:
        return max(1, round(self.max_episode_s * self.fps))
