"""A scripted operator for CI and demos: a policy (or nothing) instead of a person, with a
button schedule, so a recorder runs unattended. It has no device: ``observe()`` computes the
command that the next ``read()`` returns."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robopref.errors import ConfigError, NonFiniteError
from robopref.hardware.base import ArmObservation, NotConnectedError, Teleop, TeleopCommand
from robopref.hardware.teleop.base import BUTTON_NAMES, check_scale

_OBSERVATION_KEYS = ("joint_positions", "joint_velocities", "tcp_pose", "wrench")


@dataclass
class ScriptedConfig:
    """A scripted operator for CI and demos, so a recorder runs unattended.

    Attributes:
        translation_scale: multiplier turning the policy's first three outputs into m per
            tick (1.0 when the policy already outputs metres; the env's action scale when it
            outputs normalised actions).
        rotation_scale: likewise for the last three outputs, to rad per tick.
        observation_keys: ``ArmObservation`` features concatenated, in order, into the
            policy's observation; the environment state (if any) is appended after them.
        save_every: press "save" on the ``save_every``-th read of each episode; None = never.
        max_episodes: press "quit" on the read after this many saves; None = never.
        buttons_schedule: read index (0-based, counted since ``connect()``) -> button name or
            list of names pressed on that read.
        intervention_ticks: ``(start, stop)`` ranges of per-episode read indices flagged
            ``intervention`` (to exercise intervention-aware recorders).
        execution_noise: std of Gaussian noise added to each executed command component (m
            per tick for translation, rad per tick for rotation); the clean command is
            reported as ``TeleopCommand.intended``. Demonstrations recorded this way (DART)
            visit the states a cloned policy's small errors lead to, labelled with the
            operator's corrections.
        seed: seeds that noise.
    """

    translation_scale: float = 1.0
    rotation_scale: float = 1.0
    observation_keys: tuple[str, ...] = ("tcp_pose", "wrench")
    save_every: int | None = None
    max_episodes: int | None = None
    buttons_schedule: dict[int, Any] = field(default_factory=dict)
    intervention_ticks: tuple[tuple[int, int], ...] = ()
    execution_noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_scale("scripted", self.translation_scale, self.rotation_scale)
        if not (
            isinstance(self.execution_noise, int | float)
            and math.isfinite(self.execution_noise)
            and self.execution_noise >= 0
        ):
            raise ConfigError(
                f"scripted execution_noise={self.execution_noise!r} must be a number >= 0 "
                "(m and rad per tick)"
            )
        self.observation_keys = tuple(self.observation_keys)
        unknown = [k for k in self.observation_keys if k not in _OBSERVATION_KEYS]
        if unknown:
            raise ConfigError(
                f"scripted observation_keys {unknown} unknown: use {', '.join(_OBSERVATION_KEYS)}"
            )
        for name in ("save_every", "max_episodes"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(f"scripted {name}={value} must be >= 1 or None")
        schedule = {}
        for tick, names in dict(self.buttons_schedule).items():
            names = (names,) if isinstance(names, str) else tuple(names)
            bad = [n for n in names if n not in BUTTON_NAMES]
            if bad or int(tick) < 0:
                raise ConfigError(
                    f"scripted buttons_schedule[{tick}]={names}: ticks are >= 0 and buttons "
                    f"are {', '.join(BUTTON_NAMES)}"
                )
            schedule[int(tick)] = frozenset(names)
        self.buttons_schedule = schedule
        ranges = tuple((int(a), int(b)) for a, b in self.intervention_ticks)
        if any(a < 0 or b < a for a, b in ranges):
            raise ConfigError(
                f"scripted intervention_ticks={self.intervention_ticks}: use (start, stop) "
                "pairs with 0 <= start <= stop"
            )
        self.intervention_ticks = ranges


Policy = Callable[[np.ndarray], np.ndarray]
DoneFn = Callable[[ArmObservation, "np.ndarray | None"], bool]


class ScriptedTeleop(Teleop):
    """An operator driven by a policy instead of a person.

    ``policy`` is either an object with ``act(obs (B, obs_dim)) -> (B, 6)`` and
    ``begin_episodes(n)`` (a batched scripted expert; called with B = 1, and
    ``begin_episodes(1)`` at every episode start) or a callable ``obs (obs_dim,) -> (6,)``;
    None holds still (only the button schedule runs). ``done(observation,
    environment_state) -> bool`` presses "save" when it turns True, and again only after it
    has returned False once (a solved task stays solved until the recorder resets it).

    Each tick the loop calls ``observe(observation, environment_state=None)``; the policy acts
    then, on the concatenation of ``config.observation_keys`` features and the environment
    state (the one passed, else the last from ``set_environment_state(x)``). ``read()``
    returns that action times the scales once (plus ``execution_noise``; the clean action is
    ``TeleopCommand.intended``); a second read without a new observation returns zero
    motion. A save, discard or re-record press starts a new episode.
    """

    reports_intended_action = True

    def __init__(
        self,
        config: ScriptedConfig,
        policy: Any = None,
        done: DoneFn | None = None,
    ):
        self.config = config
        self.policy = policy
        self.done = done
        self._scale = np.array([config.translation_scale] * 3 + [config.rotation_scale] * 3)
        self._connected = False
        self._environment_state: np.ndarray | None = None
        self._noise_rng = np.random.default_rng(config.seed)
        self._reset()

    def _reset(self) -> None:
        self._tick = 0
        self._episode_tick = 0
        self._saved = 0
        self._quit_next = False
        self._done_sent = False
        self._pending = np.zeros(6)
        self._pressed: set[str] = set()

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def episodes_saved(self) -> int:
        return self._saved

    def connect(self) -> None:
        if self._connected:
            return
        self._reset()
        self._connected = True
        self._begin_episode()

    def disconnect(self) -> None:
        self._connected = False

    def begin_episode(self) -> None:
        """The recorder starts an episode: per-episode counts (``save_every``,
        ``intervention_ticks``) restart here when reads happened since the last start (a
        reset phase between episodes, or an episode ended by success or the time limit)."""
        if self._episode_tick:
            self._begin_episode()

    def _begin_episode(self) -> None:
        self._episode_tick = 0
        for method, arg in (("begin_episodes", (1,)), ("begin_episode", ())):
            begin = getattr(self.policy, method, None)
            if callable(begin):
                begin(*arg)
                break

    def set_environment_state(self, environment_state) -> None:
        """Extra task features ``(k,)`` appended to the policy's observation from now on."""
        self._environment_state = (
            None
            if environment_state is None
            else np.asarray(environment_state, dtype=np.float64).reshape(-1)
        )

    def policy_observation(self, observation: ArmObservation) -> np.ndarray:
        """The ``(obs_dim,)`` vector the policy sees for ``observation``."""
        features = observation.as_dict()
        parts = [
            np.asarray(features[k], dtype=np.float64).reshape(-1)
            for k in self.config.observation_keys
        ]
        if self._environment_state is not None:
            parts.append(self._environment_state)
        return np.concatenate(parts) if parts else np.zeros(0)

    def observe(self, observation: ArmObservation, environment_state=None) -> None:
        if environment_state is not None:
            self.set_environment_state(environment_state)
        if self.policy is not None:
            obs = self.policy_observation(observation)
            if hasattr(self.policy, "act"):
                action = np.asarray(self.policy.act(obs[None]), dtype=np.float64)
            else:
                action = np.asarray(self.policy(obs), dtype=np.float64)
            if action.size != 6:
                raise ConfigError(
                    f"scripted policy returned an action of shape {action.shape}: it must "
                    "return 6 values [dx, dy, dz, drx, dry, drz] (or (1, 6) from act)"
                )
            action = action.reshape(6)
            if not np.all(np.isfinite(action)):
                raise NonFiniteError(f"scripted policy returned a non-finite action {action}")
            self._pending = action * self._scale
        if self.done is not None:
            finished = bool(self.done(observation, self._environment_state))
            # Re-arm only once done() has said False, so a task that stays solved until
            # the recorder resets it is not saved twice.
            if finished and not self._done_sent:
                self._pressed.add("save")
            self._done_sent = finished

    def read(self) -> TeleopCommand:
        if not self._connected:
            raise NotConnectedError("scripted teleop is not connected: call connect() first")
        buttons = set(self._pressed)
        self._pressed.clear()
        buttons |= self.config.buttons_schedule.get(self._tick, frozenset())
        if self._quit_next:
            buttons.add("quit")
            self._quit_next = False
        self._episode_tick += 1
        if self.config.save_every is not None and self._episode_tick == self.config.save_every:
            buttons.add("save")
        intervention = any(
            a <= self._episode_tick - 1 < b for a, b in self.config.intervention_ticks
        )
        intended, self._pending = self._pending, np.zeros(6)
        delta = intended
        if self.config.execution_noise and intended.any():
            delta = intended + self._noise_rng.normal(0.0, self.config.execution_noise, 6)
        self._tick += 1
        if buttons & {"save", "discard", "rerecord"}:
            if "save" in buttons:
                self._saved += 1
                if self.config.max_episodes is not None and self._saved >= self.config.max_episodes:
                    self._quit_next = True
            self._begin_episode()
        return TeleopCommand(
            delta_pose=delta,
            enabled=True,
            intervention=intervention,
            buttons=frozenset(buttons),
            timestamp=time.monotonic(),
            intended=intended,
        )
