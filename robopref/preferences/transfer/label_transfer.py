"""Moving labels along a plan: PEARL's weighted sum, vectorised, and its calibration.

For source labels ``z(x_k, x_l)`` with weights ``w_kl`` and a plan ``T (n_s, n_t)``, the
label of target pair ``(y_i, y_j)`` is::

    z(y_i, y_j) = sum_kl w_kl T[k,i] T[l,j] z(x_k, x_l) / sum_kl w_kl T[k,i] T[l,j]

over labelled source pairs only (each counted in both orders, ``z(x_l, x_k) = 1 - z``). It is
computed for ``B`` queries at once as ``sum_k T[k,i] (Z T[:, j])_k`` with ``Z`` the sparse
``(n_s, n_s)`` matrix of weighted labels: ``O(nnz * B)``, never an ``n_t x n_t`` matrix.
A target pair no labelled source pair reaches gets NaN (no answer).

Calibration (``CALIBRATIONS``): the plain sum shrinks towards 0.5 where plans are diffuse.
``sharpen`` rescales its logit by a temperature fitted without target labels, by transferring
the source's labels between two halves of the source set (self-transfer) and choosing the
temperature that best predicts the held-out half's labels; ``rank`` spreads confidences
uniformly: ``0.5 + sign(z - 0.5) * rank(|z - 0.5|) / (2 B)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from robopref.errors import ConfigError

CALIBRATIONS = ("plain", "sharpen", "rank")
TEMPERATURES = np.geomspace(0.25, 64.0, 41)


@dataclass
class SourceLabels:
    """Labelled source pairs over ``n`` source nodes: indices ``first``/``second`` ``(P,)``,
    targets in [0, 1] and weights ``(P,)``."""

    n: int
    first: np.ndarray
    second: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    def __post_init__(self) -> None:
        self.first = np.asarray(self.first, dtype=np.int64)
        self.second = np.asarray(self.second, dtype=np.int64)
        self.target = np.asarray(self.target, dtype=np.float64)
        self.weight = np.asarray(self.weight, dtype=np.float64)
        if len(self.first) == 0:
            raise ConfigError(
                "the transfer source has no labelled pairs: label source segment pairs first "
                "(e.g. with the scripted teacher)"
            )

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Sparse ``(n, n)`` matrices of ``w * z`` and ``w``, both orders included."""
        rows = np.concatenate([self.first, self.second])
        cols = np.concatenate([self.second, self.first])
        w = np.concatenate([self.weight, self.weight])
        z = np.concatenate([self.target, 1.0 - self.target])
        shape = (self.n, self.n)
        return (
            sp.csr_matrix((w * z, (rows, cols)), shape=shape),
            sp.csr_matrix((w, (rows, cols)), shape=shape),
        )


def transfer_labels(
    plan, labels: SourceLabels, first: np.ndarray, second: np.ndarray, chunk: int = 2048
) -> np.ndarray:
    """Plain transferred labels ``(B,)`` for target pairs ``(first[b], second[b])``; NaN where
    no labelled source pair carries mass."""
    weighted, mass = labels.matrices()
    first, second = np.asarray(first), np.asarray(second)
    if hasattr(plan, "cell_plan"):
        return _cell_to_cell(plan, weighted, mass, first, second)
    out = np.full(len(first), np.nan)
    for begin in range(0, len(first), chunk):
        sl = slice(begin, begin + chunk)
        ti, tj = plan.columns(first[sl]), plan.columns(second[sl])  # (n_s, b)
        num = np.einsum("kb,kb->b", ti, weighted @ tj)
        den = np.einsum("kb,kb->b", ti, mass @ tj)
        ok = den > 1e-300
        block = np.full(len(ti[0]), np.nan)
        block[ok] = np.clip(num[ok] / den[ok], 0.0, 1.0)
        out[sl] = block
    return out


def _cell_to_cell(plan, weighted, mass, first, second) -> np.ndarray:
    """The same sum for an ``AnchorPlan``, factorised: the labels summed per source cell pair
    (``(A, A)``), carried to target cell pairs by ``P^T Z P`` (``(B, B)``), then read per
    target pair. The cell sizes cancel between numerator and denominator."""
    n_cells = plan.cell_plan.shape[0]
    member = sp.csr_matrix((np.ones(len(plan.source_cells)),
                            (np.arange(len(plan.source_cells)), plan.source_cells)),
                           shape=(len(plan.source_cells), n_cells))
    p = plan.cell_plan / np.outer(np.maximum(plan.source_sizes, 1), 1.0)
    num = p.T @ (member.T @ weighted @ member).toarray() @ p
    den = p.T @ (member.T @ mass @ member).toarray() @ p
    a, b = plan.target_cells[first], plan.target_cells[second]
    out = np.full(len(first), np.nan)
    ok = den[a, b] > 1e-300
    out[ok] = np.clip(num[a, b][ok] / den[a, b][ok], 0.0, 1.0)
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def sharpen(z: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(temperature * logit(z))``; NaN stays NaN."""
    return expit(temperature * _logit(z))


def rank_normalise(z: np.ndarray) -> np.ndarray:
    """Confidences replaced by their rank among the finite entries, spread over (0, 0.5]."""
    out = np.array(z, dtype=np.float64)
    ok = np.isfinite(out)
    if ok.any():
        conf = np.abs(out[ok] - 0.5)
        ranks = (np.argsort(np.argsort(conf, kind="stable"), kind="stable") + 1) / ok.sum()
        out[ok] = 0.5 + np.sign(out[ok] - 0.5) * 0.5 * ranks
    return out


def fit_temperature(predicted: np.ndarray, truth: np.ndarray) -> float:
    """The temperature (on a log grid) minimising BCE of ``sharpen(predicted)`` against soft
    ``truth``; 1 when nothing is finite."""
    ok = np.isfinite(predicted) & np.isfinite(truth)
    if not ok.any():
        return 1.0
    p, y = predicted[ok], truth[ok]
    losses = []
    for t in TEMPERATURES:
        s = np.clip(sharpen(p, t), 1e-6, 1 - 1e-6)
        losses.append(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)))
    return float(TEMPERATURES[int(np.argmin(losses))])


def expected_calibration_error(predicted: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """ECE of soft labels against decided truth (1 = first better, 0 = second): the answer's
    confidence ``max(p, 1-p)`` against its accuracy, in ``bins`` equal-width bins over
    [0.5, 1]; NaN predictions and ties (truth 0.5) left out."""
    ok = np.isfinite(predicted) & (truth != 0.5)
    if not ok.any():
        return float("nan")
    p, y = predicted[ok], truth[ok]
    confidence = np.maximum(p, 1 - p)
    correct = ((p > 0.5) == (y > 0.5)).astype(float)
    correct[p == 0.5] = 0.5
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(ece)
