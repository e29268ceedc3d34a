"""Gromov-Wasserstein plans between a source and a target set of segments, solved with POT.

Solvers (``GWConfig.solver``):

- ``exact``: conditional gradient (``ot.gromov.gromov_wasserstein``), a sparse plan;
- ``entropic``: projected gradient with Sinkhorn projections
  (``ot.gromov.entropic_gromov_wasserstein``, warm-started duals), a diffuse plan;
- ``fused``: fused GW (``ot.gromov.fused_gromov_wasserstein``) with a cross-task feature
  cost, for tasks whose representations live in one space; ``entropic_fused`` its entropic
  form (``ot.gromov.entropic_fused_gromov_wasserstein``), a diffuse plan like ``entropic``;
- ``lowrank``: low-rank GW on the features (``ot.gromov.lowrank_gromov_wasserstein_samples``):
  the plan is ``Q diag(1/g) R^T`` and is never formed as an ``n x n`` matrix;
- ``anchors``: the scaling path (quantised GW). Each set's features are clustered into
  ``anchors`` k-means cells, entropic GW couples the cells (weighted by their sizes), and the
  plan spreads each cell pair's mass evenly over its members:
  ``T[k, i] = P[c(k), c(i)] / (|c(k)| |c(i)|)``. Labels then move cell to cell
  (``transfer_labels`` sees an ``AnchorPlan``): ``O(n)`` memory and time past the clustering,
  never an ``n x n`` matrix of costs, plan entries or pairs.

``backend="torch"`` hands POT torch tensors (on ``device``), so the same code runs on a GPU.
A plan that did not converge (NaN entries, or marginals off by more than ``marginal_tol``)
raises ``PlanNotConverged`` and is never used.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from robopref.errors import ConfigError
from robopref.preferences.transfer.representations import TransferError

SOLVERS = ("exact", "entropic", "fused", "entropic_fused", "lowrank", "anchors")
# Solvers with a cross-task term: they need features of one size on both sides.
FUSED_SOLVERS = ("fused", "entropic_fused")
# Solvers that work on segment features instead of n x n cost matrices.
FEATURE_SOLVERS = ("lowrank", "anchors")


class PlanNotConverged(TransferError):
    """The solver returned a plan that is not a coupling of the two sets."""


@dataclass
class GWConfig:
    """Gromov-Wasserstein solver settings.

    Attributes:
        solver: exact | entropic | fused | entropic_fused | lowrank | anchors.
        epsilon: entropic regularisation (costs are normalised to a maximum of 1).
        alpha: fused GW's weight on the structure term (1 = plain GW, 0 = plain OT).
        rank: rank of the low-rank plan.
        max_iter: outer iterations of the solver.
        sinkhorn_iter: Sinkhorn iterations per entropic step (warm-started, so few suffice).
        tol: the solver's relative stopping tolerance.
        marginal_tol: largest L1 error of a plan's marginals accepted as converged.
        backend: numpy | torch.
        device: torch device for ``backend=torch`` (cpu, cuda, auto).
        anchors: k-means cells per set for ``anchors`` (sets this small are not clustered).
        kmeans_iter: Lloyd iterations of that clustering.
        seed: seeds the low-rank initialisation and the clustering.
    """

    solver: str = "entropic"
    epsilon: float = 0.01
    alpha: float = 0.5
    rank: int = 50
    max_iter: int = 100
    sinkhorn_iter: int = 50
    tol: float = 1e-5
    marginal_tol: float = 1e-2
    backend: str = "numpy"
    device: str = "cpu"
    anchors: int = 500
    kmeans_iter: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ConfigError(f"unknown GW solver '{self.solver}': use one of {list(SOLVERS)}")
        if self.backend not in ("numpy", "torch"):
            raise ConfigError(f"GW backend must be numpy or torch, got '{self.backend}'")
        if not self.epsilon > 0:
            raise ConfigError(f"GW epsilon must be > 0, got {self.epsilon}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"fused GW alpha must lie in [0, 1], got {self.alpha}")
        if self.rank < 1 or self.max_iter < 1:
            raise ConfigError("GW rank and max_iter must be >= 1")
        if self.anchors < 2 or self.kmeans_iter < 1:
            raise ConfigError("GW anchors must be >= 2 and kmeans_iter >= 1")


class Plan:
    """A coupling ``T (n_source, n_target)`` between source and target segments."""

    shape: tuple[int, int]
    info: dict

    def columns(self, index: np.ndarray) -> np.ndarray:
        """``T[:, index]`` as ``(n_source, len(index))`` float64."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        return self.columns(np.arange(self.shape[1]))

    def marginals(self) -> tuple[np.ndarray, np.ndarray]:
        """Row sums ``(n_s,)`` and column sums ``(n_t,)`` (NaN entries stay visible)."""
        n_s, n_t = self.shape
        row, col = np.zeros(n_s), np.zeros(n_t)
        for begin in range(0, n_t, 1024):
            block = self.columns(np.arange(begin, min(begin + 1024, n_t)))
            row += block.sum(1)
            col[begin : begin + len(block[0])] = block.sum(0)
        return row, col


