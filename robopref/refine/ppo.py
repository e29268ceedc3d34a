"""PPO on the learned reward, anchored to the base policy; on the whole policy or a residual only.

Each iteration:

1. rolls out ``episodes_per_iteration`` episodes from train-split variations through the task's
   vector env. Actions are drawn ``a ~ N(mu(o), diag(sigma^2))``: ``mu`` is the trainable
   policy's mean action, ``sigma`` a state-independent std in action units (learned, or fixed at
   ``init_std`` times the task's half action range); the env gets ``a`` clipped to the task's
   bounds (the log-probability is of the unclipped draw, as in cleanrl).
2. rewards every step with the **learned** reward ``r_hat(o_t, a_t)`` (ensemble mean minus
   ``reward_pessimism_k`` ensemble stds; a Gaussian reward model applies its own
   ``refine_with``), never the env's reward.
3. computes GAE(lambda) advantages with a value network ``V(o)``; an episode cut by the time
   limit bootstraps from ``V(o_T)``, one that terminated (a protective stop) does not.
4. takes ``epochs`` passes of minibatches over the batch, minimising for the policy::

       -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)] - entropy_coef H
       + anchor_weight ||(mu(o) - mu_base(o)) / half_range||^2 + residual_penalty(o)

   and stopping the policy's updates at the first minibatch whose approximate KL passes
   ``1.5 * target_kl``. The value network ``(V(o) - G)^2`` has its own optimiser and takes
   every epoch's minibatches whatever the KL: when the policy stops after a step or two (a
   small exploration std makes every step a large KL), the value it is judged by still fits.

It runs its own optimiser loop rather than the ``Trainer``'s ``fit``: PPO needs one Adam state
kept across iterations, epoch-wise minibatch permutations of a fresh on-policy batch and an early
stop on the KL, none of which ``fit`` (a fixed number of with-replacement steps under a new
optimiser per call) offers. The refine ``Trainer`` still supplies the device and TensorBoard
folder; PPO's own config holds its learning rate and gradient clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from robopref.errors import ConfigError
from robopref.policies import TrainablePolicy
from robopref.policies.residual import residual_penalty
from robopref.refine.awr import ValueBaseline
from robopref.refine.base import Refiner, residual_config, trainable_start
from robopref.rewards import RewardModel
from robopref.training import Trainer

LOG_2PI = math.log(2 * math.pi)


@dataclass
class PPOConfig:
    """Attributes:
    iterations: rollout + update cycles per ``refine`` call.
    episodes_per_iteration: on-policy episodes per iteration (run ``num_envs`` at a time).
    epochs: passes over each iteration's batch.
    minibatch_size: transitions per gradient step.
    lr: Adam learning rate of the value network (its own optimiser) and the log-std.
    policy_lr: learning rate of a whole policy's parameters. Small: Adam moves every weight
        of a wide pretrained network at once (one step at 3e-4 shifts a 256x256 BC policy's
        mean by ~0.07 on Meta-World even on noise gradients; 3e-5 by ~0.01).
    residual_lr: learning rate of a residual's parameters (a small net starting at zero moves
        ~20x less per step than a whole policy at the same rate).
    gamma, gae_lambda: discount and GAE(lambda) of the learned reward.
    clip_ratio: PPO's epsilon: the policy ratio is clipped to ``[1 - eps, 1 + eps]``.
    entropy_coef: weight of the entropy bonus.
    init_std: exploration std at the start, as a fraction of the task's half action range
        (0.1 is 0.1 on Meta-World's [-1, 1] and 0.1 of the step limit on the arm).
    learn_std: learn the (state-independent) log-std; otherwise it stays at ``init_std``.
    anchor_weight: weight of the squared distance between the policy's and the base policy's
        mean actions, in units of the half action range (large keeps the policy at the base).
    target_kl: stop an iteration's updates at the first minibatch whose approximate KL to the
        collecting policy passes ``1.5 * target_kl``; ``null`` never stops early.
    max_grad_norm: global gradient-norm clip.
    value_hidden_sizes: widths of the value network.
    reward_pessimism_k: with an ensemble reward, refine on ``mean - k * std`` over members.
    residual: train only a residual on the frozen given policy (a policy that already is a
        ``ResidualPolicy`` is trained as it is), instead of the whole policy.
    residual_policy: ``ResidualConfig`` options of that residual (hidden_sizes, max_residual,
        max_residual_fraction, l2_penalty, see_base_action).
    """

    iterations: int = 20
    episodes_per_iteration: int = 8
    epochs: int = 10
    minibatch_size: int = 256
    lr: float = 3e-4
    policy_lr: float = 3e-5
    residual_lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_ratio: float = 0.2
    entropy_coef: float = 0.0
    init_std: float = 0.1
    learn_std: bool = True
    anchor_weight: float = 0.1
    target_kl: float | None = 0.05
    max_grad_norm: float = 0.5
    value_hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    reward_pessimism_k: float = 0.0
    residual: bool = False
    residual_policy: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("iterations", "episodes_per_iteration", "epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ppo {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "policy_lr", "residual_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ppo {name} must be > 0, got {getattr(self, name)}")
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ConfigError("ppo gamma must lie in (0, 1] and gae_lambda in [0, 1]")
        if not 0 < self.clip_ratio < 1:
            raise ConfigError(f"ppo clip_ratio must lie in (0, 1), got {self.clip_ratio}")
        if min(self.entropy_coef, self.anchor_weight) < 0:
            raise ConfigError("ppo entropy_coef and anchor_weight must be >= 0")
        if not 0 < self.init_std <= 1:
            raise ConfigError(
                f"ppo init_std is a fraction of the half action range in (0, 1], got "
                f"{self.init_std}"
            )
        if self.target_kl is not None and not self.target_kl > 0:
            raise ConfigError("ppo target_kl must be > 0, or null to never stop early")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"ppo max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not self.value_hidden_sizes or min(self.value_hidden_sizes) < 1:
            raise ConfigError("ppo value_hidden_sizes must be a non-empty list of positive widths")
        if self.reward_pessimism_k < 0:
            raise ConfigError(f"ppo reward_pessimism_k must be >= 0, got {self.reward_pessimism_k}")
        residual_config(self.residual_policy, "refine")


class GaussianHead(nn.Module):
    """A state-independent diagonal Gaussian around a mean action: ``log_std (act_dim,)`` in
    action units, kept within ``[1e-3, 1]`` times the half action range."""

    def __init__(self, half_range: np.ndarray, init_std: float, learn: bool):
        super().__init__()
        half = torch.as_tensor(np.asarray(half_range, np.float32))
        self.log_std = nn.Parameter(torch.log(init_std * half), requires_grad=learn)
        self.register_buffer("min_log_std", torch.log(1e-3 * half))
        self.register_buffer("max_log_std", torch.log(half))

    def std(self) -> torch.Tensor:
        """``(act_dim,)`` standard deviation in action units."""
        return torch.clamp(self.log_std, self.min_log_std, self.max_log_std).exp()

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-density of ``actions (B, act_dim)`` under ``N(mean, std^2)``."""
        log_std = torch.clamp(self.log_std, self.min_log_std, self.max_log_std)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z**2 - log_std - 0.5 * LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the diagonal Gaussian (nats, a scalar)."""
        log_std = torch.clamp(self.log_std, self.min_log_std, self.max_log_std)
        return (log_std + 0.5 * (LOG_2PI + 1)).sum()


def gae(
    rewards: np.ndarray, values: np.ndarray, last_value: float, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(lambda) of one episode: ``rewards (T,)``, ``values (T,)`` = ``V(o_t)``, ``last_value``
    = ``V(o_T)`` (0 after a termination). Returns advantages ``(T,)`` and value targets ``(T,)``."""
    advantages = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        next_value = values[t + 1] if t + 1 < len(rewards) else last_value
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages, advantages + values


def return_scale(rewards: list[np.ndarray], gamma: float) -> float:
    """The std of the discounted reward-to-go over episodes' per-step ``rewards`` (each
    ``(T,)``): dividing rewards by it puts value targets at order one whatever the learned
    reward's unit (1 when every return is equal)."""
    returns = np.concatenate([gae(r, np.zeros(len(r)), 0.0, gamma, 1.0)[1] for r in rewards])
    return float(returns.std()) or 1.0


def learned_rewards(
    reward_model: RewardModel, obs: np.ndarray, act: np.ndarray, k: float, metrics=None
):
    """Per-step learned reward ``(B, T)`` for ``obs (B, T, obs_dim)``, ``act (B, T, act_dim)``
    (and the task's per-step ``metrics (B, T, K)`` for a reward that reads them): the member
    mean, minus ``k`` member stds for an ensemble."""
    members = np.asarray(reward_model.rewards_of(obs, act, metrics), dtype=np.float64)
    if k and members.shape[0] > 1:
        return members.mean(0) - k * members.std(0)
    return members.mean(0)


class PPORefiner(Refiner):
    """``refine`` collects its own on-policy data through ``vec_env`` (a vector env of
    ``task``); the ``rollouts`` and ``demos`` it is given are not used. ``history`` holds the
    last call's per-iteration metrics."""

    def __init__(self, config: PPOConfig, trainer: Trainer, task=None, vec_env=None):
        self.config, self.trainer, self.task, self.vec_env = config, trainer, task, vec_env
        self.history: list[dict[str, float]] = []
        self.protective_stops = 0
        self._writer = None
        self._logged = 0  # iterations logged to TensorBoard over every call

    def refine(
        self,
        policy: TrainablePolicy,
        base_policy: TrainablePolicy,
        rollouts,
        demos,
        reward_model: RewardModel,
    ) -> tuple[TrainablePolicy, dict[str, float]]:
        if self.task is None or self.vec_env is None:
            raise ConfigError(
                "ppo collects its own rollouts: build PPORefiner with the task and its vector "
                "env (PPORefiner(config, trainer, task=, vec_env=))"
            )
        cfg, device = self.config, self.trainer.device
        # Seeded from torch's generator, which the loop reseeds per step: a resumed run
        # draws the same variations and noise.
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
        start = trainable_start(policy, cfg.residual, cfg.residual_policy, "refine")
        trainable = (start.clone() if start is policy else start).to(device)
        base = base_policy.clone().to(device).eval()
        half = np.asarray(self.task.action_half_range, np.float32)
        head = GaussianHead(half, cfg.init_std, cfg.learn_std).to(device)
        self._half = torch.as_tensor(half, device=device)
        value, optimizers, reward_scale = None, None, 1.0
        self.history, env_steps, self.protective_stops = [], 0, 0
        bar = tqdm(range(cfg.iterations), desc="ppo", disable=not self.trainer.config.progress,
                   leave=False, dynamic_ncols=True)
        for _ in bar:
            episodes = self._collect(trainable, head, reward_model, rng, gen)
            if value is None:
                # Built on the first batch: its observations set the value net's normaliser,
                # the spread of its discounted returns the unit of rewards and value targets.
                obs = np.concatenate(episodes["obs"])
                value = ValueBaseline(obs, list(cfg.value_hidden_sizes)).to(device)
                reward_scale = return_scale(episodes["rewards"], cfg.gamma)
                on_base = trainable.base_policy() is not None
                policy_groups = [
                    {"params": [p for p in trainable.parameters() if p.requires_grad],
                     "lr": cfg.residual_lr if on_base else cfg.policy_lr},
                ]
                if cfg.learn_std:
                    policy_groups.append({"params": list(head.parameters())})
                optimizers = (torch.optim.Adam(policy_groups, lr=cfg.lr),
                              torch.optim.Adam(value.parameters(), lr=cfg.lr))
            batch = self._finish(episodes, value, reward_scale)
            env_steps += len(batch["obs"])
            stats = self._update(trainable, base, head, value, optimizers, batch, gen)
            stats.update(learned_return=batch["learned_return"], env_steps=float(env_steps),
                         std=float(head.std().detach().mean()))
            self.history.append(stats)
            self._log(stats)
            bar.set_postfix(ret=f"{stats['learned_return']:.3g}", kl=f"{stats['approx_kl']:.3f}")
        bar.close()
        trainable.eval()
        last = self.history[-1]
        metrics = {
            "learned_return_first": self.history[0]["learned_return"],
            "learned_return_last": last["learned_return"],
            "learned_return_best": max(h["learned_return"] for h in self.history),
            **{k: last[k] for k in ("approx_kl", "clip_fraction", "residual_norm", "value_loss",
                                    "entropy", "std", "updates", "anchor")},
            "env_steps": float(env_steps),
            "iterations": float(cfg.iterations),
            # Episodes its on-policy rollouts ended with a protective stop (a safety layer's).
            "protective_stops": float(self.protective_stops),
        }
        return trainable, metrics

    # -- rollouts ----------------------------------------------------------------------
    @torch.no_grad()
    def _collect(self, trainable, head, reward_model, rng, gen) -> dict[str, list]:
        """``episodes_per_iteration`` on-policy episodes: per-episode ``obs (T, obs_dim)``,
        sampled ``act (T, act_dim)`` (before clipping), ``logp (T,)``, learned ``rewards (T,)``
        and ``final`` observation to bootstrap from (``None`` after a termination)."""
        cfg, task, env = self.config, self.task, self.vec_env
        device, n_envs = self.trainer.device, env.num_envs
        variations = task.draw("train", cfg.episodes_per_iteration, rng)
        low, high = np.asarray(task.action_low), np.asarray(task.action_high)
        trainable.eval()
        out: dict[str, list] = {k: [] for k in ("obs", "act", "logp", "rewards", "final")}
        names = tuple(reward_model.metric_names)
        for begin in range(0, len(variations), n_envs):
            goals = list(variations[begin : begin + n_envs])
            used = len(goals)
            goals += [goals[-1]] * (n_envs - used)  # idle workers repeat a start; discarded
            env.set_attr("next_variation", goals)
            obs, _ = env.reset()
            trainable.begin_episodes(n_envs)
            o_buf, a_buf, e_buf, lp_buf, m_buf = [], [], [], [], []
            done = np.zeros(n_envs, dtype=bool)
            terminal = np.zeros(n_envs, dtype=bool)
            ends = np.full(n_envs, task.episode_steps)
            final = np.array(obs, dtype=np.float32)
            for t in range(task.episode_steps):
                o = torch.as_tensor(np.asarray(obs, np.float32), device=device)
                mean = trainable(o)
                noise = torch.randn(mean.shape, generator=gen).to(device)
                action = mean + head.std() * noise
                env_action = np.clip(action.cpu().numpy(), low, high).astype(np.float32)
                next_obs, _, term, trunc, info = env.step(env_action)
                if names:  # the task's per-step metrics, for a reward that reads them
                    m_buf.append(np.stack([np.asarray(info[n], np.float32) for n in names], -1))
                if "protective_stop" in info:
                    self.protective_stops += int(np.sum(np.asarray(info["protective_stop"])
                                                        & ~done))
                o_buf.append(o.cpu().numpy())
                a_buf.append(action.cpu().numpy())
                e_buf.append(env_action)
                lp_buf.append(head.log_prob(mean, action).cpu().numpy())
                live = ~done
                final[live] = np.asarray(next_obs, np.float32)[live]
                ended = (np.asarray(term) | np.asarray(trunc)) & ~done
                ends[ended] = t + 1
                terminal |= ended & np.asarray(term)
                done |= ended
                obs = next_obs
                if done.all():
                    break
            obs_b, act_b, env_b, lp_b = (np.stack(b, 1) for b in (o_buf, a_buf, e_buf, lp_buf))
            metrics = np.stack(m_buf, 1) if names else None
            rewards = learned_rewards(reward_model, obs_b, env_b, cfg.reward_pessimism_k, metrics)
            for i in range(used):
                end = int(ends[i])
                out["obs"].append(obs_b[i, :end])
                out["act"].append(act_b[i, :end])
                out["logp"].append(lp_b[i, :end])
                out["rewards"].append(rewards[i, :end])
                # After a termination nothing follows; a time-limit cut bootstraps from V.
                out["final"].append(None if terminal[i] else final[i])
        return out

    @torch.no_grad()
    def _finish(self, batch: dict, value: nn.Module, reward_scale: float) -> dict:
        """Flat transitions with GAE advantages and value targets (rewards in units of
        ``reward_scale``, so the value net fits numbers of order one)."""
        cfg, device = self.config, self.trainer.device
        adv, ret = [], []
        for obs, rewards, final in zip(batch["obs"], batch["rewards"], batch["final"], strict=True):
            v = value(torch.as_tensor(obs, device=device)).cpu().numpy()
            last = 0.0
            if final is not None:
                last = float(value(torch.as_tensor(final[None], device=device)).cpu()[0])
            a, g = gae(rewards / reward_scale, v, last, cfg.gamma, cfg.gae_lambda)
            adv.append(a)
            ret.append(g)
        return {
            "obs": torch.as_tensor(np.concatenate(batch["obs"]), device=device),
            "act": torch.as_tensor(np.concatenate(batch["act"]), device=device),
            "logp": torch.as_tensor(np.concatenate(batch["logp"]), device=device),
            "adv": torch.as_tensor(np.concatenate(adv), dtype=torch.float32, device=device),
            "ret": torch.as_tensor(np.concatenate(ret), dtype=torch.float32, device=device),
            "learned_return": float(np.mean([r.sum() for r in batch["rewards"]])),
        }

    # -- the update ----------------------------------------------------------------------
    def _update(self, trainable, base, head, value, optimizers, batch, gen) -> dict[str, float]:
        """``epochs`` passes of minibatch steps over one iteration's batch: the clipped surrogate
        for the policy until a minibatch already shows an approximate KL above
        ``1.5 * target_kl`` (checked per minibatch, as in Stable-Baselines3: a big pretrained
        network can move far within one epoch), the value regression on every minibatch."""
        cfg = self.config
        policy_optimizer, value_optimizer = optimizers
        obs, act, old_logp = batch["obs"], batch["act"], batch["logp"]
        with torch.no_grad():
            base_mean = base(obs)
        n = len(obs)
        policy_params = [p for g in policy_optimizer.param_groups for p in g["params"]]
        value_params = list(value.parameters())
        trainable.train()
        kls, clips, stopped = [], [], False
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=gen).to(obs.device)
            for begin in range(0, n, cfg.minibatch_size):
                idx = perm[begin : begin + cfg.minibatch_size]
                value_loss = ((value(obs[idx]) - batch["ret"][idx]) ** 2).mean()
                value_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                nn.utils.clip_grad_norm_(value_params, cfg.max_grad_norm)
                value_optimizer.step()
                if stopped:
                    continue
                mean = trainable(obs[idx])
                log_ratio = head.log_prob(mean, act[idx]) - old_logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    kl = float(((ratio - 1) - log_ratio).mean())
                if cfg.target_kl is not None and kl > 1.5 * cfg.target_kl:
                    stopped = True  # far enough from the policy that collected the batch
                    continue
                adv = batch["adv"][idx]
                if len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                clipped = ratio.clamp(1 - cfg.clip_ratio, 1 + cfg.clip_ratio)
                surrogate = -torch.min(ratio * adv, clipped * adv).mean()
                anchor = (((mean - base_mean[idx]) / self._half) ** 2).sum(-1).mean()
                penalty = residual_penalty(trainable, obs[idx]).mean()
                loss = (surrogate - cfg.entropy_coef * head.entropy()
                        + cfg.anchor_weight * anchor + penalty)
                policy_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                policy_optimizer.step()
                kls.append(kl)
                clips.append(float(((ratio.detach() - 1).abs() > cfg.clip_ratio).float().mean()))
        trainable.eval()
        with torch.no_grad():
            shift = torch.linalg.vector_norm(trainable(obs) - base_mean, dim=-1)
            anchor = (((trainable(obs) - base_mean) / self._half) ** 2).sum(-1).mean()
            value_loss = ((value(obs) - batch["ret"]) ** 2).mean()
        return {
            # KL and clip fraction as measured before each step taken.
            "approx_kl": float(np.mean(kls)),
            "clip_fraction": float(np.mean(clips)),
            # ||mu(o) - mu_base(o)|| in action units: the residual's size for a residual.
            "residual_norm": float(shift.mean()),
            "value_loss": float(value_loss),
            "entropy": float(head.entropy().detach()),
            "anchor": float(anchor),
            "updates": float(len(kls)),
        }

    def _log(self, stats: dict[str, float]) -> None:
        """Per-iteration scalars under the refine trainer's TensorBoard folder (``ppo/...``)."""
        self._logged += 1
        if self.trainer.log_dir is None:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.trainer.log_dir / "ppo"))
        for key, number in stats.items():
            if math.isfinite(number):
                self._writer.add_scalar(f"ppo/{key}", number, self._logged)
        self._writer.flush()
