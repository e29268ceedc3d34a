"""``robopref label simulate|export|import``: simulated annotators and Parquet copies.

    robopref label simulate --token T [--token T2 ...] [--url http://127.0.0.1:8765]
                            [--teacher oracle|stochastic|myopic|skip|equal|mistake]
                            [--datasets DIR ...] [--reward-scale X] [--score-range LO HI]
                            [--project NAME] [--max-queries N] [--think-time S] [--seed N]
                            [--retries N]
    robopref label export --parquet FILE [--project NAME] [--db URL]
    robopref label import FILE [--project NAME] [--db URL]

Registered into ``robopref.label.cli``'s parser by :func:`add_commands`; heavy modules
(the teacher, pyarrow) are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from collections.abc import Callable

COMMANDS = ("simulate", "export", "import")
DEFAULT_URL = "http://127.0.0.1:8765"
PRESETS = ("oracle", "stochastic", "myopic", "skip", "equal", "mistake")


def add_commands(commands, with_db: Callable[[argparse.ArgumentParser],
                                             argparse.ArgumentParser]) -> None:
    """Add the subcommands to ``robopref label``'s subparsers."""
    sim = commands.add_parser("simulate", help="answer the queue with simulated annotators "
                                               "(the scripted teacher over HTTP)")
    sim.add_argument("--url", default=DEFAULT_URL, help=f"server address (default {DEFAULT_URL})")
    sim.add_argument("--token", action="append", required=True,
                     help="an annotator's token; repeat to run several annotators at once")
    sim.add_argument("--teacher", choices=PRESETS, default="oracle",
                     help="B-Pref behaviour (default oracle)")
    sim.add_argument("--datasets", nargs="+", default=[], metavar="DIR",
                     help="folders to search for the datasets the queries name")
    sim.add_argument("--reward-scale", type=float, default=None,
                     help="the task's per-step reward unit (Meta-World: 10); default 1")
    sim.add_argument("--score-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                     help="per-step reward (reward-scale units) mapped to scores 0..9 "
                          "(default 0 1)")
    sim.add_argument("--project", default=None, help="answer this project's queries only")
    sim.add_argument("--max-queries", type=int, default=None, help="per annotator")
    sim.add_argument("--think-time", type=float, default=0.0, help="mean seconds per answer")
    sim.add_argument("--seed", type=int, default=0, help="annotator i is seeded seed + i")
    sim.add_argument("--retries", type=int, default=8,
                     help="attempts after a failed request, with backoff (default 8)")

    export = with_db(commands.add_parser("export", help="write every label to a Parquet file"))
    export.add_argument("--parquet", required=True, metavar="FILE", help="the file to write")
    export.add_argument("--project", default=None, help="one project only")

    imp = with_db(commands.add_parser("import", help="add the labels of a Parquet export"))
    imp.add_argument("file", help="a file 'robopref label export --parquet' wrote")
    imp.add_argument("--project", default=None, help="one project of the file only")


def _simulate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from robopref.label.annotators import SimulatedAnnotatorConfig, run_annotators
    from robopref.label.datasets import DatasetResolver

    configs = [
        (token, SimulatedAnnotatorConfig(
            name=f"sim{i}", teacher=args.teacher, think_time_s=args.think_time,
            score_range=None if args.score_range is None else tuple(args.score_range),
            reward_scale=args.reward_scale, project=args.project,
            max_queries=args.max_queries, seed=args.seed + i, retries=args.retries))
        for i, token in enumerate(args.token)
    ]
    resolver = DatasetResolver(args.datasets)
    lock = threading.Lock()
    with tqdm(desc="answers", unit="label", file=sys.stderr) as bar:
        def tick(_name, _answer) -> None:
            with lock:
                bar.update(1)

        results = run_annotators(args.url, configs, resolver, on_answer=tick)
    for name, answers in results.items():
        counts = Counter(a.choice if a.score is None else "scored" for a in answers)
        shown = ", ".join(f"{n} {c.replace('_', ' ')}" for c, n in sorted(counts.items()))
        print(f"{name}: {len(answers)} answers{': ' + shown if shown else ''}")


def run(args: argparse.Namespace) -> bool:
    """Run the command if it is one of :data:`COMMANDS`; ``False`` when it is not."""
    if args.command not in COMMANDS:
        return False
    if args.command == "simulate":
        _simulate(args)
        return True
    from tqdm import tqdm

    from robopref.label.database import open_database
    from robopref.label.parquet import export_parquet, import_parquet

    database = open_database(args.db)
    try:
        if args.command == "export":
            n = export_parquet(database, args.parquet, project=args.project)
            print(f"wrote {n} labels to {args.parquet}", file=sys.stderr)
        else:
            summary = import_parquet(
                database, args.file, project=args.project,
                progress=lambda rows: tqdm(rows, desc="import", unit="label", file=sys.stderr))
            print(f"imported {summary.labels} labels ({summary.labels_present} already "
                  f"present), {summary.queries} queries, {summary.segments} segments, "
                  f"{summary.annotators} annotators, {summary.projects} projects",
                  file=sys.stderr)
    finally:
        database.close()
    return True
