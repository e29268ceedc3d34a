"""Gromov-Wasserstein solve time and peak memory against the number of segments per task.

Each (solver, backend, n) runs in a fresh subprocess on one thread, so its peak resident
memory (``ru_maxrss``) is its own; the time includes the distance matrices, as the transfer
source pays them. Data: ``n`` 16-d pooled features per task, the target a noisy linear image
of the source. Prints seconds, peak MiB and the fitted exponent of time ~ n^k per solver;
no thresholds are asserted. A ``torch`` row on ``--device cuda`` runs on a GPU when present.

    .venv/bin/python benchmarks/gw_scaling.py [--sizes 100 1000 10000] [--solvers anchors]
        [--sinkhorn-iter 200]

``exact`` and ``entropic`` stop at ``--max-dense`` (2,000: their n x n matrices); the
scaling path ``anchors`` (k-means cells + entropic GW between cells) runs to 10,000. Label
accuracy of each solver on real pools: ``benchmarks/transfer_scaling_accuracy.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ONE = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
warnings.filterwarnings("ignore")
torch.set_num_threads(1)
from robopref.preferences.transfer import GWConfig, solve_plan
from robopref.preferences.transfer.representations import euclidean_costs, normalised
solver, backend, device, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sinkhorn_iter = int(sys.argv[5])
rng = np.random.default_rng(0)
xs = rng.normal(size=(n, 16)).astype(np.float32)
xt = (xs @ rng.normal(size=(16, 16)) + 0.1 * rng.normal(size=(n, 16))).astype(np.float32)
config = GWConfig(solver=solver, backend=backend, device=device, sinkhorn_iter=sinkhorn_iter)
solve_plan(normalised(euclidean_costs(xs[:50]), "s"), normalised(euclidean_costs(xt[:50]), "t"),
           config, source_features=xs[:50], target_features=xt[:50])  # imports, warm-up
started = time.perf_counter()
if solver in ("lowrank", "anchors"):  # feature solvers: no n x n costs
    cs = ct = None
else:
    cs, ct = normalised(euclidean_costs(xs), "s"), normalised(euclidean_costs(xt), "t")
plan = solve_plan(cs, ct, config, source_features=xs, target_features=xt)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak,
                  "marginal_error": plan.info.get("marginal_error")}))
"""


def run_one(solver: str, backend: str, device: str, n: int, timeout: float,
            sinkhorn_iter: int) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", ONE, solver, backend, device, str(n), str(sinkhorn_iter)],
            capture_output=True, text=True, timeout=timeout, env=env, check=True,
        )
    except subprocess.TimeoutExpired:
        return {"seconds": float("inf"), "peak_mib": float("nan"), "note": f">{timeout:.0f}s"}
    except subprocess.CalledProcessError as error:
        return {"seconds": float("nan"), "peak_mib": float("nan"),
                "note": error.stderr.strip().splitlines()[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[100, 250, 500, 1000, 2000, 10000])
    parser.add_argument("--solvers", nargs="+", default=["entropic", "exact", "anchors"])
    parser.add_argument("--max-dense", type=int, default=2000,
                        help="largest n for the solvers that build n x n matrices")
    parser.add_argument("--backends", nargs="+", default=["numpy", "torch"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--sinkhorn-iter", type=int, default=50,
                        help="Sinkhorn iterations per entropic step (GWConfig's default 50; "
                             "robopref transfer's configs/transfer.yaml uses 200)")
    args = parser.parse_args()

    print(f"Sinkhorn iterations per entropic step: {args.sinkhorn_iter}")
    print(f"{'solver':10s} {'backend':7s} {'n':>6s} {'seconds':>9s} {'peak MiB':>9s}")
    for solver in args.solvers:
        for backend in args.backends:
            sizes, times = [], []
            for n in args.sizes:
                if solver not in ("lowrank", "anchors") and n > args.max_dense:
                    continue
                result = run_one(solver, backend, args.device, n, args.timeout, args.sinkhorn_iter)
                note = result.get("note", "")
                print(f"{solver:10s} {backend:7s} {n:6d} {result['seconds']:9.2f} "
                      f"{result['peak_mib']:9.0f} {note}", flush=True)
                if np.isfinite(result["seconds"]):
                    sizes.append(n)
                    times.append(result["seconds"])
            if len(sizes) >= 2:
                k = np.polyfit(np.log(sizes), np.log(times), 1)[0]
                print(f"{solver:10s} {backend:7s} fitted exponent: time ~ n^{k:.2f}")


if __name__ == "__main__":
    main()
