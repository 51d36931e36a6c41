"""Frechet distances of many resamples of the same rows (the bootstrap): rows centred once on a device, the
covariance of any row weighting from one gather and one rank-k update, per-clip sums for the first-order
(delta-method) replicates, and the transport maps that give tr sqrt(S_a S_b) its gradients.

Values agree with `frechet.frechet_distance_weighted` / `frechet.frechet_to_reference` to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluxbench.protocols.metrics.frechet import (FrechetInputError, GaussianStats, as_embeddings,
                                                 frechet_distance_weighted, frechet_to_reference,
                                                 symmetric_scatter, trace_sqrt_product)


class CentredRows:
    """Rows centred once, held on `device`, for many covariances under different row weights (the bootstrap).

    With y = x - mean(x) and s = sum w y / W (W = sum w), the weighted scatter is
    sum w (x - m_w)(x - m_w)^T = sum w y y^T - W s s^T, so each resample costs one gather of its drawn rows
    scaled by sqrt(w) and one symmetric rank-k update over them, instead of centring and scaling every row.
    """

    def __init__(self, rows: np.ndarray, device: str | None = None) -> None:
        import torch

        self.rows = as_embeddings(rows)
        self.centre = self.rows.mean(axis=0)
        self.device = torch.device(device or "cpu")
        self.centred = torch.from_numpy(self.rows - self.centre).to(self.device)

    @property
    def dim(self) -> int:
        return self.rows.shape[1]

    def on_device(self, matrix: np.ndarray):
        """A float64 tensor of `matrix` on the rows' device, converted once per matrix (fixed statistics)."""
        import torch

        cached = getattr(self, "_on_device", None)
        if cached is None or cached[0] is not matrix:
            self._on_device = (matrix, torch.as_tensor(matrix, dtype=torch.float64, device=self.device))
        return self._on_device[1]

    def weighted(self, weights: np.ndarray):
        """(mean as numpy, unbiased covariance as a full symmetric tensor on the device, total weight)."""
        import torch

        weights = np.asarray(weights, dtype=np.float64)
        keep = np.flatnonzero(weights)
        count = float(weights[keep].sum())
        if count < 2:
            raise FrechetInputError(f"resample has total weight {count}; the covariance needs at least 2 rows")
        if self.device.type == "cpu":
            return self._weighted_on_cpu(weights[keep], keep, count)
        kept = torch.from_numpy(weights[keep]).to(self.device)
        picked = self.centred.index_select(0, torch.from_numpy(keep).to(self.device))
        shift = kept @ picked / count
        picked.mul_(kept.sqrt()[:, None])
        scatter = symmetric_scatter(picked)
        scatter.addr_(shift, shift, alpha=-count)
        scatter.div_(count - 1)
        return self.centre + shift.cpu().numpy(), scatter, count

    def _weighted_on_cpu(self, kept: np.ndarray, keep: np.ndarray, count: float):
        # numpy for the elementwise work and scipy's BLAS for the products: torch's or numpy's own threaded
        # kernels here would wake a second thread pool between the BLAS calls of every resample.
        import torch
        from scipy.linalg import blas

        picked = self.centred.numpy()[keep]
        shift = blas.dgemv(1.0 / count, picked.T, kept)
        picked *= np.sqrt(kept)[:, None]
        lower = blas.dsyrk(1.0, picked.T, trans=0, lower=1)
        scatter = np.tril(lower) + np.tril(lower, -1).T
        scatter -= count * np.outer(shift, shift)
        scatter /= count - 1
        return self.centre + shift, torch.from_numpy(scatter), count


@dataclass(frozen=True)
class TransportMaps:
    """tr sqrt(S_a S_b) with its gradients, for first-order (delta-method) bootstrap replicates.

    T_ab = L^-T (L^T S_b L)^(1/2) L^-1 (S_a = L L^T) maps N(0, S_a) onto N(0, S_b) (T_ab S_a T_ab = S_b) and
    T_ba is its inverse; d tr sqrt(S_a S_b) / dS_a = T_ab / 2, d / dS_b = T_ba / 2, and tr(T_ab S_a) =
    tr(T_ba S_b) = tr sqrt(S_a S_b). Tensors on the device of the covariances.
    """

    trace: float
    a_to_b: object
    b_to_a: object


