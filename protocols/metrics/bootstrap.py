"""Bootstrap confidence intervals and FAD-inf, seeded so that a rerun gives the same numbers.

Resampling is by clip: for frame-level embeddings (VGGish FAD) the frames of a drawn clip travel together,
because frames of one clip are not independent. Frechet replicates resample the generated and the reference
set independently; paired metrics (KL, CLAP) resample pairs; IS resamples generated clips and keeps the
split/shuffle convention. Every metric draws from its own stream (seed, metric name), so adding a metric never
changes another metric's interval. Intervals are percentile intervals of the replicates.

Frechet replicates are exact (each resample's covariances and eigenvalues) while their projected arithmetic,
replicates x (rows x d^2 + 10 d^3) flops, stays within EXACT_FLOP_BUDGET (about ten CPU-core seconds): every
small run, every test. Beyond it (a MusicCaps-size run: an exact PANNs FD resample at d = 2048 is about 70
GFLOP, 6.6 s measured on the shared 2-core box) the first CALIBRATION_RESAMPLES resamples stay exact and the rest are predicted from
delta-method replicates: the means and covariance traces of each resample exactly, tr sqrt(S_gen S_ref) to
first order around the full sample through the transport maps T (its gradients, one eigendecomposition per
interval): tr sqrt ~ tr(T_gr S_gen*) / 2 + tr(T_rg S_ref*) / 2, one product over clip sums for all resamples.
The curvature the first order leaves out shifts the replicates (the bootstrap's share of the estimator's
small-sample bias) and spreads them (in high dimensions comparably to the first order), so the exact
calibration replicates are regressed on their first-order values and the rest get that line plus the fit's
residuals in turn. The same draws are used either way, so the calibration replicates are the exact ones of
the all-exact path; coverage of the intervals is tested on Gaussians with a known Frechet distance.
"""

from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
from scipy.special import xlogy

from fluxbench.protocols.metrics.frechet import GaussianStats, UnreliableEstimateWarning, frechet_to_reference
from fluxbench.protocols.metrics.frechet_resampling import (CentredRows, ClipSums, frechet_of_weighted_rows,
                                                            transport_maps)
from fluxbench.protocols.metrics.inception import log_softmax_rows, split_bounds


EXACT_FLOP_BUDGET = 5e11
EXACT_ENV = "FLUXBENCH_EXACT_BOOTSTRAP"  # "1": every Frechet resample exact, whatever it costs
CALIBRATION_RESAMPLES = 30
LINEAR_CHUNK = 256


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    std: float
    replicates: int
    level: float = 0.95
    exact: int | None = None  # resamples computed exactly when the rest were calibrated first-order ones

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrechetInf:
    """FD extrapolated to infinitely many generated rows: fit FD(n) = value + slope / n by least squares."""

    value: float
    slope: float
    r2: float
    sizes: list[int]
    distances: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def rng_for(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(label.encode())])


def percentile_interval(replicates, level: float = 0.95) -> Interval:
    values = np.asarray(replicates, dtype=np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high), float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    int(values.size), level)


