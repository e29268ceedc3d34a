"""Transferred-label accuracy and solve time of each GW solver against the number of nodes,
on the pools of a finished ``robopref transfer`` run (no simulation needed).

For each n: n source segments with 3 n oracle-labelled pairs among them, n target segments,
1,000 target pairs among those scored against the target's oracle (ties left out, an
unanswered pair a coin flip). Solvers that build n x n matrices run up to ``--max-dense``;
the scaling path (``anchors``) to the largest n. Time includes features, costs, clustering,
the plan and the transfer; peak memory is the process's resident peak after the row.

    .venv/bin/python benchmarks/transfer_scaling_accuracy.py runs/transfer_labels/<run> \\
        [--sizes 1000 10000] [--solvers exact entropic anchors]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a robopref transfer run folder (its pools are reused)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--solvers", nargs="+", default=["exact", "entropic", "anchors"])
    parser.add_argument("--max-dense", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from robopref.data import load_episodes
    from robopref.preferences import ScriptedTeacher, TeacherConfig
    from robopref.preferences.segments import sample_segments
    from robopref.preferences.transfer import SourceBank, TransferConfig, TransferSource
    from robopref.preferences.transfer.evaluation import label_scores, oracle_truth

    run = Path(args.run)
    source_pool = {e.id: e for e in load_episodes(run / "source" / "datasets" / "pool")}
    target_pool = {e.id: e for e in load_episodes(run / "datasets" / "target_pool")}
    length = 50
    print(f"pools: {run}  (one thread)")
    print("n: distinct source/target segments (a pool holds ~8,000 50-step windows)")
    print(f"{'solver':9s} {'n':>13s} {'seconds':>8s} {'peak MiB':>9s} {'accuracy':>9s} "
          f"{'top half':>9s}")
    for n in args.sizes:
        rng = np.random.default_rng([args.seed, n])
        nodes = sample_segments(source_pool, length, n, rng)
        a, b = rng.integers(0, n, 3 * n), rng.integers(0, n, 3 * n)
        teacher = ScriptedTeacher(TeacherConfig())  # the oracle: its scale never enters
        source_pairs = [(nodes[i], nodes[j]) for i, j in zip(a, b, strict=True) if i != j]
        labelled = [p for p in teacher.label(source_pairs, source_pool) if p is not None]
        targets = sample_segments(target_pool, length, n, rng)
        first = rng.integers(0, n, args.pairs)
        second = (first + rng.integers(1, n, args.pairs)) % n
        pairs = [(targets[i], targets[j]) for i, j in zip(first, second, strict=True)]
        truth = oracle_truth(pairs, target_pool)
        for solver in args.solvers:
            if solver in ("exact", "entropic", "fused", "entropic_fused") and n > args.max_dense:
                continue
            bank = SourceBank(labelled, source_pool, max_nodes=n, seed=args.seed)
            config = TransferConfig(target_nodes=n, source_nodes=n, seed=args.seed,
                                    gw={"solver": solver})
            source = TransferSource(config, bank=bank)
            started = time.perf_counter()
            try:
                z = source.soft_labels(pairs, target_pool)
            except Exception as error:  # a solver that fails is a row, not the end
                print(f"{solver:9s} {n:6d} failed: {str(error).splitlines()[0][:90]}")
                continue
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            s = label_scores(z, truth)
            unique = f"{bank.labels.n}/{len(source.last['target_segments'])}"
            print(f"{solver:9s} {unique:>13s} {seconds:8.1f} {peak:9.0f} {s['accuracy']:9.3f} "
                  f"{s['top_half_accuracy']:9.3f}  (coverage {s['coverage']:.2f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
