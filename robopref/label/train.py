"""Train a reward model from a label database alone, in any process.

The database holds what is needed: the answers (aggregated into one weighted preference per
pair by :func:`robopref.label.export.export_preferences`) and, per segment, the stable id of
its episode with a hint where its dataset lived. :class:`DatasetResolver` loads those
datasets (from the hints, else from search roots), the labelled pairs are split into a train
and a held-out part (by a hash of each pair, so a pair keeps its side as labels grow), and
the model is fitted on the train part and scored on both:

- ``*_accuracy``: agreement with the people's label on pairs whose target is not 0.5;
- ``*_true_accuracy``: agreement with the ground-truth return order (simulation only:
  ``None`` when an episode has no true reward), ties left out.

Writes into ``out_dir``: ``reward/`` (the checkpoint), ``metrics.json``,
``preferences_train.json`` and ``preferences_heldout.json`` (the split, so others can score
on the same held-out pairs), each atomically.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from robopref.data import Preference, save_preferences
from robopref.data.atomic import write_json_atomic
from robopref.errors import DatasetError

CHECKPOINT = "reward"


def split_preferences(preferences: list[Preference], heldout_fraction: float,
                      seed: int = 0) -> tuple[list[Preference], list[Preference]]:
    """``(train, heldout)``: a pair is held out when a hash of ``(seed, its segments)``
    falls below ``heldout_fraction``, whatever else is labelled."""
    train, heldout = [], []
    for p in preferences:
        text = f"{seed}|{p.first.to_json()}|{p.second.to_json()}"
        (heldout if zlib.crc32(text.encode()) / 2**32 < heldout_fraction else train).append(p)
    return train, heldout


def label_accuracy(model, preferences: list[Preference], pool) -> float | None:
    """Fraction of pairs with a decided target (not 0.5) whose predicted preference (the
    ensemble mean ``P(first)`` above or below 0.5) agrees with it; ``None`` without such."""
    decided = [p for p in preferences if p.target != 0.5]
    if not decided:
        return None
    prob = model.preference_probabilities([(p.first, p.second) for p in decided], pool).mean(0)
    target = np.array([p.target for p in decided])
    return float(np.mean((prob > 0.5) == (target > 0.5)))


def true_accuracy(model, preferences: list[Preference], pool) -> float | None:
    """Agreement with the true-return order (``preference_accuracy``); ``None`` when some
    episode has no ground-truth reward or no pair is left."""
    from robopref.rewards import preference_accuracy

    pairs = [(p.first, p.second) for p in preferences]
    if not pairs or not all(np.isfinite(s.rewards(pool)).all() for pair in pairs for s in pair):
        return None
    value = preference_accuracy(model, pairs, pool)
    return None if np.isnan(value) else value


def dataset_hints(database, dataset_ids: Iterable[str]) -> dict[str, str | None]:
    """A stored folder hint for each dataset id (``None`` where none was stored)."""
    from robopref.label.schema import SegmentRow

    wanted = set(dataset_ids)
    hints: dict[str, str | None] = dict.fromkeys(wanted)
    stmt = select(SegmentRow.episode_id, SegmentRow.dataset_path).where(
        SegmentRow.dataset_path.is_not(None)).distinct()
    with database.transaction() as session:
        for episode_id, path in session.execute(stmt):
            dataset_id = episode_id.rpartition(":")[0]
            if dataset_id in wanted and hints[dataset_id] is None:
                hints[dataset_id] = path
    return hints


def _agreement_json(stats) -> dict:
    return {name: {"compared": a.compared, "agreed": a.agreed, "rate": a.rate}
            for name, a in stats.items()}


def train_from_labels(database: str, make_model: Callable[[int, int], object],
                      out_dir: str | Path, project: str | None = None,
                      aggregation: str = "majority", min_answers: int = 1,
                      roots: Iterable[str | Path] = (), heldout_fraction: float = 0.2,
                      seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Fit ``make_model(obs_dim, act_dim)`` (a :class:`robopref.rewards.RewardModel`) on
    the preferences in ``database`` (a path or URL), all projects or ``project``; write the
    checkpoint and metrics into ``out_dir`` and return the metrics."""
    from robopref.label.database import open_database
    from robopref.label.datasets import DatasetResolver
    from robopref.label.export import agreement, export_episode_scores, export_preferences
    from robopref.label.export import progress as label_progress

    started = time.perf_counter()
    out = Path(out_dir)
    db = open_database(database)
    try:
        preferences = export_preferences(db, project, aggregation, min_answers)
        counts = label_progress(db, project).to_json()
        agree = _agreement_json(agreement(db, project))
        scores = len(export_episode_scores(db, project))
        where = f"project '{project}' of " if project else ""
        if not preferences:
            raise DatasetError(f"{where}{db.url} holds no answered pair query: label some "
                               "first (robopref label enqueue, then serve)")
        needed = {s.episode_id.rpartition(":")[0] for p in preferences
                  for s in (p.first, p.second)}
        hints = dataset_hints(db, needed)
        url = db.url
    finally:
        db.close()
    log(f"{len(preferences)} labelled pairs from {where}{url}; loading {len(needed)} datasets")
    resolver = DatasetResolver(roots)
    pool = resolver.pool(hints)
    train, heldout = split_preferences(preferences, heldout_fraction, seed)
    if not train:
        raise DatasetError(f"all {len(preferences)} labelled pairs fell into the held-out "
                           "split: label more pairs or lower heldout_fraction")
    first = next(iter(pool.values()))
    import torch

    # The model's initial weights come from torch's global generator: seeding it here makes
    # a training reproducible whatever ran before it in the process.
    torch.manual_seed(seed)
    model = make_model(first.obs_dim, first.act_dim)
    log(f"training {type(model).__name__} on {len(train)} pairs ({len(heldout)} held out)")
    fit = model.fit(train, pool)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / CHECKPOINT)
    save_preferences(train, out / "preferences_train.json")
    save_preferences(heldout, out / "preferences_heldout.json")
    metrics = {
        "database": url,
        "project": project,
        "aggregation": aggregation,
        "min_answers": min_answers,
        "checkpoint": CHECKPOINT,
        "labels": counts,
        "episode_scores": scores,
        "agreement": agree,
        "pairs": {"labelled": len(preferences), "train": len(train), "heldout": len(heldout),
                  "heldout_fraction": heldout_fraction, "seed": seed},
        "train_accuracy": label_accuracy(model, train, pool),
        "heldout_accuracy": label_accuracy(model, heldout, pool) if heldout else None,
        "train_true_accuracy": true_accuracy(model, train, pool),
        "heldout_true_accuracy": true_accuracy(model, heldout, pool) if heldout else None,
        "fit": {k: float(v) for k, v in (fit or {}).items()},
        "wall_time_s": time.perf_counter() - started,
    }
    write_json_atomic(out / "metrics.json", _finite(metrics), allow_nan=False)
    return metrics


def _finite(value):
    """NaN and inf become ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