def clip_counts(clips: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of `clips` items is drawn in one resample with replacement."""
    return np.bincount(rng.integers(0, clips, clips), minlength=clips).astype(np.float64)


def bootstrap_frechet(gen: np.ndarray, ref: np.ndarray, replicates: int, rng: np.random.Generator,
                      gen_clip_of_row: np.ndarray | None = None, ref_clip_of_row: np.ndarray | None = None,
                      device: str | None = None) -> Interval:
    """Interval of the Frechet distance; `*_clip_of_row` maps rows (frames) to clips, default one row each.
    `device` (e.g. "cuda") holds the rows and runs the covariances and the eigen steps there. Exact replicates
    or calibrated first-order ones beyond EXACT_FLOP_BUDGET (module docstring)."""
    _check_replicates(replicates)
    gen_rows, ref_rows = CentredRows(gen, device), CentredRows(ref, device)
    draws = [(clip_counts(_clip_count(gen, gen_clip_of_row), rng), clip_counts(_clip_count(ref, ref_clip_of_row), rng))
             for _ in range(replicates)]

    def exact(index: int) -> float:
        counts_gen, counts_ref = draws[index]
        return frechet_of_weighted_rows(gen_rows, _by_row(counts_gen, gen_clip_of_row), ref_rows,
                                        _by_row(counts_ref, ref_clip_of_row))

    def first_order():
        maps = transport_maps(gen_rows.weighted(np.ones(gen.shape[0]))[1], ref_rows.weighted(np.ones(ref.shape[0]))[1],
                              device)
        if maps is None:
            return None
        gen_sums, ref_sums = ClipSums(gen_rows, gen_clip_of_row, maps.a_to_b), ClipSums(ref_rows, ref_clip_of_row,
                                                                                         maps.b_to_a)
        values = []
        for start in range(0, replicates, LINEAR_CHUNK):
            chunk = draws[start:start + LINEAR_CHUNK]
            mean_gen, trace_gen, transported_gen = gen_sums.moments(np.stack([g for g, _ in chunk]))
            mean_ref, trace_ref, transported_ref = ref_sums.moments(np.stack([r for _, r in chunk]))
            diff = mean_gen - mean_ref
            values.append(np.einsum("ij,ij->i", diff, diff) + trace_gen + trace_ref - transported_gen - transported_ref)
        return np.concatenate(values)

    return _exact_then_first_order(exact, first_order, replicates, gen.shape[0] + ref.shape[0], gen.shape[1])


def exact_resample_count(replicates: int, rows: int, dim: int) -> int:
    """How many Frechet resamples are computed exactly: all of them while replicates x (rows x d^2 + 10 d^3)
    flops fit EXACT_FLOP_BUDGET, otherwise the CALIBRATION_RESAMPLES that calibrate the first-order rest."""
    if os.environ.get(EXACT_ENV) == "1" or replicates * (rows * dim**2 + 10 * dim**3) <= EXACT_FLOP_BUDGET:
        return replicates
    return min(replicates, CALIBRATION_RESAMPLES)


def _exact_then_first_order(exact: Callable[[int], float], first_order: Callable[[], np.ndarray | None],
                            replicates: int, rows: int, dim: int) -> Interval:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        count = exact_resample_count(replicates, rows, dim)
        values = [exact(index) for index in range(count)]
        if count < replicates:
            linear = first_order()
            if linear is None:  # a covariance without a Cholesky factor: no transport map, all exact
                values += [exact(index) for index in range(count, replicates)]
            else:
                values += _calibrated(np.asarray(values), linear[:count], linear[count:]).tolist()
                return replace(percentile_interval(values), exact=count)
    return percentile_interval(values)


def _calibrated(exact: np.ndarray, linear_of_exact: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """Replicates predicted from first-order ones by the least-squares line exact ~ a + b * first order fitted
    on the calibration resamples, plus that fit's residuals in turn (what the first order cannot see: the
    curvature's own spread), so the predicted replicates keep the exact ones' mean and variance."""
    design = np.stack([np.ones_like(linear_of_exact), linear_of_exact], axis=1)
    (offset, slope), *_ = np.linalg.lstsq(design, exact, rcond=None)
    residuals = exact - design @ np.array([offset, slope])
    return offset + slope * linear + residuals[np.arange(linear.size) % residuals.size]


def _clip_count(rows: np.ndarray, clip_of_row: np.ndarray | None) -> int:
    return rows.shape[0] if clip_of_row is None else int(clip_of_row.max()) + 1


def _by_row(counts: np.ndarray, clip_of_row: np.ndarray | None) -> np.ndarray:
    return counts if clip_of_row is None else counts[clip_of_row]


def _check_replicates(replicates: int) -> None:
    if replicates < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 replicates, got {replicates}")


def bootstrap_mean(per_item, replicates: int, rng: np.random.Generator) -> Interval:
    """Interval of a mean over items (per-pair KL, per-pair CLAP cosine)."""
    values = np.asarray(per_item, dtype=np.float64)
    return _replicate(lambda: float(clip_counts(values.size, rng) @ values / values.size), replicates)


def bootstrap_inception(logits: np.ndarray, replicates: int, rng: np.random.Generator, splits: int = 10,
                        shuffle: bool = True, seed: int = 2020) -> Interval:
    """Interval of the Inception Score mean over resampled generated clips.

    Each replicate is `inception_score(logits[drawn], splits, shuffle, seed)[0]`, computed without copying
    rows: the softmax is row-wise, so it is taken once, and a split's mean KL to its marginal q is
    mean(sum p log p) - sum q log q, where q and the first term are count-weighted sums over the original rows.
    """
    log_p = log_softmax_rows(logits)
    p = np.exp(log_p)
    negentropy = np.sum(p * log_p, axis=1)
    count = p.shape[0]
    order = np.random.RandomState(seed).permutation(count) if shuffle else np.arange(count)
    bounds = split_bounds(count, splits)
    split_of_position = np.repeat(np.arange(splits), np.diff(bounds))
    sizes = np.diff(bounds).astype(np.float64)[:, None]

    def one() -> float:
        drawn = rng.integers(0, count, count)[order]  # row drawn[order[k]] lands at position k
        weights = np.bincount(split_of_position * count + drawn, minlength=splits * count)
        weights = weights.reshape(splits, count).astype(np.float64) / sizes
        marginal = weights @ p
        kl = weights @ negentropy - np.sum(xlogy(marginal, marginal), axis=1)
        return float(np.mean(np.exp(kl)))

    return _replicate(one, replicates)


def frechet_inf(gen: np.ndarray, reference: GaussianStats, rng: np.random.Generator, points: int = 25,
                min_size: int | None = None) -> FrechetInf:
    """FAD-inf: FD of `points` resamples of n generated rows (n from min_size to N) against fixed reference
    statistics, extrapolated to n -> infinity (fadtk's method; here seeded)."""
    count = gen.shape[0]
    low = min(500, count // 2) if min_size is None else min_size
    sizes = np.unique(np.linspace(max(low, 2), count, points).astype(int))
    if sizes.size < 2:
        raise ValueError(f"FAD-inf needs at least 2 distinct sample sizes; {count} rows give {sizes.tolist()}")
    distances = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        for size in sizes:
            weights = np.bincount(rng.integers(0, count, size), minlength=count).astype(np.float64)
            distances.append(frechet_to_reference(gen, weights, reference, warn=False))
    design = np.stack([np.ones(sizes.size), 1.0 / sizes], axis=1)
    (value, slope), *_ = np.linalg.lstsq(design, np.asarray(distances), rcond=None)
    fitted = design @ np.array([value, slope])
    spread = np.sum((np.asarray(distances) - np.mean(distances)) ** 2)
    r2 = 1.0 - np.sum((np.asarray(distances) - fitted) ** 2) / spread if spread > 0 else 1.0
    return FrechetInf(float(value), float(slope), float(r2), sizes.tolist(), [float(x) for x in distances])


def _replicate(draw: Callable[[], float], replicates: int) -> Interval:
    _check_replicates(replicates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        return percentile_interval([draw() for _ in range(replicates)])


def bootstrap_frechet_to_stats(gen: np.ndarray, reference: GaussianStats, replicates: int, rng: np.random.Generator,
                               gen_clip_of_row: np.ndarray | None = None, device: str | None = None) -> Interval:
    """Interval of the Frechet distance to fixed reference statistics (--ref-stats): only clips are resampled.
    Same paths as `bootstrap_frechet` (rows prepared once, eigen steps on `device`, first order at scale)."""
    _check_replicates(replicates)
    rows = CentredRows(gen, device)
    draws = [clip_counts(_clip_count(gen, gen_clip_of_row), rng) for _ in range(replicates)]

    def exact(index: int) -> float:
        return frechet_of_weighted_rows(rows, _by_row(draws[index], gen_clip_of_row), reference)

    def first_order():
        maps = transport_maps(rows.weighted(np.ones(gen.shape[0]))[1], rows.on_device(reference.cov), device)
        if maps is None:
            return None
        sums = ClipSums(rows, gen_clip_of_row, maps.a_to_b)
        # The reference side is fixed: tr S_ref and tr(T_rg S_ref) = tr sqrt(S_gen S_ref) are constants.
        constant = float(np.trace(reference.cov)) - maps.trace
        values = []
        for start in range(0, replicates, LINEAR_CHUNK):
            mean, trace, transported = sums.moments(np.stack(draws[start:start + LINEAR_CHUNK]))
            diff = mean - reference.mean
            values.append(np.einsum("ij,ij->i", diff, diff) + trace - transported + constant)
        return np.concatenate(values)

    return _exact_then_first_order(exact, first_order, replicates, gen.shape[0], gen.shape[1])


def bootstrap_kad(terms, replicates: int, rng: np.random.Generator, chunk: int = 256) -> Interval:
    """Interval of KAD over clip resamples of both sets (`kad.KadTerms`), the bandwidth held at its full-sample
    value; each replicate draws the generated clips, then the reference clips."""
    if replicates < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 replicates, got {replicates}")
    values = []
    for start in range(0, replicates, chunk):
        draws = [(clip_counts(terms.gen_frames.size, rng), clip_counts(terms.ref_frames.size, rng))
                 for _ in range(min(chunk, replicates - start))]
        values.extend(terms.values(np.stack([g for g, _ in draws]), np.stack([r for _, r in draws])))
    return percentile_interval(values)
