"""``robopref label enqueue``: put segment pairs (and whole-episode score requests) of a run or
a dataset into the label database, for people to answer on the labelling page.

    robopref label enqueue RUN_OR_DATASET [--pairs 100] [--segment-length 50] [--answers 1]
        [--project NAME] [--query uniform|disagreement|entropy] [--seed 0]
        [--candidates 10] [--reward CHECKPOINT] [--episode-scores 0] [--db URL]

Pairs come from a query selector, as in the loop: ``pairs x candidates`` candidate pairs
drawn uniformly (seeded), of which ``uniform`` keeps a random ``pairs``, ``disagreement`` and
``entropy`` the ones a reward ensemble is least sure about (for a run folder, its latest
``checkpoints/reward_round<k>`` unless ``--reward`` names one). Each query's key is derived
from its segments (a hash), so running the same command again enqueues nothing new, and a
pair drawn by two commands is asked once.

Heavy modules (torch, lerobot) are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robopref.errors import ConfigError

QUERY_CHOICES = ("uniform", "disagreement", "entropy")
REWARD_ROUND = re.compile(r"^reward_round(\d+)$")


@dataclass(frozen=True)
class EnqueueResult:
    """What one ``enqueue`` call asked: ``pairs`` / ``scores`` keys, of them ``new_*`` newly
    added (the rest were in the project already)."""

    project: str
    pairs: list[str]
    new_pairs: int
    scores: list[str]
    new_scores: int
    reward: str | None


def pair_key(first, second) -> str:
    """A stable query key for the pair ``(first, second)`` of segments (order matters)."""
    text = f"{first.episode_id}[{first.start}:{first.end}]|{second.episode_id}" \
           f"[{second.start}:{second.end}]"
    return "pair-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def score_key(episode_id: str) -> str:
    return f"score-{episode_id}"


def latest_reward(run: Path) -> Path | None:
    """The run's newest ``checkpoints/reward_round<k>`` folder, or ``None``."""
    found = [(int(m.group(1)), p) for p in (run / "checkpoints").glob("reward_round*")
             if (m := REWARD_ROUND.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def load_reward(path: Path):
    """The reward model saved at ``path`` (its kind read from the checkpoint), on the CPU."""
    from robopref.rewards import REWARD_MODELS
    from robopref.training import Trainer, TrainerConfig, read_model_config

    kind = read_model_config(path).get("kind")
    trainer = Trainer(TrainerConfig(device="cpu", progress=False), name="reward")
    return REWARD_MODELS.implementation(kind).load(path, trainer)


def load_source(folder: Path) -> tuple[dict, dict[str, str]]:
    """``(episodes by id, {dataset id: absolute folder})`` of a run folder (it has
    ``datasets.json``) or of one dataset folder."""
    from robopref.data import dataset_id_of, load_episodes
    from robopref.loop.store import RunStore, load_run_episodes

    folder = folder.expanduser().resolve()
    if (folder / "datasets.json").is_file():
        store = RunStore(folder)
        paths = {i: str(store.path(p).resolve()) for i, p in store.datasets().items()}
        return dict(load_run_episodes(folder)), paths
    episodes = {e.id: e for e in load_episodes(folder)}
    return episodes, {dataset_id_of(folder): str(folder)}


def _existing(database, project: str, keys: list[str]) -> set[str]:
    from sqlalchemy import select

    from robopref.label.schema import Project, QueryRow

    found: set[str] = set()
    with database.transaction() as session:
        for start in range(0, len(keys), 500):
            stmt = (select(QueryRow.key).join(Project, Project.id == QueryRow.project_id)
                    .where(Project.name == project, QueryRow.key.in_(keys[start:start + 500])))
            found.update(session.scalars(stmt))
    return found


def enqueue(database: str, source: str | Path, pairs: int = 100, segment_length: int = 50,
            answers: int = 1, project: str | None = None, query: str = "uniform",
            seed: int = 0, candidates: int = 10, reward: str | Path | None = None,
            episode_scores: int = 0, log: Callable[[str], None] = print) -> EnqueueResult:
    """Enqueue ``pairs`` pair queries of ``segment_length`` steps and ``episode_scores``
    whole-episode score requests from the run or dataset folder ``source`` into project
    ``project`` (default: the folder's name), each wanting ``answers`` answers."""
    import numpy as np

    from robopref.label.database import open_database
    from robopref.label.store import LabelStore
    from robopref.preferences import QUERY_SELECTORS, Query, sample_pairs

    if query not in QUERY_CHOICES:
        raise ConfigError(f"--query '{query}' is unknown: use one of {', '.join(QUERY_CHOICES)}")
    if pairs < 0 or episode_scores < 0 or segment_length < 1 or candidates < 1 or answers < 1:
        raise ConfigError("--pairs and --episode-scores must be >= 0, --segment-length, "
                          "--candidates and --answers >= 1")
    folder = Path(source).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: give a run folder or a dataset folder")
    project = project or folder.name
    model_path = Path(reward) if reward else None
    if query != "uniform" and model_path is None:
        model_path = latest_reward(folder)
        if model_path is None:
            raise ConfigError(f"--query {query} ranks pairs by a reward ensemble and {folder} "
                              "has no checkpoints/reward_round<k>: pass --reward CHECKPOINT "
                              "or use --query uniform")
    log(f"loading episodes from {folder}")
    episodes, paths = load_source(folder)
    model = load_reward(model_path) if model_path is not None else None
    rng = np.random.default_rng(seed)
    chosen: list[Query] = []
    if pairs:
        pool = sample_pairs(episodes, segment_length, pairs * candidates, rng)
        selector_cfg, selector_cls = QUERY_SELECTORS.lookup(query)
        picks = selector_cls(selector_cfg()).select(pool, episodes, model, pairs, rng)
        keys = set()
        for i in picks:
            key = pair_key(*pool[i])
            if key not in keys:  # the same pair drawn twice is asked once
                keys.add(key)
                chosen.append(Query(key, *pool[i]))
    scored = []
    if episode_scores:
        ids = sorted(episodes)
        picks = rng.choice(len(ids), size=min(episode_scores, len(ids)), replace=False)
        scored = [(score_key(ids[i]), ids[i]) for i in sorted(picks.tolist())]
    db = open_database(database)
    try:
        before = _existing(db, project, [q.id for q in chosen] + [k for k, _ in scored])
        store = LabelStore(db)
        log(f"enqueueing {len(chosen)} pairs and {len(scored)} score requests into project "
            f"'{project}' of {db.url}")
        store.enqueue_pairs(chosen, project, answers, paths)
        from robopref.data import Segment

        store.enqueue_episode_scores(
            [(key, Segment(eid, 0, len(episodes[eid]))) for key, eid in scored], project,
            answers, paths)
    finally:
        db.close()
    return EnqueueResult(
        project, [q.id for q in chosen], sum(q.id not in before for q in chosen),
        [k for k, _ in scored], sum(k not in before for k, _ in scored),
        None if model_path is None else str(model_path),
    )


# -- the command ---------------------------------------------------------------------------
def add_command(commands, with_db: Callable[[argparse.ArgumentParser],
                                            argparse.ArgumentParser]) -> None:
    """Add ``enqueue`` to ``robopref label``'s subparsers."""
    p = with_db(commands.add_parser(
        "enqueue", help="ask people about segment pairs of a run or dataset folder"))
    p.add_argument("source", help="a run folder (its datasets) or one dataset folder")
    p.add_argument("--pairs", type=int, default=100, help="pair queries to add (default 100)")
    p.add_argument("--segment-length", type=int, default=50, help="steps per segment")
    p.add_argument("--answers", type=int, default=1, help="answers wanted per query (k)")
    p.add_argument("--project", default=None, help="project name (default: the folder's)")
    p.add_argument("--query", choices=QUERY_CHOICES, default="uniform",
                   help="query selector (disagreement/entropy need a reward ensemble)")
    p.add_argument("--seed", type=int, default=0, help="seeds the candidate draw")
    p.add_argument("--candidates", type=int, default=10,
                   help="candidate pairs drawn per pair asked (default 10)")
    p.add_argument("--reward", default=None, metavar="CHECKPOINT",
                   help="reward checkpoint for disagreement/entropy (default: the run's latest)")
    p.add_argument("--episode-scores", type=int, default=0, metavar="N",
                   help="also ask for 0-9 scores of N whole episodes")


def run(args: argparse.Namespace) -> bool:
    """Run ``enqueue`` if that is the command; ``False`` for any other command."""
    if args.command != "enqueue":
        return False
    import sys

    result = enqueue(args.db, args.source, args.pairs, args.segment_length, args.answers,
                     args.project, args.query, args.seed, args.candidates, args.reward,
                     args.episode_scores, log=lambda m: print(m, file=sys.stderr))
    print(f"project '{result.project}': {result.new_pairs} new pair queries "
          f"({len(result.pairs) - result.new_pairs} already there), {result.new_scores} new "
          f"score requests ({len(result.scores) - result.new_scores} already there)")
    return True
