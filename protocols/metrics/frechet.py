"""Frechet distance between Gaussians fitted to two embedding sets (FAD on VGGish frames, FD on PANNs clips).

    d^2 = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)

Conventions of audioldm_eval (the pytorch-fid formula every audio library shares): row means, unbiased
covariances (N - 1), no regulariser, no clamp at zero, so identical sets can give about -1e-7.

The reference library takes tr sqrt(S1 S2) from scipy's `sqrtm` of the non-symmetric product. The eigenvalues
of S1 S2 are those of a symmetric positive semi-definite matrix, so we sum their square roots instead, in
float64 (on the CPU all in one BLAS/LAPACK, scipy's, so that no two thread pools fight over the cores):
- one covariance positive definite (the usual N > d case): S1 = L L^T (Cholesky) and the eigenvalues of S1 S2
  are those of L^T S2 L (LAPACK's sygst forms it in one triangular pass), eigenvalues only (no vectors);
  from embeddings each covariance is one symmetric rank-k update into a lower triangle, nothing mirrored;
- dimensions without variance in either set (dead ReLU units) are dropped first, which is exact;
- one covariance singular: L^T S_other L with the Cholesky factor that exists;
- data on hand and fewer rows than dimensions on one side: S = Z^T Z with Z the scaled centred rows, and the
  eigenvalues are those of the small Gram matrix Z S_other Z^T (exact; the rank-deficient case where sqrtm
  loses about 1e-8 relative);
- otherwise an eigendecomposition of S1, negative round-off eigenvalues clipped at 0.
Eigenvalues come from LAPACK's two-stage reduction (`two_stage_eigenvalues`) where scipy's bundled OpenBLAS exports
it, else from `syevr`.
`method="sqrtm"` reproduces the reference computation (scipy) for audits. Many resamples of the same rows (the
bootstrap) go through `frechet_resampling`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from fluxbench import FluxbenchError

METHODS = ("auto", "sqrtm")


class FrechetInputError(FluxbenchError):
    pass


class UnreliableEstimateWarning(UserWarning):
    """The covariance estimate is rank-deficient (fewer rows than dimensions): FD is biased and noisy."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean (d,), unbiased covariance (d, d) and the number of rows (or total weight) behind them."""

    mean: np.ndarray
    cov: np.ndarray
    count: float

    @classmethod
    def of(cls, embeddings: np.ndarray, weights: np.ndarray | None = None, name: str = "embeddings") -> GaussianStats:
        """Statistics of the rows; `weights` (non-negative row multiplicities) serve the bootstrap."""
        import torch

        rows = as_embeddings(embeddings, name)
        centred, count = _centred(rows, weights)
        if weights is not None:
            centred *= np.sqrt(weights)[:, None]
        return cls(rows.mean(axis=0) if weights is None else weights @ rows / count,
                   symmetric_scatter(torch.from_numpy(centred)).numpy() / (count - 1), count)


