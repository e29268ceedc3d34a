"""How the preference loop runs its steps through the run store and rebuilds its state from a
run folder after a kill (``ResumableSteps``, mixed into ``PreferenceLoop``).

Every step runs reseeded from (seed, step key) and commits its outputs before the next starts;
``restore`` reads back the completed steps' outputs (datasets, queries, labels, scores,
checkpoints, per-round results) and the state the uninterrupted run had after them (trainer
step counters, the preference source's random state), so a resumed run ends where an
uninterrupted one does.
"""

from __future__ import annotations

import zlib

import torch

from robopref.data import load_episodes, load_preferences, load_scores
from robopref.loop.store import pause_for_kill_tests
from robopref.policies import load_policy
from robopref.preferences import Query, ScoreQuery


class ResumableSteps:
    """The step runner and the restore of ``PreferenceLoop`` (see the module docstring)."""

    def step(self, key: str, compute, result=None):
        """Run step ``key`` unless the store has it complete; commit it after, with
        ``result(value)`` (default: the value itself when it is a dict) as its record."""
        if self.store.done(key):
            return self._restored.get(key)
        self.store.start(key)
        torch.manual_seed(zlib.crc32(f"{self.config.seed}/{key}".encode()))
        pause_for_kill_tests()
        value = compute()
        record = result(value) if result else (value if isinstance(value, dict) else {})
        pause_for_kill_tests()
        self.store.commit(key, record, self._restore_state())
        return value

    def _restore_state(self) -> dict:
        return {
            "trainer_steps": {name: t.global_step for name, t in self.trainers.items()},
            "source": self.source.state_dict(),
            "asked": self.asked,
            "elapsed_s": self.wall_time(),
        }

    def restore(self) -> None:
        """Rebuild the in-memory state of the completed steps from the run store."""
        store, done = self.store, set(self.store.completed())
        if not done:
            return
        state = store.restore_state
        for name, steps in state.get("trainer_steps", {}).items():
            if name in self.trainers:
                self.trainers[name].global_step = int(steps)
        self.source.load_state_dict(state.get("source", {}))
        self.asked = int(state.get("asked", 0))
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if "demos" in done:
            dataset = store.result("demos").get("dataset", "datasets/demos")
            if dataset:  # None: a pretrained policy refined without demonstrations
                self._add_to_pool(load_episodes(store.path(dataset)), demos=True)
        if "bc" in done:
            self.policy = load_policy(store.path("checkpoints", "policy_bc"))
            self._restored["bc"] = self.policy
        last_reward = 0
        for k in range(0, self.config.rounds + 1):
            self._restore_round(k, done)
            if k and f"round{k}/reward" in done:
                last_reward = k
        if last_reward:  # only the latest reward model is needed from here on
            path = store.path("checkpoints", f"reward_round{last_reward}")
            self.reward_model = type(self.reward_model).load(path, self.reward_model.trainer)
        if "final" in done:
            self._restored["final"] = store.result("final")
        print(f"resuming {store.root}: {len(done)} steps done", flush=True)

    def _restore_round(self, k: int, done: set) -> None:
        from robopref.loop.preference_loop import RoundResult

        store, key = self.store, f"round{k}"
        if k and f"{key}/rollout" in done:
            self._restored[f"{key}/rollout"] = self._load_dataset(f"rollouts_round{k}")
        if k and f"{key}/select" in done:
            queries = [Query.from_json(q) for q in store.read_json(f"queries/round{k}.json")]
            if store.path("queries", f"scores_round{k}.json").exists():
                queries += [ScoreQuery.from_json(q)
                            for q in store.read_json(f"queries/scores_round{k}.json")]
            self._restored[f"{key}/select"] = queries
        if k and f"{key}/label" in done:
            self.preferences += load_preferences(store.path("labels", f"round{k}.json"))
            if store.path("scores", f"round{k}.json").exists():
                self.scores += load_scores(store.path("scores", f"round{k}.json"))
            self._restored[f"{key}/label"] = store.result(f"{key}/label")
        if k and f"{key}/reward" in done:
            self._restored[f"{key}/reward"] = store.result(f"{key}/reward")
        if k and f"{key}/refine" in done:
            policy = load_policy(store.path("checkpoints", f"policy_round{k}"))
            self.round_policies.append(policy)
            self._restored[f"{key}/refine"] = policy
            self._refine_metrics = store.result(f"{key}/refine")
        if f"{key}/evaluate" in done:
            result = store.result(f"{key}/evaluate")
            self.history.append(RoundResult(**result))
            self._restored[f"{key}/evaluate"] = result
            if self.validation_env is not None and self.config.validation_episodes:
                policy = self.round_policies[k - 1] if k else self.policy
                self.validation.append(self._validate(policy))
        if f"{key}/report" in done:
            self._restored[f"{key}/report"] = store.result(f"{key}/report")
