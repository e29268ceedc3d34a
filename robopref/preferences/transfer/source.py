"""Transferred preferences as a ``PreferenceSource``: labels target-task segment pairs from a
labelled source task, without asking anyone (PEARL, ICML 2024).

On every ``label`` call the source builds the target node set (the queried segments, padded
with segments drawn from the target episodes up to ``target_nodes``), computes both tasks'
intra-task costs, solves the GW plan, moves the source labels along it and calibrates them.
Only labelled source pairs count. The answer is a soft preference whose target is the
transferred label; pairs no labelled source pair reaches, or below ``min_confidence``, get no
answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robopref.data import Preference, Segment, as_pool, load_preferences
from robopref.errors import ConfigError
from robopref.preferences.base import SynchronousSource
from robopref.preferences.segments import sample_segments
from robopref.preferences.transfer.label_transfer import (
    CALIBRATIONS,
    SourceLabels,
    fit_temperature,
    rank_normalise,
    sharpen,
    transfer_labels,
)
from robopref.preferences.transfer.orientation import ORIENTATIONS, orient_by_progress
from robopref.preferences.transfer.plans import (
    FEATURE_SOLVERS,
    FUSED_SOLVERS,
    GWConfig,
    Plan,
    solve_plan,
)
from robopref.preferences.transfer.representations import (
    REPRESENTATIONS,
    UNIT_REPRESENTATIONS,
    TransferError,
    cross_costs,
    intra_task_costs,
    segment_features,
    standardise,
)
from robopref.registry import build_config


@dataclass
class TransferConfig:
    """Cross-task transfer settings.

    Attributes:
        source_run: a run folder of the source task (its datasets and ``labels/*.json``) to
            transfer from; ``None`` when the caller hands the source a ``SourceBank``.
        representation: pooled | dtw | learned | goal_relative (see ``representations``).
        dtw_points: steps each segment is resampled to for DTW.
        gw: the solver (``GWConfig`` fields).
        calibration: plain | sharpen | rank.
        orient: none | progress: flip the transferred labels (the mirror plan) when they
            disagree with goal progress on most target pairs (``orientation``; zero-shot,
            needs Meta-World-style observations carrying the goal).
        target_nodes: target segments in each plan (queried ones first, then drawn ones).
        source_nodes: at most this many source segments (the labelled ones, subsampled).
        min_confidence: no answer when ``|z - 0.5|`` is below this.
        seed: seeds node sampling.
    """

    source_run: str | None = None
    representation: str = "pooled"
    dtw_points: int = 10
    gw: dict = field(default_factory=dict)
    calibration: str = "plain"
    orient: str = "none"
    target_nodes: int = 500
    source_nodes: int = 1000
    min_confidence: float = 0.0
    seed: int = 0
    reward_scale: float | None = None  # accepted (the CLI passes every source one); unused

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(
                f"unknown transfer representation '{self.representation}': use one of "
                f"{list(REPRESENTATIONS)}"
            )
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(
                f"unknown transfer calibration '{self.calibration}': use one of "
                f"{list(CALIBRATIONS)}"
            )
        if self.orient not in ORIENTATIONS:
            raise ConfigError(
                f"unknown transfer orient '{self.orient}': use one of {list(ORIENTATIONS)}"
            )
        if self.target_nodes < 2 or self.source_nodes < 2:
            raise ConfigError("transfer target_nodes and source_nodes must be >= 2")
        if not 0 <= self.min_confidence < 0.5:
            raise ConfigError("transfer min_confidence must lie in [0, 0.5)")
        self.gw_config = build_config(GWConfig, dict(self.gw), "transfer.gw")


class SourceBank:
    """The labelled source task: its episodes, its labelled segments (the plan's source
    nodes) and the labels between them."""

    def __init__(self, preferences: list[Preference], episodes, max_nodes: int = 1000,
                 seed: int = 0):
        labelled = [p for p in preferences if p.weight > 0]
        if not labelled:
            raise ConfigError(
                "the transfer source has no labelled pairs: label source segment pairs first "
                "(e.g. run 'robopref demo' on the source task, or teacher=oracle)"
            )
        self.pool = as_pool(episodes)
        # One segment length (the most common) so the source nodes stack into one array.
        lengths = [len(s) for p in labelled for s in (p.first, p.second)]
        length = max(set(lengths), key=lengths.count)
        labelled = [p for p in labelled if len(p.first) == len(p.second) == length]
        key = lambda s: (s.episode_id, s.start, s.end)  # noqa: E731
        nodes = sorted({s for p in labelled for s in (p.first, p.second)}, key=key)
        if len(nodes) > max_nodes:
            # Keep whole labelled pairs, in random order, until the node budget is spent:
            # dropping nodes at random would keep only pairs with both ends kept, which for
            # sparse labels (a pair per segment or so) leaves almost none.
            chosen: set[Segment] = set()
            for i in np.random.default_rng(seed).permutation(len(labelled)):
                ends = {labelled[i].first, labelled[i].second} - chosen
                if len(chosen) + len(ends) <= max_nodes:
                    chosen |= ends
                if len(chosen) >= max_nodes:
                    break
            nodes = sorted(chosen, key=key)
        index = {s: i for i, s in enumerate(nodes)}
        kept = [p for p in labelled if p.first in index and p.second in index]
        if not kept:
            raise ConfigError("no labelled source pair survives subsampling: raise source_nodes")
        self.segments = nodes
        self.labels = SourceLabels(
            len(nodes),
            [index[p.first] for p in kept],
            [index[p.second] for p in kept],
            [p.target for p in kept],
            [p.weight for p in kept],
        )
        self.obs = np.stack([s.observations(self.pool) for s in nodes])
        self.act = np.stack([s.actions(self.pool) for s in nodes])

    @classmethod
    def from_run(cls, run_dir: str | Path, max_nodes: int = 1000, seed: int = 0) -> SourceBank:
        from robopref.loop.store import load_run_episodes

        run_dir = Path(run_dir)
        files = sorted((run_dir / "labels").glob("*.json"))
        if not files:
            raise ConfigError(
                f"source run {run_dir} has no labels/*.json: transfer needs a labelled source "
                "run (a finished 'robopref demo' run on the source task)"
            )
        preferences = [p for f in files for p in load_preferences(f)]
        return cls(preferences, load_run_episodes(run_dir), max_nodes, seed)


class TransferSource(SynchronousSource):
    """Labels target pairs by GW transfer from a ``SourceBank``.

    ``last`` holds the latest call's plan, plain and calibrated labels and solver info, for
    plots and diagnostics.
    """

    name = "transfer"

    def __init__(self, config: TransferConfig | None = None, bank: SourceBank | None = None,
                 reward_model=None):
        self.config = config or TransferConfig()
        if bank is None and self.config.source_run is not None:
            bank = SourceBank.from_run(
                self.config.source_run, self.config.source_nodes, self.config.seed
            )
        if bank is None:
            raise ConfigError(
                "the transfer source needs a labelled source: set teacher.source_run to a run "
                "folder of the source task"
            )
        self.bank = bank
        self.reward_model = reward_model
        self.rng = np.random.default_rng(self.config.seed)
        self.last: dict = {}
        self._source_costs = None
        self._temperature: float | None = None

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]

    # --- costs and plans ---------------------------------------------------------------

    def _costs(self, obs, act, what):
        """``(costs or None, features or None)``: feature solvers get no ``n x n`` costs."""
        cfg = self.config
        if cfg.gw_config.solver in FEATURE_SOLVERS:
            return None, segment_features(cfg.representation, obs, act, what, self.reward_model)
        return intra_task_costs(cfg.representation, obs, act, what, cfg.dtw_points,
                                self.reward_model)

    def source_costs(self):
        if self._source_costs is None:
            self._source_costs = self._costs(self.bank.obs, self.bank.act, "source")
        return self._source_costs

    def plan(self, target_obs: np.ndarray, target_act: np.ndarray) -> Plan:
        """The plan between the source nodes and target segments ``(n_t, L, obs_dim)``."""
        source_c, source_f = self.source_costs()
        target_c, target_f = self._costs(target_obs, target_act, "target")
        cross = None
        gw = self.config.gw_config
        if gw.solver in FUSED_SOLVERS:
            if source_f is None or source_f.shape[1] != target_f.shape[1]:
                raise TransferError(
                    f"solver={gw.solver} needs source and target features of one size (matching "
                    "observation spaces, representation pooled or learned): use solver=entropic"
                )
            if self.config.representation in UNIT_REPRESENTATIONS:
                # Metres in both tasks: standardising over both sets would rescale each
                # distance by its spread and let the noisier task set the units.
                cross = cross_costs(source_f, target_f)
            else:
                both = standardise(np.concatenate([source_f, target_f]))
                cross = cross_costs(both[: len(source_f)], both[len(source_f) :])
        return solve_plan(source_c, target_c, gw, cross, source_f, target_f)

    def temperature(self) -> float:
        """Sharpening temperature from self-transfer between two halves of the source."""
        if self._temperature is None:
            rng = np.random.default_rng(self.config.seed + 1)
            n = self.bank.labels.n
            order = rng.permutation(n)
            half_a, half_b = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
            labels = self.bank.labels
            pos_a = np.full(n, -1)
            pos_a[half_a] = np.arange(len(half_a))
            pos_b = np.full(n, -1)
            pos_b[half_b] = np.arange(len(half_b))
            in_a = (pos_a[labels.first] >= 0) & (pos_a[labels.second] >= 0)
            in_b = (pos_b[labels.first] >= 0) & (pos_b[labels.second] >= 0)
            if in_a.sum() == 0 or in_b.sum() == 0:
                self._temperature = 1.0
                return 1.0
            costs_a, feat_a = self._costs(self.bank.obs[half_a], self.bank.act[half_a], "source")
            costs_b, feat_b = self._costs(self.bank.obs[half_b], self.bank.act[half_b], "source")
            plan = solve_plan(costs_a, costs_b, self.config.gw_config, None, feat_a, feat_b)
            sub = SourceLabels(
                len(half_a), pos_a[labels.first[in_a]], pos_a[labels.second[in_a]],
                labels.target[in_a], labels.weight[in_a],
            )
            predicted = transfer_labels(
                plan, sub, pos_b[labels.first[in_b]], pos_b[labels.second[in_b]]
            )
            self._temperature = fit_temperature(predicted, labels.target[in_b])
        return self._temperature

    def calibrate(self, plain: np.ndarray) -> np.ndarray:
        if self.config.calibration == "sharpen":
            return sharpen(plain, self.temperature())
        if self.config.calibration == "rank":
            return rank_normalise(plain)
        return plain

    # --- the PreferenceSource contract ---------------------------------------------------

    def soft_labels(self, pairs: list[tuple[Segment, Segment]], episodes) -> np.ndarray:
        """Calibrated transferred labels ``(B,)`` for target ``pairs`` (NaN: no answer).

        Pairs are planned in groups of one segment length (a pair of two lengths gets no
        answer)."""
        out = np.full(len(pairs), np.nan)
        if not pairs:
            return out
        pool = as_pool(episodes)
        if not pool:
            raise TransferError("the target set is empty: roll out target episodes first")
        groups: dict[int, list[int]] = {}
        for i, (a, b) in enumerate(pairs):
            if len(a) == len(b):
                groups.setdefault(len(a), []).append(i)
        for length, members in sorted(groups.items()):
            out[members] = self._label_group([pairs[i] for i in members], pool, length)
        return out

    def _label_group(self, pairs, pool, length: int) -> np.ndarray:
        nodes: dict[Segment, int] = {}
        for a, b in pairs:
            for s in (a, b):
                nodes.setdefault(s, len(nodes))
        extra = self.config.target_nodes - len(nodes)
        if extra > 0 and any(len(e) >= length for e in pool.values()):
            for s in sample_segments(pool, length, extra, self.rng):
                nodes.setdefault(s, len(nodes))
        segments = list(nodes)
        obs = np.stack([s.observations(pool) for s in segments])
        act = np.stack([s.actions(pool) for s in segments])
        plan = self.plan(obs, act)
        first = np.array([nodes[a] for a, _ in pairs])
        second = np.array([nodes[b] for _, b in pairs])
        plain = transfer_labels(plan, self.bank.labels, first, second)
        orientation = None
        if self.config.orient == "progress":
            # Its own generator: the choice must not shift the node draws of later calls.
            orientation = orient_by_progress(plan, self.bank.labels, obs,
                                             np.random.default_rng(self.config.seed + 2))
            if orientation["flip"]:
                plain = 1.0 - plain
        calibrated = self.calibrate(plain)
        self.last = {"plan": plan, "plain": plain, "calibrated": calibrated,
                     "target_segments": segments, "info": plan.info,
                     "orientation": orientation}
        return calibrated

    def label(self, pairs, episodes) -> list[Preference | None]:
        z = self.soft_labels(pairs, episodes)
        out: list[Preference | None] = []
        for (a, b), value in zip(pairs, z, strict=True):
            if not np.isfinite(value) or abs(value - 0.5) < self.config.min_confidence:
                out.append(None)
            else:
                out.append(Preference(a, b, float(value), source=self.name,
                                      annotator=f"gw:{self.config.gw_config.solver}"))
        return out