def as_embeddings(embeddings, name: str = "embeddings", min_rows: int = 2) -> np.ndarray:
    """Validate an (N, d) array of finite numbers with N >= min_rows and return it as float64."""
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise FrechetInputError(f"{name}: expected a 2-D (rows, dims) array, got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise FrechetInputError(f"{name}: {array.shape[0]} row(s); the covariance needs at least {min_rows}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise FrechetInputError(f"{name}: contains NaN or infinite values")
    return array


def frechet_distance(emb_a, emb_b, method: str = "auto") -> float:
    """Frechet distance between the Gaussians fitted to two (N, d) embedding arrays."""
    a = as_embeddings(emb_a, "first embedding set")
    b = as_embeddings(emb_b, "second embedding set")
    if a.shape[1] != b.shape[1]:
        raise FrechetInputError(f"embedding sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    if method == "auto" and min(a.shape[0], b.shape[0]) - 1 >= a.shape[1]:
        value = _frechet_of_full_rank_rows(a, b)
        if value is not None:
            return value
    return frechet_distance_weighted(a, None, b, None, method)


def _frechet_of_full_rank_rows(a: np.ndarray, b: np.ndarray) -> float | None:
    """The usual case (more rows than dimensions in both sets) without full covariance matrices: lower
    triangles straight from the centred rows, one Cholesky, sygst, eigenvalues. None when neither covariance is
    positive definite (the caller's general path then drops dead dimensions)."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = lower_scatter(a, mean_a, 1.0 / (a.shape[0] - 1))
    cov_b = lower_scatter(b, mean_b, 1.0 / (b.shape[0] - 1))
    traces = float(np.trace(cov_a)) + float(np.trace(cov_b))
    if not np.isfinite(traces):
        raise FrechetInputError("statistics contain NaN or infinite values")
    if not (np.diagonal(cov_a).all() and np.diagonal(cov_b).all()):
        return None  # dead dimensions: their zero eigenvalues would come back as square roots of round-off
    trace = _trace_sqrt_of_lower(cov_a, cov_b)
    if trace is None:
        return None
    diff = mean_a - mean_b
    return float(diff @ diff + traces - 2.0 * trace)


def lower_scatter(rows: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """scale * (rows - centre)^T (rows - centre) as a lower triangle (the upper one zero) in Fortran order,
    what LAPACK reads: one symmetric rank-k update, half the flops of a general product."""
    from scipy.linalg import blas

    # The centred C-ordered rows' transpose is Fortran-ordered, so BLAS reads it without a copy.
    return blas.dsyrk(scale, np.subtract(rows, centre).T, trans=0, lower=1)


def _trace_sqrt_of_lower(cov_a: np.ndarray, cov_b: np.ndarray) -> float | None:
    """tr sqrt(S_a S_b) from the lower triangles of two covariances, on the CPU: the eigenvalues of L^T S L
    with L the Cholesky factor of whichever covariance has one (L_a first); None when neither has."""
    from scipy.linalg import lapack

    for factored, other in ((cov_a, cov_b), (cov_b, cov_a)):
        factor, failed = lapack.dpotrf(factored, lower=1, clean=1)
        if failed == 0:
            # itype 2 forms L^T S L, a product of triangular and symmetric matrices (no inverse).
            product, failed = lapack.dsygst(other, factor, itype=2, lower=1)
            if failed != 0:
                raise FrechetInputError(f"LAPACK sygst failed (info {failed})")
            return _sum_sqrt_eigenvalues(product)
    return None


def frechet_distance_weighted(a: np.ndarray, weights_a: np.ndarray | None, b: np.ndarray,
                              weights_b: np.ndarray | None, method: str = "auto", warn: bool = True) -> float:
    """Frechet distance with optional row multiplicities (a bootstrap resample without copying rows)."""
    return _frechet(a, weights_a, GaussianStats.of(a, weights_a), b, weights_b, GaussianStats.of(b, weights_b),
                    method, warn)


def frechet_to_reference(rows: np.ndarray, weights: np.ndarray | None, reference: GaussianStats,
                         method: str = "auto", warn: bool = True) -> float:
    """Frechet distance of (weighted) rows against fixed reference statistics (per-clip FAD, FAD-inf)."""
    return _frechet(rows, weights, GaussianStats.of(rows, weights), None, None, reference, method, warn)


def frechet_distance_from_stats(stats_a: GaussianStats, stats_b: GaussianStats, method: str = "auto") -> float:
    """Frechet distance from precomputed statistics (e.g. a shipped reference mean/covariance)."""
    return _frechet(None, None, stats_a, None, None, stats_b, method, True)


def _frechet(rows_a, weights_a, stats_a: GaussianStats, rows_b, weights_b, stats_b: GaussianStats,
             method: str, warn: bool) -> float:
    if stats_a.mean.shape != stats_b.mean.shape or stats_a.cov.shape != stats_b.cov.shape:
        raise FrechetInputError(
            f"statistics differ in dimension: {stats_a.mean.shape[0]} vs {stats_b.mean.shape[0]}")
    for label, stats in (("first", stats_a), ("second", stats_b)):
        if not (np.isfinite(stats.mean).all() and np.isfinite(stats.cov).all()):
            raise FrechetInputError(f"{label} statistics contain NaN or infinite values")
    if method not in METHODS:
        raise FrechetInputError(f"unknown Frechet method {method!r}; expected one of {METHODS}")
    dim = stats_a.mean.shape[0]
    rows = [_distinct_rows(rows_a, weights_a, stats_a), _distinct_rows(rows_b, weights_b, stats_b)]
    if warn and min(rows) - 1 < dim:
        _warn_rank_deficient(int(min(rows)), dim)
    if method == "sqrtm":
        return reference_frechet_distance(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)
    small = min((side for side in (0, 1) if (rows_a, rows_b)[side] is not None), key=lambda side: rows[side],
                default=None)
    if small is not None and rows[small] - 1 < dim:
        data, weights = ((rows_a, weights_a), (rows_b, weights_b))[small]
        trace = _trace_sqrt_gram(data, weights, (stats_b, stats_a)[small].cov)
    else:
        trace = trace_sqrt_product(stats_a.cov, stats_b.cov)
    return _assemble(stats_a, stats_b, trace)


def _distinct_rows(rows, weights, stats: GaussianStats) -> float:
    if rows is None:
        return stats.count
    return float(rows.shape[0] if weights is None else np.count_nonzero(weights))


def trace_sqrt_product(cov_a, cov_b, device: str | None = None) -> float:
    """tr sqrt(cov_a cov_b) for symmetric positive semi-definite matrices (arrays or tensors), in float64."""
    import torch

    a = torch.as_tensor(cov_a, dtype=torch.float64, device=device)
    b = torch.as_tensor(cov_b, dtype=torch.float64, device=device)
    # A dimension without variance in either set (a dead ReLU unit) is a zero row and column of that
    # covariance and adds only zero eigenvalues to the product: dropping it is exact and keeps Cholesky usable.
    live = (a.diagonal() > 0) & (b.diagonal() > 0)
    if not bool(live.all()):
        keep = live.nonzero().squeeze(1)
        a, b = a[keep][:, keep], b[keep][:, keep]
    if a.device.type == "cpu":
        # A symmetric C-ordered matrix's transpose is itself in Fortran order: LAPACK gets it without a copy.
        trace = _trace_sqrt_of_lower(np.asfortranarray(a.numpy().T), np.asfortranarray(b.numpy().T))
        if trace is not None:
            return trace
    factor_a, bad_a = torch.linalg.cholesky_ex(a)
    factor_b, bad_b = torch.linalg.cholesky_ex(b)
    if not bad_a and not bad_b:
        product = factor_b.mT @ factor_a
        symmetric = product.mT @ product
    elif not bad_a or not bad_b:
        factor, other = (factor_a, b) if not bad_a else (factor_b, a)
        symmetric = factor.mT @ other @ factor
    else:
        values, vectors = torch.linalg.eigh(a)
        root = vectors * values.clamp(min=0).sqrt()
        symmetric = root.mT @ b @ root
    if symmetric.device.type != "cpu":
        # On a GPU the eigenvalues are computed where the matrix is (float64 there too).
        return float(torch.linalg.eigvalsh(symmetric).clamp(min=0).sqrt().sum())
    return _sum_sqrt_eigenvalues(symmetric.numpy())


def symmetric_scatter(rows):
    """rows^T rows as a full symmetric float64 tensor: half the products of a general GEMM on the CPU."""
    import torch

    if rows.device.type != "cpu":
        return rows.mT @ rows
    from scipy.linalg import blas

    # dsyrk on the transposed (Fortran-ordered) view writes the lower triangle; mirror it for the callers
    # (cholesky and eigvalsh read the lower triangle, the fallbacks read both).
    lower = blas.dsyrk(1.0, rows.numpy().T, trans=0, lower=1)
    return torch.from_numpy(np.tril(lower) + np.tril(lower, -1).T)  # numpy: no torch thread pool woken


def reference_frechet_distance(mean_a, cov_a, mean_b, cov_b, eps: float = 1e-6) -> float:
    """The audioldm_eval / pytorch-fid computation with scipy's sqrtm, for audits and benchmarks.

    eps is added to both diagonals only when sqrtm returns non-finite values; a complex result is an error
    only when a diagonal imaginary part exceeds 1e-3, otherwise its real part is used.
    """
    from scipy import linalg

    diff = np.asarray(mean_a, dtype=np.float64) - np.asarray(mean_b, dtype=np.float64)
    root = _sqrtm(linalg, cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(cov_a.shape[0]) * eps
        root = _sqrtm(linalg, (cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise FrechetInputError(
                f"sqrtm returned an imaginary component of {np.max(np.abs(root.imag)):.3g}; use method='auto'")
        root = root.real
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def _sqrtm(linalg, matrix: np.ndarray) -> np.ndarray:
    # scipy >= 1.17 deprecates (and 1.18 removes) the `disp` argument the reference passes; the plain call
    # returns the same matrix in every version.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return linalg.sqrtm(matrix)


def _assemble(stats_a: GaussianStats, stats_b: GaussianStats, trace_sqrt: float) -> float:
    diff = stats_a.mean - stats_b.mean
    return float(diff @ diff + np.trace(stats_a.cov) + np.trace(stats_b.cov) - 2.0 * trace_sqrt)


def _centred(rows: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, float]:
    if weights is None:
        return rows - rows.mean(axis=0), float(rows.shape[0])
    weights = np.asarray(weights, dtype=np.float64)
    count = float(weights.sum())
    if count < 2:
        raise FrechetInputError(f"resample has total weight {count}; the covariance needs at least 2 rows")
    return rows - weights @ rows / count, count


def _trace_sqrt_gram(rows: np.ndarray, weights: np.ndarray | None, cov_other: np.ndarray) -> float:
    """tr sqrt(S S_other) with S the covariance of `rows`, through the small k x k Gram matrix (k rows)."""
    from scipy.linalg import blas

    centred, count = _centred(rows, weights)
    if weights is not None:
        keep = weights > 0
        centred = centred[keep] * np.sqrt(weights[keep])[:, None]
    scaled = np.ascontiguousarray(centred / np.sqrt(count - 1))
    # scipy's BLAS, as the eigen step after it: torch's thread pool, woken between two scipy calls, made each
    # bootstrap replicate of a 128 x 128 Gram matrix 8x slower on two cores. The transposed views are the
    # column-major operands BLAS reads without a copy (cov_other is symmetric).
    other_by_rows = blas.dgemm(1.0, np.asarray(cov_other, dtype=np.float64).T, scaled.T)  # S_other scaled^T
    gram = blas.dgemm(1.0, scaled.T, other_by_rows, trans_a=1)
    # Centred rows sum to zero (with their weights), so the Gram matrix has rank k - 1 at most: its smallest
    # eigenvalue is zero, and its round-off (about 1e-16 of the largest) must not add a square root.
    return _sum_sqrt_eigenvalues(gram, drop_smallest=1)


def _sum_sqrt_eigenvalues(symmetric: np.ndarray, drop_smallest: int = 0) -> float:
    """Sum of the square roots of a symmetric PSD matrix's eigenvalues (round-off negatives count as 0), leaving
    out the `drop_smallest` smallest (known to be zero)."""
    from scipy.linalg import lapack

    # scipy's LAPACK (the BLAS of the products before it: torch's MKL or numpy's OpenBLAS would bring a second
    # thread pool whose spinning workers take cores from the first); eigenvalues only, lower triangle.
    eigenvalues = two_stage_eigenvalues(symmetric)
    if eigenvalues is None:  # MRRR
        eigenvalues, _, _, _, failed = lapack.dsyevr(symmetric, compute_v=0, lower=1)
        if failed != 0:
            raise FrechetInputError(f"LAPACK syevr failed (info {failed})")
    return float(np.sqrt(np.clip(np.sort(eigenvalues)[drop_smallest:], 0, None)).sum())


def _warn_rank_deficient(rows: int, dim: int) -> None:
    warnings.warn(
        f"Frechet distance from {rows} rows in {dim} dimensions: the covariance is rank-deficient (N < d), so "
        "the value is biased and unstable; compare only numbers computed with the same N",
        UnreliableEstimateWarning, stacklevel=4)


def two_stage_eigenvalues(symmetric: np.ndarray) -> np.ndarray | None:
    """Eigenvalues of a symmetric matrix (lower triangle read) by LAPACK's two-stage tridiagonal reduction,
    `dsyev_2stage`: its first stage runs in matrix-matrix products, about a quarter faster than the one-stage
    reduction at d = 2048. scipy does not wrap it, but the OpenBLAS bundled in scipy's wheels exports it;
    None where that library or routine is not found (the caller then uses syevr)."""
    routine = _two_stage_routine()
    if routine is None:
        return None
    work = np.array(symmetric, dtype=np.float64, order="F")  # overwritten by the reduction
    eigenvalues = np.empty(work.shape[0])
    column_major = 102
    failed = routine(column_major, b"N", b"L", work.shape[0], work.ctypes.data, work.shape[0],
                     eigenvalues.ctypes.data)
    if failed != 0:
        raise FrechetInputError(f"LAPACK syev_2stage failed (info {failed})")
    return eigenvalues


@functools.cache
def _two_stage_routine():
    """LAPACKE_dsyev_2stage from the OpenBLAS in scipy's wheel, looked up once; None when absent."""
    import ctypes
    from pathlib import Path

    import scipy

    for library in sorted((Path(scipy.__file__).parent.parent / "scipy.libs").glob("libscipy_openblas*")):
        try:
            routine = getattr(ctypes.CDLL(str(library)), "scipy_LAPACKE_dsyev_2stage")
        except (OSError, AttributeError):
            continue
        routine.restype = ctypes.c_int
        routine.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_int, ctypes.c_void_p,
                            ctypes.c_int, ctypes.c_void_p]
        return routine
    return None
