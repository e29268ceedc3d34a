"""The preference loop: imitation first, then rounds of preference-based refinement.

    D_0    <- expert demos on train variations (or a dataset)
    pi_0   <- behaviour cloning on D_0
    for k = 1..K:
        D_k    <- rollout(pi_{k-1} + exploration) on train variations    # rollout
        Q_k    <- select(candidate segment pairs of D_1..k) [+ episodes of D_k to score]
        P, S   <- P + source.answers(Q_k), S + its 0-9 episode scores    # gather labels
        r_hat  <- reward_model.fit(P [, S])                              # train reward
        pi_k   <- refiner(pi_{k-1} or pi_0, D_1..k, r_hat)               # refine
        success(pi_k) on eval_split, accuracy(r_hat on held-out pairs) # evaluate
        [round report: quality with 95% intervals, labels, reward components, videos]
    pi*    <- mean of the weights of pi_{K-m+1..K}   (m = average_last)
           or argmax_k mean learned return of pi_k on validation variations
    report success of pi_0 and pi* on the test split, with 95% Wilson intervals

Test variations are used for that last line only; validation variations for any choice
between policies, and then only through the learned reward. Every step commits its outputs to
the run store before the next begins, so ``--resume`` continues a killed run from the last
completed step, each step reseeded from (seed, round, step) so the resumed run matches the
uninterrupted one.

Episodes come from a ``RolloutCollector`` (``robopref.loop.collectors``): the task's vector env
in simulation, or an arm through the safety layer (``robopref.loop.arm_rollouts``), which
records each episode durably as it ends. Everything the loop uses arrives as an object; this
module reads no configuration files.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from robopref.data import Episode, Preference, Score, Segment, load_episodes, save_episodes
from robopref.data import save_preferences as write_preferences
from robopref.data import save_scores as write_scores
from robopref.errors import RobopError
from robopref.loop.collectors import RolloutCollector, RunStopped, VecEnvCollector
from robopref.loop.config import LoopConfig
from robopref.loop.evaluation import (
    json_safe,
    quality_summary,
    rate_summary,
    select_by_learned_return,
)
from robopref.loop.labels import LabelTimeout, gather, preferences_of, scores_of
from robopref.loop.metrics import run_summary
from robopref.loop.resume import ResumableSteps
from robopref.loop.store import RunStore
from robopref.policies import TrainablePolicy, average_policies, train_bc
from robopref.preferences import PreferenceSource, Query, QuerySelector, ScoreQuery, sample_pairs
from robopref.refine import Refiner
from robopref.rewards import RewardModel, preference_accuracy
from robopref.rollout import GaussianExploration, success_rate
from robopref.training import Trainer

STEPS = ("rollout", "select", "label", "reward", "refine", "evaluate")


def steps_in(episodes) -> int:
    """Environment steps taken by ``episodes`` (their total length)."""
    return int(sum(len(e) for e in episodes))


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


class PreferenceLoop(ResumableSteps):
    """Runs imitation then ``config.rounds`` rounds of preference refinement on any task."""

    def __init__(
        self,
        config: LoopConfig,
        task,
        vec_env,
        expert,
        policy: TrainablePolicy,
        bc_trainer: Trainer,
        reward_model: RewardModel,
        selector: QuerySelector,
        source: PreferenceSource,
        refiner: Refiner,
        store: RunStore,
        progress: bool = True,
        tensorboard: bool = True,
        demos: list[Episode] | None = None,
        pretrained: bool = False,
        validation_env=None,
        demos_root=None,
        collector: RolloutCollector | None = None,
        reporter=None,
    ):
        """``task`` is a ``robopref.envs.Task`` (splits, episode length, action bounds);
        ``vec_env`` its vector env; ``demos`` replaces the expert's demonstrations (e.g. a
        recorded dataset, read from ``demos_root``, which the run then names by relative path
        instead of copying it; ``[]``: none, with ``pretrained``); ``pretrained=True`` takes
        ``policy`` as the imitation policy and skips training it; ``validation_env`` (same
        task) serves policy selection. ``collector`` runs every episode instead of ``vec_env``
        (e.g. on an arm); ``reporter.report(k, loop) -> dict`` writes round ``k``'s report as
        step ``round<k>/report``."""
        self.config, self.task, self.vec_env, self.expert = config, task, vec_env, expert
        self.collector = collector or VecEnvCollector(vec_env, task, progress)
        self.reporter = reporter
        self.policy, self.bc_trainer = policy, bc_trainer
        self.reward_model, self.selector, self.source, self.refiner = (
            reward_model,
            selector,
            source,
            refiner,
        )
        self.store, self.progress = store, progress
        self.demos, self.pretrained, self.demos_root = demos, pretrained, demos_root
        self.validation_env = validation_env
        self.trainers = {"bc": bc_trainer}
        for name, owner in (("reward", reward_model), ("refine", refiner)):
            if isinstance(getattr(owner, "trainer", None), Trainer):
                self.trainers[name] = owner.trainer
        self.history: list[RoundResult] = []
        self.validation: list[list[Episode]] = []
        self.round_policies: list[TrainablePolicy] = []
        self.pool: dict[str, Episode] = {}
        self.preferences: list[Preference] = []
        self.scores: list[Score] = []
        self.asked = 0
        self.started = time.perf_counter()
        self.elapsed_before = 0.0
        self._restored: dict = {}
        self._demo_episodes: list[Episode] = []
        self._refine_metrics: dict = {}
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(store.path("tb", "loop")))

    # -- the algorithm box -------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        self.restore()
        self.step("demos", self.collect_demos)
        base = self.step("bc", lambda: self.imitate(self._demo_episodes))
        self.step("round0/evaluate", lambda: self.evaluate_round(0, base, [], {}))
        policy = base
        try:
            for k in range(1, cfg.rounds + 1):
                policy = self.run_round(k, policy, base)
        except (LabelTimeout, RunStopped) as stop:
            print(f"stopped: {stop}", flush=True)
            return self.write_metrics(status="stopped", reason=str(stop))
        except RobopError as error:
            # metrics.json must not keep saying "running" for a run that ended; the
            # finished rounds stay on disk, so `--resume` continues once the cause is fixed
            self.write_metrics(status="failed", reason=str(error))
            raise
        self.step("final", lambda: self.finish(base))
        summary = self.write_metrics(status="finished")
        if self._writer is not None:
            self._writer.close()
        return summary

    def run_round(self, k: int, policy: TrainablePolicy, base: TrainablePolicy) -> TrainablePolicy:
        """One round: rollout, select queries, gather labels, train reward, refine, evaluate."""
        rollouts = self.step(f"round{k}/rollout", lambda: self.rollout(k, policy))
        queries = self.step(f"round{k}/select", lambda: self.select_queries(k, rollouts or []))
        self.step(f"round{k}/label", lambda: self.gather_labels(k, queries))
        reward_metrics = self.step(f"round{k}/reward", lambda: self.train_reward(k))
        start = base if self.config.refine_from == "base" else policy
        refined = self.step(
            f"round{k}/refine",
            lambda: self.refine(k, start, base),
            result=lambda _: self._refine_metrics,
        )
        self.step(
            f"round{k}/evaluate",
            lambda: self.evaluate_round(k, refined, rollouts or [], reward_metrics or {}),
        )
        if self.reporter is not None:
            self.step(f"round{k}/report", lambda: self.reporter.report(k, self))
        return refined

    # -- the steps -----------------------------------------------------------------------
    def collect_demos(self) -> dict:
        if self.demos is not None and self.demos_root is not None:
            self.store.register_dataset(self.demos[0].dataset_id, self.demos_root)
            self._add_to_pool(self.demos, demos=True)
            return {"dataset": self.store.datasets()[self.demos[0].dataset_id]}
        if self.demos == [] or (self.demos is None and not self.config.num_demos):
            return {"dataset": None}  # a pretrained policy refined without demonstrations
        if self.demos is not None:
            self._save_dataset(self.demos, "demos")
        else:
            variations = self.task.draw(
                "train", self.config.num_demos, self._rng("demos"),
                within=self.config.demo_variations or None,
            )
            self._record(self.expert, variations, "demos")
        return {"dataset": "datasets/demos"}

    def imitate(self, demos: list[Episode]) -> TrainablePolicy:
        if not self.pretrained and not demos:
            raise RobopError("no demonstrations to imitate: set loop.num_demos > 0, or refine a "
                             "trained policy (policy_checkpoint=DIR)")
        if not self.pretrained:
            train_bc(self.policy, demos, self.bc_trainer)
        self.policy.save(self.store.path("checkpoints", "policy_bc"))
        return self.policy

    def rollout(self, k: int, policy: TrainablePolicy) -> list[Episode]:
        cfg = self.config
        explorer = GaussianExploration.for_task(
            policy,
            self.task,
            cfg.exploration_std,
            seed=cfg.seed * 100 + k,
            correlation=cfg.exploration_correlation,
        )
        variations = self.task.draw(
            "train", cfg.rollouts_per_round, self._rng(f"round{k}/rollout"), cfg.rollouts_per_goal
        )
        return self._record(explorer, variations, f"rollouts_round{k}")

    def select_queries(self, k: int, rollouts: list[Episode]) -> list[Query | ScoreQuery]:
        cfg = self.config
        rng = self._rng(f"round{k}/select")
        askable = None
        if self.source.needs_true_rewards:
            askable = [i for i, e in self.pool.items() if np.isfinite(e.rewards).all()]
        candidates = sample_pairs(
            self.pool,
            cfg.segment_length,
            cfg.queries_per_round * cfg.candidates_per_query,
            rng,
            episode_ids=askable,
        )
        model = self.reward_model if k > 1 else None
        chosen = self.selector.select(candidates, self.pool, model, cfg.queries_per_round, rng)
        queries = [Query(f"r{k}-q{i:04d}", *candidates[c]) for i, c in enumerate(chosen)]
        self.store.write_json(f"queries/round{k}.json", [q.to_json() for q in queries])
        # Whole-episode 0-9 scores of this round's first rollouts (their scenes were drawn at
        # random already), asked of the same source in the same round.
        scored = [
            ScoreQuery(f"r{k}-s{i:04d}", Segment(e.id, 0, len(e)))
            for i, e in enumerate(rollouts[: cfg.scores_per_round])
        ]
        if scored:
            self.store.write_json(f"queries/scores_round{k}.json", [q.to_json() for q in scored])
        self.asked += len(queries) + len(scored)
        return queries + scored

    def gather_labels(self, k: int, queries: list[Query | ScoreQuery]) -> dict:
        answers = gather(self.source, queries, self.pool, self.config)
        received, scores = preferences_of(answers), scores_of(answers)
        write_preferences(received, self.store.path("labels", f"round{k}.json"))
        if scores or any(isinstance(q, ScoreQuery) for q in queries):
            write_scores(scores, self.store.path("scores", f"round{k}.json"))
        self.preferences += received
        self.scores += scores
        return {"answers": len(answers), "labels": len(received), "scores": len(scores)}

    def train_reward(self, k: int) -> dict:
        if not self.preferences and not self.scores:
            raise RuntimeError(
                "the preference source answered no query: loosen its skip threshold or ask more"
            )
        if self.reward_model.uses_scores:
            metrics = self.reward_model.fit(self.preferences, self.pool, scores=self.scores)
        else:
            metrics = self.reward_model.fit(self.preferences, self.pool)
        self.reward_model.save(self.store.path("checkpoints", f"reward_round{k}"))
        return metrics

    def refine(self, k: int, start: TrainablePolicy, base: TrainablePolicy) -> TrainablePolicy:
        demo_ids = set(self.demo_ids)
        rollouts = [e for i, e in self.pool.items() if i not in demo_ids]
        demos = [self.pool[i] for i in self.demo_ids]
        policy, metrics = self.refiner.refine(start, base, rollouts, demos, self.reward_model)
        policy.save(self.store.path("checkpoints", f"policy_round{k}"))
        self.round_policies.append(policy)
        self._refine_metrics = metrics
        return policy

    def evaluate_round(
        self, k: int, policy: TrainablePolicy, rollouts: list[Episode], reward_metrics: dict
    ) -> dict:
        cfg = self.config
        variations = self.task.first(cfg.eval_split, cfg.eval_episodes)
        evaluation = self._collect(policy, variations, "eval")
        accuracy = math.nan
        if k > 0:
            heldout = self._pool_of(evaluation)
            pairs = sample_pairs(
                heldout, cfg.segment_length, cfg.heldout_pairs, self._rng(f"round{k}/heldout")
            )
            accuracy = preference_accuracy(self.reward_model, pairs, heldout)
        validation_steps = 0
        if self.validation_env is not None and cfg.validation_episodes:
            self.validation.append(self._validate(policy))
            validation_steps = steps_in(self.validation[-1])
        extra = {"reward": reward_metrics, "refine": self._refine_metrics} if k > 0 else {}
        extra["env_steps"] = {
            "demos": steps_in(self._demo_episodes) if k == 0 else 0,
            "exploration": steps_in(rollouts),
            # A refiner that collects its own episodes (ppo) reports how many steps they took.
            "refiner": int(self._refine_metrics.get("env_steps", 0)) if k > 0 else 0,
            "evaluation": steps_in(evaluation) + validation_steps,
        }
        quality = quality_summary(evaluation)
        if quality:  # the task's quality metrics on the evaluation episodes, 95% intervals
            extra = {**extra, "quality": quality, "eval_split": cfg.eval_split,
                     "pairs": len(self.preferences), "scores": len(self.scores)}
        result = RoundResult(
            round=k,
            success_rate=success_rate(evaluation),
            reward_accuracy=accuracy,
            queries=self.asked,
            labels=len(self.preferences) + len(self.scores),
            rollout_success_rate=success_rate(rollouts),
            wall_time_s=self.wall_time(),
            extra=extra,
        )
        self.history.append(result)
        self._log(result)
        self.write_metrics(status="running")
        return asdict(result)

    def finish(self, base: TrainablePolicy) -> dict:
        cfg = self.config
        selected, scores = None, []
        checkpoints = self.store.path("checkpoints")
        evaluation_steps = 0
        if cfg.average_last and self.round_policies:
            members = self.round_policies[-cfg.average_last :]
            first = len(self.round_policies) - len(members) + 1
            final_policy = average_policies(members)
            name = f"average of rounds {first}-{len(self.round_policies)}"
            train_episodes = self._collect(
                final_policy, self.task.first("train", cfg.eval_episodes), "eval"
            )
            train_rate, evaluation_steps = success_rate(train_episodes), steps_in(train_episodes)
        else:
            if self.validation:
                selected, scores = select_by_learned_return(self.validation, self.reward_model)
            else:
                selected = len(self.history) - 1
            final_policy = self.round_policies[selected - 1] if selected else base
            name = f"round {selected}"
            train_rate = self.history[selected].success_rate
        final_policy.save(checkpoints / "policy_selected")
        print(f"final policy: {name}", flush=True)
        test = {"bc": None, "final": None}
        if cfg.test_episodes:
            variations = self.task.first("test", cfg.test_episodes)
            for key, policy in (("bc", base), ("final", final_policy)):
                episodes = self._collect(policy, variations, f"test {key}")
                test[key] = rate_summary([e.success for e in episodes])
                evaluation_steps += steps_in(episodes)
        return {
            "final_policy": name,
            "selected_round": selected,
            "validation_learned_returns": scores,
            "final_train_success_rate": train_rate,
            "test": test,
            "env_steps": {"evaluation": evaluation_steps},
        }

    # -- bookkeeping ---------------------------------------------------------------------
    @property
    def demo_ids(self) -> list[str]:
        return [e.id for e in self._demo_episodes]

    def _rng(self, key: str) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, zlib.crc32(key.encode())])

    def _collect(self, policy, variations: list, name: str) -> list[Episode]:
        return self.collector.collect(policy, variations, name)

    def _record(self, policy, variations: list, name: str) -> list[Episode]:
        """Collect and keep the episodes as the run's dataset ``name``; a collector that
        records writes it itself, durably episode by episode."""
        if not (self.collector.records and self.config.save_datasets):
            episodes = self._collect(policy, variations, name)
            self._save_dataset(episodes, name)
            return episodes
        folder = self.store.path("datasets", name)
        episodes = self.collector.collect(policy, variations, name, folder)
        if not episodes:
            raise RunStopped(f"no episode of {name} was kept (each stopped before its first "
                             "tick): resume the run to record them again")
        self.store.register_dataset(episodes[0].dataset_id, folder)
        self._add_to_pool(episodes, demos=name == "demos")
        return episodes

    def _validate(self, policy) -> list[Episode]:
        variations = self.task.first("validation", self.config.validation_episodes)
        return VecEnvCollector(self.validation_env, self.task, self.progress).collect(
            policy, variations, "validation"
        )

    def _save_dataset(self, episodes: list[Episode], name: str) -> None:
        folder = self.store.path("datasets", name)
        if self.config.save_datasets:
            save_episodes(
                episodes,
                folder,
                fps=self.task.fps,
                repo_id=f"robopref/{name}",
                overwrite=True,
                state_dim=self.task.state_dim,
            )
            self.store.register_dataset(episodes[0].dataset_id, folder)
        else:
            from robopref.data import assign_ids, new_dataset_id

            assign_ids(episodes, new_dataset_id())
        self._add_to_pool(episodes, demos=name == "demos")

    def _load_dataset(self, name: str) -> list[Episode]:
        episodes = load_episodes(self.store.path("datasets", name))
        self._add_to_pool(episodes, demos=name == "demos")
        return episodes

    def _add_to_pool(self, episodes: list[Episode], demos: bool = False) -> None:
        if demos:
            self._demo_episodes = episodes
        for episode in episodes:
            self.pool[episode.id] = episode

    @staticmethod
    def _pool_of(episodes: list[Episode]) -> dict[str, Episode]:
        from robopref.data import assign_ids

        return {e.id: e for e in assign_ids(episodes, "eval")}

    def wall_time(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _log(self, result: RoundResult) -> None:
        if self._writer is not None:
            for key in ("success_rate", "reward_accuracy", "labels", "rollout_success_rate"):
                value = getattr(result, key)
                if np.isfinite(value):
                    self._writer.add_scalar(f"loop/{key}", value, result.round)
            # Every number the reward's fit reported: losses, and a composite reward's
            # per-component weights and contributions.
            for key, value in result.extra.get("reward", {}).items():
                if isinstance(value, int | float) and np.isfinite(value):
                    self._writer.add_scalar(f"reward/{key}", value, result.round)
            for key, value in result.extra.get("quality", {}).items():
                if np.isfinite(value.get("mean", np.nan)):
                    self._writer.add_scalar(f"quality/{key}", value["mean"], result.round)
            self._writer.flush()
        print(
            f"round {result.round}: {self.config.eval_split}-split success "
            f"{result.success_rate:.2f}  "
            f"reward acc {result.reward_accuracy:.3f}  queries {result.queries}  "
            f"labels {result.labels}  t={result.wall_time_s:.0f}s",
            flush=True,
        )

    def write_metrics(self, status: str, reason: str | None = None) -> dict:
        """Write ``metrics.json`` (strict JSON) from what is known so far; returns it."""
        final = self.store.result("final") if self.store.done("final") else None
        summary = run_summary(
            self.task.name,
            self.config,
            self.history,
            final,
            queries=self.asked,
            labels=len(self.preferences) + len(self.scores),
            wall_time_s=self.wall_time(),
            status=status,
            reason=reason,
        )
        self.store.write_json("metrics.json", summary)
        return json_safe(summary)
