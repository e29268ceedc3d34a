"""Sizes and rules of one preference-learning experiment."""

from __future__ import annotations

from dataclasses import dataclass

from robopref.errors import ConfigError

ON_LABEL_TIMEOUT = ("wait", "stop")


@dataclass
class LoopConfig:
    """Sizes of one preference-learning experiment.

    Attributes:
        rounds: refinement rounds K.
        num_demos: scripted-expert demonstrations for behaviour cloning (train split).
        demo_variations: the demos come from the train split's first ``demo_variations``
            variations only (0: the whole split), so exploration can cover more scenes than
            the costly demonstrations (``env.train_goal_sets=[0,4,5,6]
            loop.demo_variations=50``: demos on goal set 0, rollouts on all four).
        rollouts_per_round: exploration episodes collected each round (train split).
        rollouts_per_goal: exploration episodes started from each drawn variation, so a
            refiner can compare episodes that share a start (``rwr`` with ``baseline=goal``).
        exploration_std: std of Gaussian action noise during those rollouts, in units of the
            task's half action range (0.3 = 0.3 on Meta-World's [-1, 1], 0.3 of the step limit
            on Peel-v0).
        exploration_correlation: step-to-step correlation of that noise in ``[0, 1)``.
        segment_length: steps per queried segment.
        queries_per_round: queries asked each round.
        candidates_per_query: candidate pairs scored per query asked.
        eval_episodes: per-round evaluation episodes on the first variations of
            ``eval_split`` (deterministic policy): each round's success.
        eval_split: the split those come from: ``"train"`` (the training-split success the
            demo reports) or ``"test"`` (unseen scenes, as on-robot finetuning reports each
            round; never used to choose anything).
        scores_per_round: whole-episode 0-9 score requests per round, on that round's first
            rollouts, asked of the same source as the pairs (0: none); they count as labels.
        test_episodes: episodes on the first distinct test variations, for the BC and the
            final policy, at the end (the reported success, with a 95% Wilson interval).
        heldout_pairs: segment pairs from evaluation episodes scoring the reward model.
        validation_episodes: deterministic episodes per candidate policy on validation
            variations, scored by the learned reward to select the final policy (0: take the
            last round or the average).
        refine_from: ``"base"`` refines the BC policy on all data each round; ``"latest"``
            continues from the previous round's policy.
        average_last: the final policy averages the weights of the last ``average_last``
            rounds' policies (0: no average).
        label_timeout_s: how long a round waits for an asynchronous source's answers (s).
        min_labels: answers a round needs before it trains (asynchronous sources).
        on_label_timeout: below ``min_labels`` at the timeout: ``"wait"`` on, or ``"stop"``
            the run cleanly (resumable later).
        label_poll_s: how often an asynchronous source is polled while waiting (s).
        seed: seeds variations, exploration, segment sampling and training.
        save_datasets: write demos and rollouts as LeRobotDatasets into the run folder
            (required to resume).
    """

    rounds: int = 4
    num_demos: int = 25
    demo_variations: int = 0
    rollouts_per_round: int = 40
    rollouts_per_goal: int = 1
    exploration_std: float = 0.3
    exploration_correlation: float = 0.0
    segment_length: int = 50
    queries_per_round: int = 100
    candidates_per_query: int = 10
    eval_episodes: int = 50
    eval_split: str = "train"
    scores_per_round: int = 0
    test_episodes: int = 100
    heldout_pairs: int = 1000
    validation_episodes: int = 25
    refine_from: str = "base"
    average_last: int = 0
    label_timeout_s: float = 3600.0
    min_labels: int = 1
    on_label_timeout: str = "wait"
    label_poll_s: float = 2.0
    seed: int = 0
    save_datasets: bool = True

    def __post_init__(self) -> None:
        for name in (
            "rounds",
            "rollouts_per_round",
            "rollouts_per_goal",
            "segment_length",
            "queries_per_round",
            "candidates_per_query",
            "eval_episodes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"loop.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_demos", "demo_variations", "test_episodes", "scores_per_round"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loop.{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_split not in ("train", "validation", "test"):
            raise ConfigError(
                f"loop.eval_split must be train, validation or test, got '{self.eval_split}'"
            )
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
        if self.on_label_timeout not in ON_LABEL_TIMEOUT:
            raise ConfigError(
                f"loop.on_label_timeout must be one of {', '.join(ON_LABEL_TIMEOUT)}, got "
                f"'{self.on_label_timeout}'"
            )
        if self.label_timeout_s <= 0 or self.label_poll_s <= 0 or self.min_labels < 0:
            raise ConfigError(
                "loop.label_timeout_s and loop.label_poll_s must be > 0, loop.min_labels >= 0"
            )
