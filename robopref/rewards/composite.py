"""A composite reward for contact tasks: the task's own quality metrics mapped to [0, 1], plus
a model learned from pairwise preferences and whole-episode 0-9 scores (Peel-style).

Per step t of an episode, with the task's per-step metrics ``m_t`` (``Episode.metrics``: on
Peel-v0 the removed fraction gained, the fraction of ticks cutting inside the peel band, the
peak contact force in N, ...) and member ``j`` of a learned MLP ensemble ``g_j(o_t, a_t)`` in
``[-1, 1]``::

    phi_k(t) = clip((m_{t,k} - low_k) / (high_k - low_k), 0, 1)     (low_k > high_k: decreasing)
    r_j(t)   = sum_k w_k phi_k(t)  +  w_g g_j(o_t, a_t)

The weights ``w`` start at the configured ones and, with ``learn_weights``, are learned with the
network (kept positive through a softplus), so labels decide how much each metric counts.

Loss (``score_weight`` balances the two terms)::

    pairs (a_i, b_i), soft target y_i, weight v_i:
        BT  = sum_i v_i BCE(sigmoid(R_j(a_i) - R_j(b_i)), y_i) / sum_i v_i
    scored episodes e_n, score s_n in [0, 9], weight u_n, predicted return R_j(e_n):
        fit s_n / 9 ~ alpha_j R_j(e_n) + beta_j by weighted least squares within the batch
        (alpha_j >= 0), SCORE = weighted mean squared residual / weighted var(s / 9)
    loss = BT + score_weight * SCORE

The score term is a regression of the score on the episode's predicted return with its affine
calibration solved in closed form per batch: it asks only that predicted returns order and
space episodes as the scores do (1 - R^2 for a non-negative slope), leaving the reward's scale
to the Bradley-Terry term, so neither term fights the other over units.

``fit`` returns each component's weight and mean per-step contribution over the labelled data,
which the loop logs every round (``metrics.json``, TensorBoard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robopref.data import (
    SCORE_MAX,
    Preference,
    Score,
    as_pool,
    preference_targets,
    preference_weights,
    segment_pair_arrays,
    segment_pair_metrics,
)
from robopref.errors import ConfigError
from robopref.rewards.checkpointed import CheckpointedReward
from robopref.rewards.ensemble import StackedMLP, members
from robopref.training import Trainer

# Peel-v0's quality metrics per step (robopref.envs.peel.STEP_METRIC_NAMES): skin removed
# (one reward_scale, 0.005 of the layer per tick, counts as full marks), depth inside the peel
# band, force within the 30 N limit (full marks up to 25 N, none from 30 N).
PEEL_TERMS = [
    {"metric": "removed_gain", "low": 0.0, "high": 0.005, "weight": 1.0},
    {"metric": "in_band_fraction", "low": 0.0, "high": 1.0, "weight": 0.2},
    {"metric": "peak_force_n", "low": 30.0, "high": 25.0, "weight": 0.2},
]
LEARNED = "learned"


@dataclass
class CompositeRewardConfig:
    """Attributes:
    terms: metric terms, each ``{"metric": name, "low": value mapped to 0, "high": value mapped
        to 1, "weight": w >= 0}`` in the metric's own units (``low > high`` for a metric where
        less is better, e.g. force in N); default: Peel-v0's three. ``[]``: a reward learned
        from preferences and scores only.
    learned_weight: starting weight ``w_g`` of the learned model's per-step output in [-1, 1].
    learn_weights: learn every weight with the network (else they stay as configured).
    members: learned ensemble size M.
    hidden_sizes: hidden widths of each learned member.
    use_actions: the learned part reads ``(o_t, a_t)``; otherwise ``o_t`` only.
    score_weight: weight of the episode-score term against the Bradley-Terry term.
    score_batch_size: scored episodes per training step (whole episodes are long).
    seed: initialisation seed.
    """

    terms: list[dict] = field(default_factory=lambda: [dict(t) for t in PEEL_TERMS])
    learned_weight: float = 1.0
    learn_weights: bool = True
    members: int = 3
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    use_actions: bool = True
    score_weight: float = 1.0
    score_batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        terms = []
        for i, term in enumerate(self.terms):
            term = dict(term)
            unknown = set(term) - {"metric", "low", "high", "weight"}
            if unknown or "metric" not in term:
                raise ConfigError(
                    f"reward.terms[{i}] must be {{metric, low, high, weight}}, got {sorted(term)}"
                )
            term = {"metric": str(term["metric"]), "low": float(term.get("low", 0.0)),
                    "high": float(term.get("high", 1.0)), "weight": float(term.get("weight", 1.0))}
            if not (math.isfinite(term["low"]) and math.isfinite(term["high"])) or (
                term["low"] == term["high"]
            ):
                raise ConfigError(
                    f"reward.terms[{i}] ({term['metric']}) needs finite low != high, got "
                    f"{term['low']} and {term['high']}"
                )
            if not (math.isfinite(term["weight"]) and term["weight"] >= 0):
                raise ConfigError(f"reward.terms[{i}] weight must be >= 0, got {term['weight']}")
            terms.append(term)
        self.terms = terms
        if self.members < 1:
            raise ConfigError(f"reward members must be >= 1, got {self.members}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("reward hidden_sizes must be a non-empty list of positive widths")
        if not (math.isfinite(self.learned_weight) and self.learned_weight >= 0):
            raise ConfigError(f"reward learned_weight must be >= 0, got {self.learned_weight}")
        if self.score_weight < 0 or self.score_batch_size < 2:
            raise ConfigError("reward score_weight must be >= 0 and score_batch_size >= 2")


def _inverse_softplus(value: float) -> float:
    value = max(value, 1e-4)  # a zero weight would sit at -inf, where no gradient reaches it
    return value + math.log(-math.expm1(-value))


class CompositeReward(CheckpointedReward):
    """Metric terms plus a learned ensemble (see the module docstring). ``metric_names`` are
    the distinct metrics its terms read; ``member_rewards(obs, act, metrics)`` needs
    ``metrics (B, T, K)`` in that order whenever there is a term."""

    checkpoint_kind = "composite_reward"
    config_class = CompositeRewardConfig

    uses_scores = True

    def __init__(self, obs_dim: int, act_dim: int, config: CompositeRewardConfig,
                 trainer: Trainer):
        super().__init__()
        in_dim = self._init_inputs(obs_dim, act_dim, config, trainer)
        self.metric_names = tuple(dict.fromkeys(t["metric"] for t in config.terms))
        self.component_names = [t["metric"] for t in config.terms] + [LEARNED]
        self.stack = StackedMLP(members(in_dim, config))
        column = [self.metric_names.index(t["metric"]) for t in config.terms]
        self.register_buffer("term_column", torch.tensor(column, dtype=torch.long))
        self.register_buffer("term_low", torch.tensor([t["low"] for t in config.terms]))
        self.register_buffer("term_high", torch.tensor([t["high"] for t in config.terms]))
        start = [t["weight"] for t in config.terms] + [config.learned_weight]
        self.raw_weight = nn.Parameter(
            torch.tensor([_inverse_softplus(w) for w in start]),
            requires_grad=config.learn_weights,
        )

    @property
    def num_members(self) -> int:
        return self.config.members

    def weights(self) -> torch.Tensor:
        """``(K_terms + 1,)`` current weights, the learned part's last."""
        return F.softplus(self.raw_weight)

    # -- the reward ------------------------------------------------------------------------
    def components(self, obs: torch.Tensor, act: torch.Tensor, metrics: torch.Tensor | None):
        """Per-step ``phi (..., K_terms)`` in [0, 1] and learned ``g (M, ...)`` in [-1, 1]."""
        lead = obs.shape[:-1]
        if len(self.term_column):
            if metrics is None:
                raise ValueError(
                    f"the composite reward reads the per-step metrics {list(self.metric_names)}"
                    ": pass metrics= (episodes of a task that records them), or configure "
                    "reward.terms=[]"
                )
            values = metrics[..., self.term_column]
            phi = ((values - self.term_low) / (self.term_high - self.term_low)).clamp(0.0, 1.0)
        else:
            phi = obs.new_zeros((*lead, 0))
        x = self._inputs(obs, act)
        g = torch.tanh(self.stack(x.reshape(-1, x.shape[-1]))).reshape(self.num_members, *lead)
        return phi, g

    def forward(self, obs, act, metrics=None) -> torch.Tensor:
        """``obs (..., obs_dim)``, ``act (..., act_dim)``, ``metrics (..., K)`` -> ``(M, ...)``."""
        phi, g = self.components(obs, act, metrics)
        w = self.weights()
        metric_part = (phi * w[:-1]).sum(-1)
        return metric_part.unsqueeze(0) + w[-1] * g

    def _tensor(self, value) -> torch.Tensor | None:
        if value is None:
            return None
        return torch.as_tensor(np.asarray(value), dtype=torch.float32, device=self.in_mean.device)

    @torch.no_grad()
    def member_rewards(self, obs: np.ndarray, act: np.ndarray, metrics=None) -> np.ndarray:
        self.eval()
        with self.trainer.autocast():
            out = self(self._tensor(obs), self._tensor(act), self._tensor(metrics))
        return out.float().cpu().numpy()

    # -- training --------------------------------------------------------------------------
    def _pair_data(self, preferences: list[Preference], pool) -> dict[str, torch.Tensor]:
        pairs = [(p.first, p.second) for p in preferences]
        obs, act = segment_pair_arrays(pairs, pool)
        metrics = (segment_pair_metrics(pairs, pool, self.metric_names) if self.metric_names
                   else np.zeros((*obs.shape[:3], 0), np.float32))
        return {"obs": obs, "act": act, "metrics": metrics,
                "target": preference_targets(preferences),
                "weight": preference_weights(preferences)}

    def _score_data(self, scores: list[Score], pool) -> dict[str, np.ndarray]:
        """Scored segments padded to the longest: ``obs (N, T, obs_dim)``, ``mask (N, T)``."""
        longest = max(len(s.segment) for s in scores)
        n, k = len(scores), len(self.metric_names)
        obs = np.zeros((n, longest, self.obs_dim), np.float32)
        act = np.zeros((n, longest, self.act_dim), np.float32)
        metrics = np.zeros((n, longest, k), np.float32)
        mask = np.zeros((n, longest), np.float32)
        for i, score in enumerate(scores):
            seg, length = score.segment, len(score.segment)
            obs[i, :length] = seg.observations(pool)
            act[i, :length] = seg.actions(pool)
            if k:
                metrics[i, :length] = seg.metrics(pool, self.metric_names)
            mask[i, :length] = 1.0
        return {"obs": obs, "act": act, "metrics": metrics, "mask": mask,
                "target": np.array([s.score / SCORE_MAX for s in scores], np.float32),
                "weight": np.array([s.weight for s in scores], np.float32)}

    def fit(self, preferences: list[Preference], episodes,
            scores: list[Score] | None = None) -> dict[str, float]:
        pool = as_pool(episodes)
        preferences = [p for p in preferences if p.weight > 0]
        scores = [s for s in (scores or []) if s.weight > 0]
        if not preferences and not scores:
            raise ValueError("the composite reward needs preferences or episode scores to fit")
        pairs = self._pair_data(preferences, pool) if preferences else None
        scored = self._score_data(scores, pool) if scores else None
        first = pairs or scored
        self.set_input_normalizer(first["obs"], first["act"])
        device = self.trainer.device
        data = {}
        tensors = {}
        for name, part in (("pair", pairs), ("score", scored)):
            if part is not None:
                tensors[name] = {k: torch.as_tensor(v, device=device) for k, v in part.items()}
        size = max(len(preferences), len(scores))
        for name, count in (("pair", len(preferences)), ("score", len(scores))):
            if count:
                data[name] = torch.arange(size) % count

        def loss_fn(model: CompositeReward, batch: dict[str, torch.Tensor]):
            return model.composite_loss(batch, tensors)

        metrics = self.trainer.fit(self, loss_fn, data)
        return {**metrics, **self.contributions(tensors)}

    def composite_loss(self, batch, tensors):
        """Trainer loss: ``batch["pair"]``, ``batch["score"]`` index the labelled pairs and
        scored episodes held in ``tensors``."""
        loss = torch.zeros((), device=self.in_mean.device)
        metrics: dict[str, float] = {}
        if "pair" in batch:
            p = {k: v[batch["pair"]] for k, v in tensors["pair"].items()}
            returns = self(p["obs"], p["act"], p["metrics"]).sum(-1).float()  # (M, B, 2)
            logits = returns[..., 0] - returns[..., 1]
            target, weight = p["target"].expand_as(logits), p["weight"].expand_as(logits)
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            bt = (weight * bce).sum() / weight.sum().clamp_min(1e-12)
            decided = p["target"] != 0.5
            hits = ((logits > 0) == (target > 0.5)).float()[:, decided]
            loss = loss + bt
            metrics["bt_loss"] = float(bt.detach())
            metrics["train_accuracy"] = float(hits.mean()) if hits.numel() else float("nan")
        if "score" in batch and self.config.score_weight > 0:
            idx = batch["score"][: self.config.score_batch_size]
            s = {k: v[idx] for k, v in tensors["score"].items()}
            returns = (self(s["obs"], s["act"], s["metrics"]) * s["mask"]).sum(-1).float()
            score = score_regression_loss(returns, s["target"], s["weight"])
            loss = loss + self.config.score_weight * score
            metrics["score_loss"] = float(score.detach())
        return loss, metrics

    @torch.no_grad()
    def contributions(self, tensors) -> dict[str, float]:
        """Each component's weight and mean per-step contribution ``w_k phi_k`` (the learned
        part's ``w_g g``, ensemble mean) over the labelled segments, and the correlation of
        predicted episode returns with the scores."""
        self.eval()
        w = self.weights()
        sums, steps = torch.zeros(len(w), device=w.device), 0.0
        out: dict[str, float] = {}
        for name, part in tensors.items():
            mask = part.get("mask")
            phi, g = self.components(part["obs"], part["act"], part["metrics"])
            parts = torch.cat([phi * w[:-1], (w[-1] * g.mean(0)).unsqueeze(-1)], -1)
            if mask is None:
                mask = torch.ones(parts.shape[:-1], device=parts.device)
            sums += (parts * mask.unsqueeze(-1)).reshape(-1, len(w)).sum(0)
            steps += float(mask.sum())
            if name == "score" and len(mask) > 1:
                returns = (self(part["obs"], part["act"], part["metrics"]) * mask).sum(-1)
                r = returns.mean(0).cpu().numpy()
                y = part["target"].cpu().numpy()
                if r.std() > 0 and y.std() > 0:
                    out["score_correlation"] = float(np.corrcoef(r, y)[0, 1])
        for i, name in enumerate(self.component_names):
            out[f"weight/{name}"] = float(w[i])
            out[f"contribution/{name}"] = float(sums[i] / max(steps, 1.0))
        return out

    # -- persistence -----------------------------------------------------------------------


def score_regression_loss(returns: torch.Tensor, target: torch.Tensor,
                          weight: torch.Tensor) -> torch.Tensor:
    """Mean over members of the weighted least-squares misfit of ``target (N,)`` on predicted
    episode returns ``returns (M, N)`` with a per-member affine map of slope >= 0 solved in
    closed form, divided by the weighted variance of ``target``: 0 when returns predict the
    scores exactly, 1 when they predict nothing (or the wrong way round)."""
    w = weight / weight.sum().clamp_min(1e-12)
    y_mean = (w * target).sum()
    y = target - y_mean
    y_var = (w * y * y).sum().clamp_min(1e-8)
    r = returns - (w * returns).sum(-1, keepdim=True)
    r_var = (w * r * r).sum(-1).clamp_min(1e-8)
    slope = ((w * r * y).sum(-1) / r_var).clamp_min(0.0)
    residual = y - slope.unsqueeze(-1) * r
    return ((w * residual * residual).sum(-1) / y_var).mean()
