"""The preference loop: imitation first, then rounds of preference-based refinement.

    demos  <- scripted expert (or a dataset)
    pi_0   <- behaviour cloning on demos
    for k = 1..K:
        D_k    <- rollout(pi_{k-1} + exploration)                 # rollout
        Q_k    <- select(candidate segment pairs of D_1..k)        # select queries
        P      <- P + source.label(Q_k)                            # gather labels
        r_hat  <- reward_model.fit(P)                              # train reward
        pi_k   <- refiner(pi_0, D_1..k, r_hat)                     # refine
        report success(pi_k), accuracy(r_hat on held-out pairs)   # evaluate
    pi*    <- mean of the weights of pi_{K-m+1..K}                  # average (m = average_last)
           or argmax_k  mean learned return of pi_k on validation goals   # select

Validation goals are a separate draw of the task's goal variations, and selection reads
only the learned reward: ground truth (success, true reward) is used for reporting alone.

Everything it uses arrives as an object; this module reads no configuration files.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from robopref.data import Episode, Preference, save_episodes
from robopref.errors import ConfigError
from robopref.policies import BCPolicy, Policy, average_policies, train_bc
from robopref.preferences import PreferenceSource, QuerySelector, sample_pairs
from robopref.refine import Refiner
from robopref.rewards import RewardModel, preference_accuracy
from robopref.rollout import GaussianExploration, collect_episodes, success_rate
from robopref.training import Trainer

METRICS_FORMAT_VERSION = 1


@dataclass
class LoopConfig:
    """Sizes of one preference-learning experiment.

    Attributes:
        rounds: refinement rounds K.
        num_demos: scripted-expert demonstrations for behaviour cloning.
        rollouts_per_round: exploration episodes collected each round.
        rollouts_per_goal: exploration episodes started from each drawn goal variation, so a
            refiner can compare episodes that share a start (``rwr`` with ``baseline=goal``).
        exploration_std: std of Gaussian action noise during those rollouts (action units).
        exploration_correlation: step-to-step correlation of that noise in ``[0, 1)`` (0:
            white noise; see ``GaussianExploration``).
        segment_length: steps per queried segment.
        queries_per_round: queries asked each round (label budget = rounds x this).
        candidates_per_query: candidate pairs scored per query asked.
        eval_episodes: evaluation episodes (goals 0..N-1, deterministic policy).
        heldout_pairs: segment pairs from evaluation episodes scoring the reward model.
        validation_episodes: deterministic episodes per candidate policy on validation goals,
            scored by the learned reward to select the final policy (0: take the last round).
        refine_from: ``"base"`` refines the BC policy on all data each round; ``"latest"``
            continues from the previous round's policy.
        average_last: the final policy averages the weights of the last ``average_last``
            rounds' policies (0: no average; then selection on validation goals, or the last
            round). Single rounds swing by several points of success; their average does not.
        seed: seeds goals, exploration and segment sampling.
        save_datasets: write demos and rollouts as LeRobotDatasets into the run folder.
    """

    rounds: int = 4
    num_demos: int = 25
    rollouts_per_round: int = 40
    rollouts_per_goal: int = 1
    exploration_std: float = 0.3
    exploration_correlation: float = 0.0
    segment_length: int = 50
    queries_per_round: int = 100
    candidates_per_query: int = 10
    eval_episodes: int = 50
    heldout_pairs: int = 1000
    validation_episodes: int = 25
    refine_from: str = "base"
    average_last: int = 0
    seed: int = 0
    save_datasets: bool = True

    def __post_init__(self) -> None:
        for name in (
            "rounds",
            "num_demos",
            "rollouts_per_round",
            "rollouts_per_goal",
            "segment_length",
            "queries_per_round",
            "candidates_per_query",
            "eval_episodes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"loop.{name} must be >= 1, got {getattr(self, name)}")
        if self.average_last < 0:
            raise ConfigError(f"loop.average_last must be >= 0, got {self.average_last}")
        if self.average_last and self.validation_episodes:
            raise ConfigError(
                "loop.average_last and loop.validation_episodes both choose the final policy: "
                "set one of them to 0"
            )
        if self.exploration_std < 0 or self.validation_episodes < 0:
            raise ConfigError("loop.exploration_std and loop.validation_episodes must be >= 0")
        if not 0 <= self.exploration_correlation < 1:
            raise ConfigError(
                f"loop.exploration_correlation must lie in [0, 1), got "
                f"{self.exploration_correlation}"
            )
        if self.refine_from not in ("base", "latest"):
            raise ConfigError(
                f"loop.refine_from must be 'base' or 'latest', got '{self.refine_from}'"
            )


def select_by_learned_return(
    candidates: list[list[Episode]], reward_model: RewardModel
) -> tuple[int, list[float]]:
    """Index of the candidate whose episodes have the highest mean learned return, and the
    mean learned return of every candidate (ties go to the earliest)."""
    scores = [
        float(np.mean([reward_model.episode_rewards(e).sum() for e in episodes]))
        for episodes in candidates
    ]
    return int(np.argmax(scores)), scores


@dataclass
class RoundResult:
    round: int
    success_rate: float
    reward_accuracy: float
    queries: int
    labels: int
    rollout_success_rate: float
    wall_time_s: float
    extra: dict = field(default_factory=dict)


class PreferenceLoop:
    """Runs imitation then ``config.rounds`` rounds of preference refinement in simulation."""

    def __init__(
        self,
        config: LoopConfig,
        vec_env,
        task: str,
        max_steps: int,
        fps: int,
        expert: Policy,
        policy: BCPolicy,
        bc_trainer: Trainer,
        reward_model: RewardModel,
        selector: QuerySelector,
        source: PreferenceSource,
        refiner: Refiner,
        out_dir: str | Path,
        progress: bool = True,
        tensorboard: bool = True,
        demos: list[Episode] | None = None,
        pretrained: bool = False,
        validation_env=None,
    ):
        """``demos`` replaces the scripted expert's demonstrations (e.g. a recorded dataset);
        ``pretrained=True`` takes ``policy`` as the imitation policy and skips training it;
        ``validation_env`` (same task, other goals) serves policy selection."""
        self.config = config
        self.vec_env, self.task, self.max_steps, self.fps = vec_env, task, max_steps, fps
        self.expert, self.policy, self.bc_trainer = expert, policy, bc_trainer
        self.reward_model, self.selector, self.source, self.refiner = (
            reward_model,
            selector,
            source,
            refiner,
        )
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.demos, self.pretrained = demos, pretrained
        self.validation_env = validation_env
        self.validation: list[list[Episode]] = []  # per round: the candidate's episodes
        self.round_policies: list[BCPolicy] = []
        self.rng = np.random.default_rng(config.seed)
        self.history: list[RoundResult] = []
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out_dir / "tb" / "loop"))

    # -- the algorithm box -------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        start = time.perf_counter()
        demos = self.demos or self.rollout(self.expert, cfg.num_demos, "demos")
        base = self.policy if self.pretrained else self.imitate(demos)
        bc_eval = self.evaluate(base)
        self.validate(base)
        self.log_round(0, bc_eval, queries=0, labels=0, rollouts=[], start=start)

        policy, pool, preferences, asked = base, list(demos), [], 0
        for k in range(1, cfg.rounds + 1):
            explorer = GaussianExploration(
                policy, cfg.exploration_std, seed=cfg.seed * 100 + k,
                correlation=cfg.exploration_correlation,
            )
            rollouts = self.rollout(
                explorer, cfg.rollouts_per_round, f"rollouts_round{k}", cfg.rollouts_per_goal
            )
            pool += rollouts
            queries = self.select_queries(pool, fitted=k > 1)
            preferences += self.gather_labels(queries, pool)
            asked += len(queries)
            reward_metrics = self.train_reward(preferences, pool)
            start_policy = base if cfg.refine_from == "base" else policy
            policy, refine_metrics = self.refiner.refine(
                start_policy, base, pool[len(demos) :], demos, self.reward_model
            )
            policy.save(self.out_dir / "checkpoints" / f"policy_round{k}.pt")
            self.round_policies.append(policy)
            evaluation = self.evaluate(policy)
            self.validate(policy)
            self.log_round(
                k,
                evaluation,
                asked,
                len(preferences),
                rollouts,
                start,
                extra={"reward": reward_metrics, "refine": refine_metrics},
            )
        return self.finish(start)

    # -- the steps -----------------------------------------------------------------------
    def rollout(self, policy: Policy, count: int, name: str, per_goal: int = 1) -> list[Episode]:
        drawn = self.rng.integers(0, 50, size=-(-count // per_goal))
        goals = np.repeat(drawn, per_goal)[:count].tolist()
        episodes = collect_episodes(
            self.vec_env,
            policy,
            goals,
            self.task,
            self.max_steps,
            source=name,
            progress=self.progress,
        )
        if self.config.save_datasets:
            save_episodes(
                episodes, self.out_dir / "datasets" / name, fps=self.fps, repo_id=f"robopref/{name}"
            )
        return episodes

    def imitate(self, demos: list[Episode]) -> BCPolicy:
        train_bc(self.policy, demos, self.bc_trainer)
        self.policy.save(self.out_dir / "checkpoints" / "policy_bc.pt")
        return self.policy

    def select_queries(self, pool: list[Episode], fitted: bool):
        cfg = self.config
        candidates = sample_pairs(
            pool, cfg.segment_length, cfg.queries_per_round * cfg.candidates_per_query, self.rng
        )
        model = self.reward_model if fitted else None
        chosen = self.selector.select(candidates, pool, model, cfg.queries_per_round, self.rng)
        return [candidates[i] for i in chosen]

    def gather_labels(self, queries, pool: list[Episode]) -> list[Preference]:
        return [p for p in self.source.label(queries, pool) if p is not None]

    def train_reward(self, preferences: list[Preference], pool: list[Episode]) -> dict:
        if not preferences:
            raise RuntimeError(
                "the preference source answered no query: loosen its skip threshold or ask more"
            )
        return self.reward_model.fit(preferences, pool)

    def evaluate(self, policy: Policy) -> list[Episode]:
        goals = list(range(self.config.eval_episodes))
        return collect_episodes(
            self.vec_env,
            policy,
            [g % 50 for g in goals],
            self.task,
            self.max_steps,
            source="eval",
            progress=self.progress,
        )

    def validate(self, policy: Policy) -> None:
        if self.validation_env is None or self.config.validation_episodes == 0:
            return
        goals = [g % 50 for g in range(self.config.validation_episodes)]
        self.validation.append(
            collect_episodes(self.validation_env, policy, goals, self.task, self.max_steps,
                             source="validation", progress=self.progress)
        )

    def select(self) -> tuple[int, list[float]]:
        if not self.validation:
            return len(self.history) - 1, []
        return select_by_learned_return(self.validation, self.reward_model)

    # -- bookkeeping ---------------------------------------------------------------------
    def log_round(self, k, evaluation, queries, labels, rollouts, start, extra=None):
        accuracy = float("nan")
        if k > 0:
            pairs = sample_pairs(
                evaluation, self.config.segment_length, self.config.heldout_pairs, self.rng
            )
            accuracy = preference_accuracy(self.reward_model, pairs, evaluation)
        result = RoundResult(
            round=k,
            success_rate=success_rate(evaluation),
            reward_accuracy=accuracy,
            queries=queries,
            labels=labels,
            rollout_success_rate=success_rate(rollouts),
            wall_time_s=time.perf_counter() - start,
            extra=extra or {},
        )
        self.history.append(result)
        if self._writer is not None:
            for key in ("success_rate", "reward_accuracy", "labels", "rollout_success_rate"):
                value = getattr(result, key)
                if np.isfinite(value):
                    self._writer.add_scalar(f"loop/{key}", value, k)
            self._writer.flush()
        print(
            f"round {k}: success {result.success_rate:.2f}  reward acc {accuracy:.3f}  "
            f"queries {queries}  labels {labels}  t={result.wall_time_s:.0f}s",
            flush=True,
        )

    def average(self) -> tuple[str, float]:
        """Averages the last ``average_last`` round policies, saves and evaluates the result;
        returns its description and success rate."""
        members = self.round_policies[-self.config.average_last :]
        first = len(self.round_policies) - len(members) + 1
        averaged = average_policies(members)
        averaged.save(self.out_dir / "checkpoints" / "policy_selected.pt")
        rate = success_rate(self.evaluate(averaged))
        name = f"average of rounds {first}-{len(self.round_policies)}"
        print(f"final policy: {name}, success {rate:.2f}", flush=True)
        return name, rate

    def finish(self, start: float) -> dict:
        bc, last = self.history[0], self.history[-1]
        selected, scores = None, []
        if self.config.average_last and self.round_policies:
            final, final_rate = self.average()
        else:
            selected, scores = self.select()
            final, final_rate = f"round {selected}", self.history[selected].success_rate
            source = "policy_bc.pt" if selected == 0 else f"policy_round{selected}.pt"
            checkpoints = self.out_dir / "checkpoints"
            if (checkpoints / source).exists():
                shutil.copyfile(checkpoints / source, checkpoints / "policy_selected.pt")
            how = "by learned return on validation goals" if scores else "(the last round)"
            print(f"selected round {selected} {how}", flush=True)
        summary = {
            "format_version": METRICS_FORMAT_VERSION,
            "task": self.task,
            "seed": self.config.seed,
            "bc_success_rate": bc.success_rate,
            "refined_success_rate": final_rate,
            "improvement": final_rate - bc.success_rate,
            "final_policy": final,
            "selected_round": selected,
            "validation_learned_returns": scores,
            "last_round_success_rate": last.success_rate,
            "reward_accuracy": last.reward_accuracy,
            "queries": last.queries,
            "labels": last.labels,
            "wall_time_s": time.perf_counter() - start,
            "rounds": [asdict(r) for r in self.history],
            "loop_config": asdict(self.config),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=float))
        tmp.replace(self.out_dir / "metrics.json")
        if self._writer is not None:
            self._writer.close()
        return summary
