"""Kernel Audio Distance (KAD): an unbiased MMD between two embedding sets (Chung et al. 2025, kadtk 1.1.0).

    KAD = 100 * [ mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j) ]
    k(a, b) = exp(-gamma |a - b|^2),  gamma = 1 / (2 h^2 + 1e-8)

x is the reference set (kadtk's "baseline"), y the generated set (its "eval"). Conventions of kadtk 1.1.0:
- Gaussian kernel; the bandwidth h is the median of the pairwise Euclidean distances of one set, the lower
  middle value when their count is even (torch.median);
- kadtk's code takes that median over the *generated* set, although its README says the reference set;
  bandwidth="generated" (the default) reproduces the published code, bandwidth="reference" the README, and a
  number fixes h;
- within-set means leave out the diagonal (i = j), the cross mean keeps every pair: the unbiased U-statistic,
  which can be negative for close sets;
- the scale factor 100.

Rows may carry multiplicities (a bootstrap resample without copying rows): a row drawn c times contributes
c^2 - c off-diagonal self-pairs, exactly as if the copies were concatenated. All sums run in float64 over
row blocks, so memory stays at one block of the kernel matrix whatever N is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluxbench.protocols.metrics.frechet import FrechetInputError, as_embeddings

SCALE = 100.0
GAMMA_EPS = 1e-8
BANDWIDTH_RULES = ("generated", "reference")
BLOCK_ENTRIES = 1 << 22  # kernel entries held at once (32 MB in float64)


class KadInputError(FrechetInputError):
    pass


@dataclass(frozen=True)
class KadResult:
    value: float
    bandwidth: float
    bandwidth_from: str  # "generated", "reference" or "fixed"


def kernel_audio_distance(generated, reference, bandwidth: str | float = "generated") -> KadResult:
    """KAD between (N, d) generated and (M, d) reference embeddings (kadtk's calc_kernel_audio_distance)."""
    gen = as_embeddings(generated, "generated embeddings")
    ref = as_embeddings(reference, "reference embeddings")
    if gen.shape[1] != ref.shape[1]:
        raise KadInputError(f"embedding sets differ in dimension: {gen.shape[1]} vs {ref.shape[1]}")
    h, rule = resolve_bandwidth(bandwidth, gen, ref)
    gamma = gamma_of(h)
    value = SCALE * (_within_mean(ref, None, gamma)[0] + _within_mean(gen, None, gamma)[0]
                     - 2.0 * _cross_sums(ref, gen, None, None, gamma)[0] / (ref.shape[0] * gen.shape[0]))
    return KadResult(float(value), h, rule)


def resolve_bandwidth(bandwidth: str | float, gen: np.ndarray, ref: np.ndarray) -> tuple[float, str]:
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTH_RULES:
            raise KadInputError(f"unknown KAD bandwidth rule {bandwidth!r}; expected one of {BANDWIDTH_RULES} "
                                "or a positive number")
        return median_pairwise_distance(gen if bandwidth == "generated" else ref), bandwidth
    value = float(bandwidth)
    if not np.isfinite(value) or value <= 0:
        raise KadInputError(f"KAD bandwidth {bandwidth!r}: expected a positive number")
    return value, "fixed"


def gamma_of(bandwidth: float) -> float:
    return 1.0 / (2.0 * bandwidth ** 2 + GAMMA_EPS)


def median_pairwise_distance(rows: np.ndarray) -> float:
    """Lower median of the N(N-1)/2 Euclidean distances between distinct rows (torch.median's convention)."""
    rows = np.asarray(rows, dtype=np.float64)
    count = rows.shape[0]
    if count < 2:
        raise KadInputError(f"the KAD bandwidth needs at least 2 rows, got {count}")
    norms = np.einsum("ij,ij->i", rows, rows)
    pieces = []
    step = max(1, BLOCK_ENTRIES // count)
    for start in range(0, count - 1, step):
        block = rows[start:start + step]
        squared = norms[start:start + step, None] + norms[None, :] - 2.0 * _gram(block, rows)
        local = np.arange(block.shape[0])[:, None]
        upper = np.arange(count)[None, :] > (start + local)  # pairs (i, j) with j > i, each pair once
        pieces.append(np.sqrt(np.clip(squared[upper], 0.0, None)))
    distances = np.concatenate(pieces)
    middle = (distances.size - 1) // 2
    return float(np.partition(distances, middle)[middle])


def kad_replicates(gen: np.ndarray, ref: np.ndarray, gen_weights: np.ndarray, ref_weights: np.ndarray,
                   bandwidth: float) -> np.ndarray:
    """KAD of B weighted resamples at once: `*_weights` are (B, rows) multiplicities; the bandwidth is fixed."""
    gamma = gamma_of(bandwidth)
    gen_weights = np.atleast_2d(np.asarray(gen_weights, dtype=np.float64))
    ref_weights = np.atleast_2d(np.asarray(ref_weights, dtype=np.float64))
    within_ref = _within_mean(ref, ref_weights, gamma)
    within_gen = _within_mean(gen, gen_weights, gamma)
    cross = _cross_sums(ref, gen, ref_weights, gen_weights, gamma) / (ref_weights.sum(1) * gen_weights.sum(1))
    return SCALE * (within_ref + within_gen - 2.0 * cross)


def kad_to_reference(rows: np.ndarray, reference: np.ndarray, bandwidth: float,
                     reference_within: float | None = None) -> float:
    """KAD of a few rows (one clip's frames) against a reference set at a given bandwidth; pass the reference's
    within-set mean (`reference_within_mean`) to compute it once for many clips."""
    gamma = gamma_of(bandwidth)
    within_ref = reference_within_mean(reference, bandwidth) if reference_within is None else reference_within
    cross = _cross_sums(reference, rows, None, None, gamma)[0] / (reference.shape[0] * rows.shape[0])
    return float(SCALE * (within_ref + _within_mean(rows, None, gamma)[0] - 2.0 * cross))


def reference_within_mean(reference: np.ndarray, bandwidth: float) -> float:
    return float(_within_mean(reference, None, gamma_of(bandwidth))[0])


# ---- block sums -------------------------------------------------------------------------------------------
def _within_mean(rows: np.ndarray, weights: np.ndarray | None, gamma: float) -> np.ndarray:
    """Mean kernel value over ordered pairs of distinct positions, per weight vector. A row drawn c times
    adds c^2 - c pairs of copies, each at distance 0 (kernel value 1)."""
    off_diagonal = _cross_sums(rows, rows, weights, weights, gamma, skip_diagonal=True)
    if weights is None:
        count = float(rows.shape[0])
        return off_diagonal / (count * (count - 1.0))
    count = weights.sum(axis=1)
    if np.any(count < 2):
        raise KadInputError("a KAD resample needs at least 2 rows on each side")
    copies = (weights * (weights - 1.0)).sum(axis=1)
    return (off_diagonal + copies) / (count * (count - 1.0))


def _cross_sums(a: np.ndarray, b: np.ndarray, weights_a: np.ndarray | None, weights_b: np.ndarray | None,
                gamma: float, skip_diagonal: bool = False) -> np.ndarray:
    """w_a^T K(a, b) w_b for each row of the weight matrices (all-ones when None), block by block;
    skip_diagonal (a is b) leaves out the pairs of a position with itself."""
    norms_a = np.einsum("ij,ij->i", a, a)
    norms_b = np.einsum("ij,ij->i", b, b)
    step = max(1, BLOCK_ENTRIES // b.shape[0])
    replicates = 1 if weights_a is None else weights_a.shape[0]
    totals = np.zeros(replicates)
    for start in range(0, a.shape[0], step):
        block = a[start:start + step]
        kernel = norms_a[start:start + step, None] + norms_b[None, :] - 2.0 * _gram(block, b)
        np.multiply(kernel, -gamma, out=kernel)
        np.exp(kernel, out=kernel)
        if skip_diagonal:
            local = np.arange(block.shape[0])
            kernel[local, start + local] = 0.0
        if weights_a is None:
            totals += kernel.sum()
        else:
            # (B, block) x (block, n) x (n, B) diagonal: sum over rows of (W_a K) * W_b.
            totals += np.einsum("bi,bi->b", weights_a[:, start:start + step] @ kernel, weights_b)
    return totals


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # torch's MKL GEMM in float64 (numpy's BLAS here is slower on these shapes).
    import torch

    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b)).mT).numpy()