def transport_maps(cov_a, cov_b, device=None) -> TransportMaps | None:
    """The maps of `TransportMaps` from two full symmetric covariances (arrays or tensors), computed on `device`
    (eigenvectors once, in float64); None unless both covariances are positive definite."""
    import torch

    a = torch.as_tensor(cov_a, dtype=torch.float64, device=device)
    b = torch.as_tensor(cov_b, dtype=torch.float64, device=device)
    factor, failed = torch.linalg.cholesky_ex(a)
    if bool(failed):
        return None
    values, vectors = torch.linalg.eigh(factor.mT @ b @ factor)
    if not bool(values.min() > 0):
        return None
    # With L^T S_b L = V diag(l) V^T: T_ab = G diag(l^1/2) G^T, G = L^-T V, and T_ba = H diag(l^-1/2) H^T, H = L V.
    to_b = torch.linalg.solve_triangular(factor.mT, vectors, upper=True)
    to_a = factor @ vectors
    roots = values.sqrt()
    return TransportMaps(float(roots.sum()), (to_b * roots) @ to_b.mT, (to_a / roots) @ to_a.mT)


class ClipSums:
    """Per-clip sums of centred rows y, of |y|^2 and of y^T T y (T a transport map), so that for any number of
    resamples (how often each clip is drawn) the weighted means, tr S_w and tr(T S_w) come from one product:
    tr(T S_w) = (sum_i w_i y_i^T T y_i - W s^T T s) / (W - 1) with s = sum_i w_i y_i / W, W = sum_i w_i, and
    S_w the unbiased weighted covariance (T = I gives tr S_w)."""

    def __init__(self, rows: CentredRows, clip_of_row: np.ndarray | None, transport) -> None:
        import torch

        owner = np.arange(rows.rows.shape[0]) if clip_of_row is None else np.asarray(clip_of_row)
        clips = int(owner.max()) + 1
        centred = rows.centred
        per_row = torch.cat([centred, (centred * centred).sum(1, keepdim=True),
                             ((centred @ transport) * centred).sum(1, keepdim=True)], dim=1)
        self.sums = per_row.new_zeros(clips, per_row.shape[1]).index_add_(
            0, torch.from_numpy(owner).to(rows.device), per_row)
        self.rows_per_clip = per_row.new_tensor(np.bincount(owner, minlength=clips).astype(np.float64))
        self.centre, self.transport = rows.centre, transport

    def moments(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weighted means, tr S_w, tr(T S_w)) for each row of `counts` (resamples x clips), as numpy."""
        draws = self.sums.new_tensor(np.asarray(counts, dtype=np.float64))
        sums, total = draws @ self.sums, draws @ self.rows_per_clip
        shift = sums[:, :-2] / total[:, None]
        trace = (sums[:, -2] - total * (shift * shift).sum(1)) / (total - 1)
        transported = (sums[:, -1] - total * ((shift @ self.transport) * shift).sum(1)) / (total - 1)
        return self.centre + shift.cpu().numpy(), trace.cpu().numpy(), transported.cpu().numpy()


def frechet_of_weighted_rows(a: CentredRows, weights_a: np.ndarray, b: CentredRows | GaussianStats,
                             weights_b: np.ndarray | None = None) -> float:
    """`frechet_distance_weighted` (or `frechet_to_reference` when `b` is fixed statistics; same value, to
    round-off) on rows prepared once; covariances and the eigenvalue step run on the rows' device. Resamples
    with fewer distinct rows than dimensions take the exact Gram route of those functions."""
    fixed = isinstance(b, GaussianStats)
    if np.count_nonzero(weights_a) - 1 < a.dim or (not fixed and np.count_nonzero(weights_b) - 1 < a.dim):
        if fixed:
            return frechet_to_reference(a.rows, weights_a, b, warn=False)
        return frechet_distance_weighted(a.rows, weights_a, b.rows, weights_b, warn=False)
    mean_a, cov_a, _ = a.weighted(weights_a)
    mean_b, cov_b, _ = (b.mean, a.on_device(b.cov), b.count) if fixed else b.weighted(weights_b)
    for label, cov in (("first", cov_a), ("second", cov_b)):
        if not bool(cov.isfinite().all()):
            raise FrechetInputError(f"{label} statistics contain NaN or infinite values")
    trace = trace_sqrt_product(cov_a, cov_b, cov_a.device)
    diff = mean_a - mean_b
    return float(diff @ diff + float(cov_a.diagonal().sum()) + float(cov_b.diagonal().sum()) - 2.0 * trace)
