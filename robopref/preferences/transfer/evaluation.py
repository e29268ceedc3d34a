"""How good transferred labels are, judged against the target task's oracle teacher.

Label scores (accuracy, accuracy of the most confident half, expected calibration error),
the two baselines the results table compares against (a random plan; the source task's
reward model applied directly to the target) and the reward-level rows (a reward trained on
10% of the oracle labels plus transferred ones; BT against the Gaussian reward under flipped
labels). Everything is scored against decided oracle answers: ties are left out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from robopref.data import Preference, Segment, as_pool
from robopref.preferences.transfer.label_transfer import (
    expected_calibration_error,
    transfer_labels,
)
from robopref.preferences.transfer.orientation import orient_by_labels
from robopref.preferences.transfer.plans import DensePlan
from robopref.rewards.metrics import preference_accuracy


def oracle_truth(pairs: list[tuple[Segment, Segment]], episodes) -> np.ndarray:
    """``(B,)`` 1 where the first segment's true return is higher, 0 where lower, 0.5 on ties."""
    pool = as_pool(episodes)
    diff = np.array(
        [a.rewards(pool).sum() - b.rewards(pool).sum() for a, b in pairs], dtype=np.float64
    )
    return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))


def label_scores(z: np.ndarray, truth: np.ndarray) -> dict:
    """Scores of soft labels ``z (B,)`` (NaN: no answer) against ``oracle_truth``.

    ``coverage`` is the answered fraction of decided pairs; ``accuracy`` counts an
    unanswered or exactly-0.5 label as half right (a coin flip), so a source that answers
    little cannot look good; ``answered_accuracy`` is over answered pairs only;
    ``top_half_accuracy`` over the most confident half of the decided pairs.
    """
    z = np.asarray(z, dtype=np.float64)
    decided = truth != 0.5
    n = int(decided.sum())
    if n == 0:
        nan = float("nan")
        return {"pairs": 0, "coverage": nan, "accuracy": nan, "answered_accuracy": nan,
                "top_half_accuracy": nan, "ece": nan}
    zd, yd = z[decided], truth[decided]
    answered = np.isfinite(zd)
    correct = np.full(n, 0.5)
    correct[answered] = np.where(
        zd[answered] == 0.5, 0.5, ((zd[answered] > 0.5) == (yd[answered] > 0.5)).astype(float)
    )
    confidence = np.where(answered, np.abs(np.nan_to_num(zd, nan=0.5) - 0.5), -1.0)
    top = np.argsort(-confidence, kind="stable")[: max(1, n // 2)]
    return {
        "pairs": n,
        "coverage": float(answered.mean()),
        "accuracy": float(correct.mean()),
        "answered_accuracy": float(correct[answered].mean()) if answered.any() else float("nan"),
        "top_half_accuracy": float(correct[top].mean()),
        "ece": expected_calibration_error(z, truth),
    }


def random_plan(n_source: int, n_target: int, rng: np.random.Generator,
                sinkhorn_iter: int = 200) -> DensePlan:
    """A coupling with uniform marginals and random, peaked entries: the baseline of a plan
    that carries no information about either task."""
    t = rng.random((n_source, n_target)) ** 8 + 1e-12
    a, b = np.full(n_source, 1 / n_source), np.full(n_target, 1 / n_target)
    for _ in range(sinkhorn_iter):
        t *= (a / t.sum(1))[:, None]
        t *= (b / t.sum(0))[None, :]
    return DensePlan(t, {"solver": "random"})


def few_shot_orientation(source, z: np.ndarray, pairs: list[tuple[Segment, Segment]],
                         episodes, count: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                  dict]:
    """Few-shot orientation: ``z (B,)``, the labels ``source`` (a ``TransferSource``) moved
    along its latest plan to ``pairs``, or their mirror ``1 - z``, whichever agrees with more
    of ``count`` oracle labels on other decided pairs of the same target nodes (asked once,
    so a tie says nothing). Returns the chosen labels and ``{"flip", "agreement",
    "labels"}``."""
    pool = as_pool(episodes)
    order = {s: k for k, s in enumerate(source.last["target_segments"])}
    nodes = list(dict.fromkeys(s for pair in pairs for s in pair))
    scored, asked = set(pairs), []
    for _ in range(100 * count):  # bounded: a target set of ties only ends the search
        if len(asked) == count:
            break
        i, j = rng.choice(len(nodes), 2, replace=False)
        pair = (nodes[i], nodes[j])
        if pair not in scored and oracle_truth([pair], pool)[0] != 0.5:
            asked.append(pair)
    if not asked:
        return z, {"flip": False, "agreement": float("nan"), "labels": 0}
    z_asked = transfer_labels(source.last["plan"], source.bank.labels,
                              np.array([order[a] for a, _ in asked]),
                              np.array([order[b] for _, b in asked]))
    choice = orient_by_labels(z_asked, oracle_truth(asked, pool))
    return (1.0 - z if choice["flip"] else z), {**choice, "labels": len(asked)}


def reward_model_labels(model, pairs: list[tuple[Segment, Segment]], episodes) -> np.ndarray:
    """A reward model's (ensemble-mean) preference probabilities ``(B,)`` for ``pairs``."""
    return np.asarray(model.preference_probabilities(pairs, as_pool(episodes)).mean(0))


def soft_preferences(pairs, z: np.ndarray, source: str) -> list[Preference]:
    """Preferences with soft targets ``z`` for the answered pairs (finite z)."""
    return [
        Preference(a, b, float(v), source=source, annotator=source)
        for (a, b), v in zip(pairs, z, strict=True)
        if np.isfinite(v)
    ]


def flipped(truth: np.ndarray, prob: float, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Decided labels with each flipped with probability ``prob``: (labels, flipped mask)."""
    mask = (rng.random(len(truth)) < prob) & (truth != 0.5)
    return np.where(mask, 1.0 - truth, truth), mask


def reward_rows(
    make_reward: Callable[[str, int], object],
    train_pairs: list[tuple[Segment, Segment]],
    transferred: np.ndarray,
    heldout_pairs: list[tuple[Segment, Segment]],
    episodes,
    oracle_fraction: float,
    flip_prob: float,
    seeds: list[int],
    default_reward: str = "bt_ensemble",
) -> dict:
    """Held-out preference accuracy of rewards trained on target labels.

    ``make_reward(name, seed)`` builds an untrained reward model (``bt_ensemble`` or
    ``gaussian``). Rows, each averaged over ``seeds`` (which also draw the oracle subset and
    the flips): ``oracle_subset`` (the first ``oracle_fraction`` of ``train_pairs`` with
    oracle labels), ``oracle_subset_plus_transfer`` (those plus transferred labels on the
    rest), ``transfer_only``, ``oracle_all``; then ``bt_flipped`` and ``gaussian_flipped``:
    every train pair with its oracle label flipped with ``flip_prob``, with the per-seed
    paired differences ``gaussian - bt``.
    """
    pool = as_pool(episodes)
    truth = oracle_truth(train_pairs, pool)
    decided = np.flatnonzero(truth != 0.5)
    rows: dict[str, list[float]] = {k: [] for k in (
        "oracle_subset", "oracle_subset_plus_transfer", "transfer_only", "oracle_all",
        "bt_flipped", "gaussian_flipped")}

    def score(name: str, seed: int, prefs: list[Preference]) -> float:
        model = make_reward(name, seed)
        model.fit(prefs, pool)
        return preference_accuracy(model, heldout_pairs, pool)

    for seed in seeds:
        rng = np.random.default_rng(seed)
        subset = rng.choice(decided, max(1, int(round(oracle_fraction * len(decided)))),
                            replace=False)
        rest = np.setdiff1d(np.arange(len(train_pairs)), subset)
        oracle = soft_preferences([train_pairs[i] for i in subset], truth[subset], "oracle")
        moved = soft_preferences([train_pairs[i] for i in rest], transferred[rest], "transfer")
        everything = soft_preferences([train_pairs[i] for i in decided], truth[decided],
                                      "oracle")
        rows["oracle_subset"].append(score(default_reward, seed, oracle))
        rows["oracle_subset_plus_transfer"].append(score(default_reward, seed, oracle + moved))
        rows["transfer_only"].append(score(default_reward, seed, moved))
        rows["oracle_all"].append(score(default_reward, seed, everything))
        noisy, _ = flipped(truth[decided], flip_prob, rng)
        noisy_prefs = soft_preferences([train_pairs[i] for i in decided], noisy, "flipped")
        rows["bt_flipped"].append(score("bt_ensemble", seed, noisy_prefs))
        rows["gaussian_flipped"].append(score("gaussian", seed, noisy_prefs))
    out = {k: float(np.mean(v)) for k, v in rows.items()}
    out["per_seed"] = rows
    out["gaussian_minus_bt"] = [g - b for g, b in zip(rows["gaussian_flipped"],
                                                       rows["bt_flipped"], strict=True)]
    out["seeds"] = list(seeds)
    return out
