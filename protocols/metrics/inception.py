"""Inception Score over classifier logits, as audioldm_eval computes it (from torch-fidelity).

Rows are permuted with the legacy `np.random.RandomState(seed).permutation(N)` (seed 2020 in the reference,
stable across numpy versions), softmaxed in float64 and cut into `splits` contiguous chunks
[i*N//splits, (i+1)*N//splits). A chunk scores exp(mean over rows of KL(p(y|x) || p(y))) with p(y) the chunk's
mean; the result is the mean and population std (ddof 0) of the chunk scores. The value depends on the row
order (sorted file names in the reference), the seed and strongly on the split count.
"""

from __future__ import annotations

import numpy as np

from fluxbench import FluxbenchError


class InceptionInputError(FluxbenchError):
    pass


def inception_score(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the per-split Inception Scores of (N, classes) logits."""
    scores = inception_split_scores(logits, splits, shuffle, seed)
    return float(np.mean(scores)), float(np.std(scores))


def inception_split_scores(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> np.ndarray:
    log_p = log_softmax_rows(logits)
    bounds = split_bounds(log_p.shape[0], splits)
    if shuffle:
        log_p = log_p[np.random.RandomState(seed).permutation(log_p.shape[0])]
    return np.asarray([np.exp(_mean_kl_to_marginal(log_p[start:stop])) for start, stop in zip(bounds, bounds[1:])])


def split_bounds(count: int, splits: int) -> np.ndarray:
    """Row bounds of the contiguous splits [i*N//splits, (i+1)*N//splits), as the reference cuts them."""
    if splits < 1 or count < splits:
        raise InceptionInputError(f"Inception Score with {splits} splits needs at least {max(splits, 1)} clips, "
                                  f"got {count}")
    return np.arange(splits + 1) * count // splits


def log_softmax_rows(logits) -> np.ndarray:
    """Validated (N, classes) logits -> float64 log-probabilities per row."""
    return _log_softmax(_as_logits(logits))


def per_clip_inception_kl(logits) -> np.ndarray:
    """KL(p(y|x) || p(y)) of each clip against the marginal of the whole set (log IS = their mean)."""
    return _kl_to_marginal(log_softmax_rows(logits))


def _mean_kl_to_marginal(log_p: np.ndarray) -> float:
    return float(_kl_to_marginal(log_p).mean())


def _kl_to_marginal(log_p: np.ndarray) -> np.ndarray:
    p = np.exp(log_p)
    log_q = np.log(p.mean(axis=0, keepdims=True))
    return np.sum(p * (log_p - log_q), axis=1)


def _as_logits(logits) -> np.ndarray:
    rows = np.asarray(logits)
    if rows.ndim != 2:
        raise InceptionInputError(f"logits: expected a 2-D (clips, classes) array, got shape {rows.shape}")
    rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        raise InceptionInputError("logits contain NaN or infinite values")
    return rows


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