class DensePlan(Plan):
    def __init__(self, matrix: np.ndarray, info: dict | None = None):
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.shape = self.matrix.shape
        self.info = info or {}

    def columns(self, index) -> np.ndarray:
        return self.matrix[:, np.asarray(index)]


class LowRankPlan(Plan):
    """``T = Q diag(1 / g) R^T`` with ``Q (n_s, r)``, ``R (n_t, r)``, ``g (r,)``."""

    def __init__(self, q: np.ndarray, r: np.ndarray, g: np.ndarray, info: dict | None = None):
        self.q, self.r, self.g = (np.asarray(x, dtype=np.float64) for x in (q, r, g))
        self.shape = (len(self.q), len(self.r))
        self.info = info or {}

    def columns(self, index) -> np.ndarray:
        return self.q @ (self.r[np.asarray(index)] / self.g).T


class AnchorPlan(Plan):
    """``T[k, i] = P[a_k, b_i] / (size_a[a_k] size_b[b_i])`` from a plan ``P (A, B)`` between
    cells, the cell of every source node ``a (n_s,)`` and target node ``b (n_t,)``."""

    def __init__(self, cell_plan: np.ndarray, source_cells: np.ndarray,
                 target_cells: np.ndarray, info: dict | None = None):
        self.cell_plan = np.asarray(cell_plan, dtype=np.float64)
        self.source_cells = np.asarray(source_cells, dtype=np.int64)
        self.target_cells = np.asarray(target_cells, dtype=np.int64)
        self.source_sizes = np.bincount(self.source_cells, minlength=self.cell_plan.shape[0])
        self.target_sizes = np.bincount(self.target_cells, minlength=self.cell_plan.shape[1])
        self.shape = (len(self.source_cells), len(self.target_cells))
        self.info = info or {}

    def marginals(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self.cell_plan.sum(1) / np.maximum(self.source_sizes, 1)
        cols = self.cell_plan.sum(0) / np.maximum(self.target_sizes, 1)
        return rows[self.source_cells], cols[self.target_cells]

    def columns(self, index) -> np.ndarray:
        cells = self.target_cells[np.asarray(index)]
        block = self.cell_plan[np.ix_(self.source_cells, cells)]
        return block / np.outer(self.source_sizes[self.source_cells], self.target_sizes[cells])


def kmeans(features: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of ``(N, D)`` features from a k-means++ start: returns the cell of
    every point ``(N,)`` (cells numbered densely, empty ones dropped) and the centroids
    ``(K, D)``."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(len(x), (1,), generator=generator))]
    nearest = torch.cdist(x, x[chosen]).squeeze(1) ** 2
    for _ in range(1, min(k, len(x))):
        if float(nearest.sum()) <= 0:
            break
        chosen.append(int(torch.multinomial(nearest, 1, generator=generator)))
        nearest = torch.minimum(nearest, torch.cdist(x, x[chosen[-1:]]).squeeze(1) ** 2)
    centroids = x[chosen].clone()
    for _ in range(iters):
        cells = torch.cat([torch.cdist(chunk, centroids).argmin(1)
                           for chunk in x.split(4096)])
        sums = torch.zeros_like(centroids).index_add_(0, cells, x)
        counts = torch.bincount(cells, minlength=len(centroids)).clamp_min(1)
        centroids = torch.where((torch.bincount(cells, minlength=len(centroids)) > 0)[:, None],
                                sums / counts[:, None], centroids)
    cells = torch.cat([torch.cdist(chunk, centroids).argmin(1) for chunk in x.split(4096)])
    used, dense = torch.unique(cells, return_inverse=True)
    return dense.numpy(), centroids[used].numpy()


def _anchor_plan(source_features, target_features, config: GWConfig, info: dict) -> AnchorPlan:
    import ot

    from robopref.preferences.transfer.representations import euclidean_costs, normalised

    cells, centroids, masses = [], [], []
    for features in (source_features, target_features):
        n = len(features)
        if n <= config.anchors:
            assign, centre = np.arange(n), np.asarray(features, dtype=np.float32)
        else:
            assign, centre = kmeans(features, config.anchors, config.kmeans_iter, config.seed)
        cells.append(assign)
        centroids.append(centre)
        masses.append(np.bincount(assign).astype(np.float64) / n)
    cs = _to_backend(normalised(euclidean_costs(centroids[0]), "source anchor"), config)
    ct = _to_backend(normalised(euclidean_costs(centroids[1]), "target anchor"), config)
    p, q = (_to_backend(m, config) for m in masses)
    matrix, log = ot.gromov.entropic_gromov_wasserstein(
        cs, ct, p, q, epsilon=config.epsilon, max_iter=config.max_iter, tol=config.tol,
        warmstart=True, log=True, numItermax=config.sinkhorn_iter, stopThr=1e-6,
    )
    info.update(anchors=[len(centroids[0]), len(centroids[1])],
                gw_value=float(_to_numpy(log["gw_dist"])))
    return AnchorPlan(_to_numpy(matrix), cells[0], cells[1], info)


def _to_backend(array: np.ndarray, config: GWConfig):
    if config.backend == "numpy":
        return np.asarray(array, dtype=np.float32)
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_coupling(plan: Plan, config: GWConfig) -> None:
    """Raise ``PlanNotConverged`` unless ``plan`` is finite with uniform marginals."""
    n_s, n_t = plan.shape
    row, col = plan.marginals()
    if not (np.isfinite(row).all() and np.isfinite(col).all()):
        raise PlanNotConverged(
            f"the {config.solver} GW plan has NaN/inf entries (epsilon={config.epsilon} "
            "underflows on these costs): raise transfer.gw.epsilon or use solver=exact"
        )
    error = float(np.abs(row - 1.0 / n_s).sum() + np.abs(col - 1.0 / n_t).sum())
    plan.info["marginal_error"] = error
    if error > config.marginal_tol:
        raise PlanNotConverged(
            f"the {config.solver} GW plan did not converge (marginal error {error:.3g} > "
            f"{config.marginal_tol}): raise transfer.gw.sinkhorn_iter (now "
            f"{config.sinkhorn_iter}), max_iter (now {config.max_iter}) or epsilon"
        )


def solve_plan(
    source_costs: np.ndarray | None,
    target_costs: np.ndarray | None,
    config: GWConfig,
    cross_costs: np.ndarray | None = None,
    source_features: np.ndarray | None = None,
    target_features: np.ndarray | None = None,
) -> Plan:
    """The GW plan between source and target (uniform weights on both sets).

    ``source_costs (n_s, n_s)`` and ``target_costs (n_t, n_t)`` are normalised intra-task
    distances; ``cross_costs (n_s, n_t)`` is needed by ``fused``; ``lowrank`` and ``anchors``
    work on the features ``(n_s, D_s)`` and ``(n_t, D_t)`` instead of the cost matrices.
    """
    import ot

    started = time.perf_counter()
    info: dict = {"solver": config.solver, "backend": config.backend}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if config.solver in FEATURE_SOLVERS and (source_features is None
                                                 or target_features is None):
            raise TransferError(
                f"solver={config.solver} needs segment features: use representation=pooled "
                "or learned"
            )
        if config.solver == "anchors":
            plan = _anchor_plan(source_features, target_features, config, info)
        elif config.solver == "lowrank":
            xs, xt = _to_backend(source_features, config), _to_backend(target_features, config)
            rank = min(config.rank, len(source_features), len(target_features))
            q, r, g, log = ot.gromov.lowrank_gromov_wasserstein_samples(
                xs, xt, rank=rank, numItermax=config.max_iter, seed_init=config.seed, log=True
            )
            plan: Plan = LowRankPlan(_to_numpy(q), _to_numpy(r), _to_numpy(g), info)
            info["gw_value"] = float(_to_numpy(log["value"]))
        else:
            cs, ct = _to_backend(source_costs, config), _to_backend(target_costs, config)
            p = ot.unif(cs.shape[0], type_as=cs)
            q = ot.unif(ct.shape[0], type_as=ct)
            if config.solver == "exact":
                matrix, log = ot.gromov.gromov_wasserstein(
                    cs, ct, p, q, log=True, max_iter=config.max_iter * 100, tol_rel=config.tol
                )
            elif config.solver == "entropic":
                matrix, log = ot.gromov.entropic_gromov_wasserstein(
                    cs, ct, p, q, epsilon=config.epsilon, max_iter=config.max_iter,
                    tol=config.tol, warmstart=True, log=True,
                    numItermax=config.sinkhorn_iter, stopThr=1e-6,
                )
            else:
                if cross_costs is None:
                    raise TransferError(
                        f"solver={config.solver} needs a cross-task feature cost, which needs "
                        "matching observation spaces: use solver=entropic or exact"
                    )
                m = _to_backend(cross_costs, config)
                if config.solver == "fused":
                    matrix, log = ot.gromov.fused_gromov_wasserstein(
                        m, cs, ct, p, q, alpha=config.alpha, log=True,
                        max_iter=config.max_iter * 100, tol_rel=config.tol,
                    )
                else:
                    matrix, log = ot.gromov.entropic_fused_gromov_wasserstein(
                        m, cs, ct, p, q, epsilon=config.epsilon, alpha=config.alpha,
                        max_iter=config.max_iter, tol=config.tol, warmstart=True, log=True,
                        numItermax=config.sinkhorn_iter, stopThr=1e-6,
                    )
            plan = DensePlan(_to_numpy(matrix), info)
            value = log.get("gw_dist", log.get("fgw_dist"))
            info["gw_value"] = float(_to_numpy(value)) if value is not None else float("nan")
    info["solver_warnings"] = sorted({str(w.message).splitlines()[0] for w in caught})
    info["time_s"] = time.perf_counter() - started
    check_coupling(plan, config)
    return plan
