"""Scripted teacher with human-like mistakes, following the B-Pref benchmark (Lee et al. 2021).

For segments a, b with ground-truth rewards, the teacher computes (myopic) returns
``R = sum_t gamma^(L-1-t) r_t`` and then, in this order:

1. skip: no answer when ``max(R_a, R_b) < skip_threshold``;
2. equal: answer EQUAL when ``|R_a - R_b| < equal_threshold``;
3. choice: with ``beta = None`` prefer the higher return (oracle; ties -> EQUAL), otherwise
   prefer a with probability ``sigmoid(beta * (R_a - R_b))``;
4. mistake: flip FIRST/SECOND with probability ``mistake_prob``.

Thresholds and ``beta`` are in units of the task's ``reward_scale`` (its per-step reward
of good behaviour) summed over the segment, so one preset means the same on Meta-World's
0-10 reward and on Peel-v0's removed fraction per tick: returns are divided by
``reward_scale`` before the rules above.

The same teacher also gives whole-episode 0-9 scores (``score``, :func:`episode_score`) with
the same knobs, the simulated counterpart of the labelling page's episode scores: on Peel-v0
an episode's true return is its removed fraction minus the gouging and force penalties, so its
score follows the task's own quality metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robopref.data import Label, Preference, Score, Segment, as_pool
from robopref.errors import ConfigError
from robopref.preferences.base import SynchronousSource

SCORE_BASES = ("step", "episode")
SCORE_LEVELS = 10  # scores 0..9


@dataclass
class TeacherConfig:
    """B-Pref teacher knobs (defaults: the oracle).

    Attributes:
        beta: rationality of the stochastic choice; ``None`` = perfectly rational.
        gamma: myopic discount applied from the segment's end backwards (1 = none).
        skip_threshold: skip a query when both returns are below this (``None`` = never).
        equal_threshold: answer EQUAL when returns differ by less than this (0 = never).
        mistake_prob: probability of flipping a FIRST/SECOND answer (and of mirroring a
            score, ``9 - s``).
        reward_scale: the task's per-step reward unit (the CLI takes it from the task);
            thresholds and ``beta`` are in multiples of it.
        score_range: ``(low, high)`` return mapped linearly onto scores 0..9, in units of
            ``reward_scale``: per step (``score_basis="step"``) or for the whole segment
            (``"episode"``); ``None``: (0, 1) per step (the CLI takes the task's).
        score_basis: ``"step"`` scores the mean per-step reward (any length), ``"episode"``
            the segment's whole return (Peel-v0: the removed fraction, less penalties);
            ``None``: ``"step"`` (the CLI takes the task's).
        success_bonus: added to each step's true reward while the task's success flag is set
            (``Episode.successes``), in units of ``reward_scale``: a person judging "did it
            reach the goal" rather than the dense reward alone. On reach-v3 the dense reward
            is 10 on successful steps and already 9.99-10 (of 10) one step before an
            episode's first success, so without a bonus segments differ by approach speed,
            not by success (README). 0: none.
        seed: seeds the teacher's randomness.
    """

    beta: float | None = None
    gamma: float = 1.0
    skip_threshold: float | None = None
    equal_threshold: float = 0.0
    mistake_prob: float = 0.0
    reward_scale: float = 1.0
    score_range: list[float] | tuple[float, float] | None = None
    score_basis: str | None = None
    success_bonus: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.beta is not None and self.beta <= 0:
            raise ConfigError(f"teacher beta must be > 0 or null (rational), got {self.beta}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"teacher gamma must lie in (0, 1], got {self.gamma}")
        if self.equal_threshold < 0:
            raise ConfigError("teacher equal_threshold must be >= 0")
        if not self.reward_scale > 0:
            raise ConfigError(f"teacher reward_scale must be > 0, got {self.reward_scale}")
        if not 0 <= self.mistake_prob <= 1:
            raise ConfigError(f"teacher mistake_prob must lie in [0, 1], got {self.mistake_prob}")
        if not (math.isfinite(self.success_bonus) and self.success_bonus >= 0):
            raise ConfigError(f"teacher success_bonus must be a number >= 0 (reward_scale "
                              f"units per successful step), got {self.success_bonus}")
        if self.score_range is not None:
            low, high = (float(v) for v in self.score_range)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ConfigError(f"teacher score_range {self.score_range} must be (low, high) "
                                  "with low < high, in units of reward_scale")
            self.score_range = (low, high)
        if self.score_basis is not None and self.score_basis not in SCORE_BASES:
            raise ConfigError(f"teacher score_basis must be one of {', '.join(SCORE_BASES)}, "
                              f"got '{self.score_basis}'")


class ScriptedTeacher(SynchronousSource):
    name = "scripted_teacher"
    needs_true_rewards = True
    gives_scores = True

    def __init__(self, config: TeacherConfig | None = None):
        self.config = config or TeacherConfig()
        self.rng = np.random.default_rng(self.config.seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]

    def segment_return(self, rewards: np.ndarray) -> float:
        """Myopic return of one segment's true rewards ``(L,)``, in units of
        ``reward_scale``."""
        length = len(rewards)
        weights = self.config.gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)
        return float(np.dot(weights, rewards)) / self.config.reward_scale

    def judged_rewards(self, segment: Segment, pool) -> np.ndarray:
        """The segment's true rewards ``(L,)`` as the teacher sees them: plus
        ``success_bonus * reward_scale`` on each step whose success flag is set."""
        rewards = segment.rewards(pool)
        bonus = self.config.success_bonus
        if not bonus:
            return rewards
        flags = segment.episode(pool).successes[segment.start : segment.end]
        return rewards + bonus * self.config.reward_scale * flags.astype(rewards.dtype)

    def judge(self, return_a: float, return_b: float) -> Label | None:
        """The teacher's answer for two (already discounted) returns; ``None`` = skip."""
        cfg = self.config
        if cfg.skip_threshold is not None and max(return_a, return_b) < cfg.skip_threshold:
            return None
        diff = return_a - return_b
        if abs(diff) < cfg.equal_threshold:
            return Label.EQUAL
        if cfg.beta is None:
            if diff == 0:
                return Label.EQUAL
            label = Label.FIRST if diff > 0 else Label.SECOND
        else:
            p_first = 1.0 / (1.0 + math.exp(-max(min(cfg.beta * diff, 500.0), -500.0)))
            label = Label.FIRST if self.rng.random() < p_first else Label.SECOND
        if cfg.mistake_prob > 0 and self.rng.random() < cfg.mistake_prob:
            label = Label.SECOND if label is Label.FIRST else Label.FIRST
        return label

    def label(self, pairs: list[tuple[Segment, Segment]], episodes):
        pool = as_pool(episodes)
        out: list[Preference | None] = []
        for a, b in pairs:
            ra, rb = self.judged_rewards(a, pool), self.judged_rewards(b, pool)
            if not (np.isfinite(ra).all() and np.isfinite(rb).all()):
                raise ValueError(
                    "the scripted teacher needs ground-truth rewards, and these episodes have "
                    "none (NaN): use a human or transferred preference source"
                )
            label = self.judge(self.segment_return(ra), self.segment_return(rb))
            out.append(
                None
                if label is None
                else Preference(a, b, label.target, source=self.name, annotator="script")
            )
        return out


    def score(self, segments: list[Segment], episodes) -> list[Score | None]:
        """A 0-9 score for each segment (usually a whole episode); ``None`` = skipped."""
        pool = as_pool(episodes)
        out: list[Score | None] = []
        for segment in segments:
            value = episode_score(self, self.judged_rewards(segment, pool))
            out.append(None if value is None else
                       Score(segment, float(value), source=self.name, annotator="script"))
        return out


def episode_score(teacher: ScriptedTeacher, rewards: np.ndarray,
                  score_range: tuple[float, float] | None = None,
                  basis: str | None = None) -> int | None:
    """A 0-9 score of one segment with true rewards ``rewards`` ``(L,)``; ``None`` = skip.

    ``score_range`` and ``basis`` default to the teacher's (``score_range``, ``score_basis``).
    The teacher's knobs, applied to one return instead of a difference of two:

    1. myopic: the discounted return ``R`` (``reward_scale`` units, as for pairs);
    2. skip: ``None`` when ``R < skip_threshold``;
    3. stochastic: ``R`` plus Gumbel noise of scale ``1 / beta`` (two such noisy returns
       compare as ``sigmoid(beta * (R_a - R_b))``, the teacher's pair rule);
    4. equal: ``R`` rounded to a multiple of ``equal_threshold`` (closer returns look alike);
    5. basis ``"step"``: ``R`` divided by the discount weights' sum (a per-step reward, so
       length does not matter); ``"episode"``: ``R`` itself; mapped linearly from
       ``score_range`` onto ten equal bins 0..9;
    6. mistake: the score mirrored (``9 - s``) with probability ``mistake_prob``.

    Without noise (no beta, no mistakes) the score never decreases as the return grows.
    """
    cfg = teacher.config
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if not np.isfinite(rewards).all():
        raise ValueError("the simulated annotator needs ground-truth rewards, and this "
                         "episode has none (NaN): score it by hand")
    low, high = score_range or cfg.score_range or (0.0, 1.0)
    basis = basis or cfg.score_basis or "step"
    value = teacher.segment_return(rewards)
    if cfg.skip_threshold is not None and value < cfg.skip_threshold:
        return None
    if cfg.beta is not None:
        value += float(teacher.rng.gumbel(0.0, 1.0 / cfg.beta))
    if cfg.equal_threshold > 0:
        value = cfg.equal_threshold * round(value / cfg.equal_threshold)
    if basis == "step":
        value /= float(np.sum(cfg.gamma ** np.arange(len(rewards), dtype=np.float64)))
    fraction = (value - low) / (high - low)
    # The small nudge keeps a return exactly on a bin edge (0.6 per step -> 6) from falling
    # into the bin below through rounding in the sum (5.9999999).
    score = int(min(SCORE_LEVELS - 1, max(0, math.floor(SCORE_LEVELS * fraction + 1e-9))))
    if cfg.mistake_prob > 0 and teacher.rng.random() < cfg.mistake_prob:
        score = SCORE_LEVELS - 1 - score
    return score


# Named presets of the six B-Pref behaviours, in units of the task's reward_scale (on
# Meta-World, 10 per step: skip below 5 x 10 = 50 summed over a segment).
TEACHER_PRESETS = {
    "oracle": TeacherConfig(),
    "stochastic": TeacherConfig(beta=0.5),
    "myopic": TeacherConfig(gamma=0.9),
    "skip": TeacherConfig(skip_threshold=5.0),
    "equal": TeacherConfig(equal_threshold=1.0),
    "mistake": TeacherConfig(mistake_prob=0.1),
}
