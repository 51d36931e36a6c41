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

Rows may belong to clips (frames): the kernel is summed once into clip-by-clip totals, from which the set value,
every bootstrap resample (a clip drawn c times contributes its frames c times, as if the copies were
concatenated) and each clip's own KAD against the reference follow without touching the kernel again. Within a
set only the upper block triangle is evaluated, and the distances computed for the median are reused for the
kernel up to STORED_PAIRS distances; past that the median is found in two streaming passes (a histogram of the
squared distances, then an exact selection inside the bin that holds the median), so memory stays at the clip
totals and one block whatever N is. float64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from fluxbench.protocols.metrics.frechet import FrechetInputError, as_embeddings

SCALE = 100.0
GAMMA_EPS = 1e-8
BANDWIDTH_RULES = ("generated", "reference")
BLOCK_ENTRIES = 1 << 22  # distance entries evaluated per block (32 MB in float64)
STORED_PAIRS = 1 << 26  # up to this many distances (512 MB) the median set's blocks are kept for the kernel
MEDIAN_BINS = 1 << 20


class KadInputError(FrechetInputError):
    pass


@dataclass(frozen=True)
class KadResult:
    value: float
    bandwidth: float
    bandwidth_from: str  # "generated", "reference" or "fixed"


@dataclass
class KadTerms:
    """Kernel totals by clip: gen_gen[a, b] = sum of k over the frames of generated clips a and b (self-pairs
    included), likewise ref_ref and ref_gen; *_frames = rows per clip."""

    gen_gen: np.ndarray
    ref_ref: np.ndarray
    ref_gen: np.ndarray
    gen_frames: np.ndarray
    ref_frames: np.ndarray
    bandwidth: float
    bandwidth_from: str

    def values(self, gen_weights: np.ndarray | None = None, ref_weights: np.ndarray | None = None) -> np.ndarray:
        """KAD for each row of (B, clips) clip multiplicities (all ones when None)."""
        gen_w = np.ones((1, self.gen_frames.size)) if gen_weights is None else np.atleast_2d(gen_weights)
        ref_w = np.ones((1, self.ref_frames.size)) if ref_weights is None else np.atleast_2d(ref_weights)
        within_gen = _within(self.gen_gen, self.gen_frames, gen_w)
        within_ref = _within(self.ref_ref, self.ref_frames, ref_w)
        pairs = (ref_w @ self.ref_frames) * (gen_w @ self.gen_frames)
        cross = np.einsum("bi,bi->b", ref_w @ self.ref_gen, gen_w) / pairs
        return SCALE * (within_gen + within_ref - 2.0 * cross)

    def value(self) -> KadResult:
        return KadResult(float(self.values()[0]), self.bandwidth, self.bandwidth_from)

    def per_clip(self) -> np.ndarray:
        """Each generated clip's frames against the whole reference set (NaN for clips of one frame)."""
        frames = self.gen_frames.astype(np.float64)
        within_ref = _within(self.ref_ref, self.ref_frames, np.ones((1, self.ref_frames.size)))[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            within_clip = (np.diagonal(self.gen_gen) - frames) / (frames * (frames - 1.0))
            cross = self.ref_gen.sum(axis=0) / (self.ref_frames.sum() * frames)
        values = SCALE * (within_clip + within_ref - 2.0 * cross)
        return np.where(frames >= 2, values, np.nan)


def kernel_audio_distance(generated, reference, bandwidth: str | float = "generated") -> KadResult:
    """KAD between (N, d) generated and (M, d) reference embeddings (kadtk's calc_kernel_audio_distance)."""
    return kad_terms(generated, reference, bandwidth).value()


def kad_terms(generated, reference, bandwidth: str | float = "generated", gen_clip_of_row: np.ndarray | None = None,
              ref_clip_of_row: np.ndarray | None = None) -> KadTerms:
    """Validate, choose the bandwidth and sum the kernel by clip (`*_clip_of_row`: clip index per row, rows of
    a clip contiguous and clips in order; default one clip per row)."""
    gen = as_embeddings(generated, "generated embeddings")
    ref = as_embeddings(reference, "reference embeddings")
    if gen.shape[1] != ref.shape[1]:
        raise KadInputError(f"embedding sets differ in dimension: {gen.shape[1]} vs {ref.shape[1]}")
    gen_starts = _clip_starts(gen_clip_of_row, gen.shape[0], "generated")
    ref_starts = _clip_starts(ref_clip_of_row, ref.shape[0], "reference")
    rule = bandwidth if isinstance(bandwidth, str) else "fixed"
    if isinstance(bandwidth, str) and bandwidth not in BANDWIDTH_RULES:
        raise KadInputError(f"unknown KAD bandwidth rule {bandwidth!r}; expected one of {BANDWIDTH_RULES} "
                            "or a positive number")
    gen_blocks = _upper_blocks(gen, gen_starts)
    ref_blocks = _upper_blocks(ref, ref_starts)
    if rule == "fixed":
        h = float(bandwidth)
        if not np.isfinite(h) or h <= 0:
            raise KadInputError(f"KAD bandwidth {bandwidth!r}: expected a positive number")
    elif rule == "generated":
        h, stored = _median_bandwidth(gen, gen_starts)
        gen_blocks = stored if stored is not None else _upper_blocks(gen, gen_starts)
    else:
        h, stored = _median_bandwidth(ref, ref_starts)
        ref_blocks = stored if stored is not None else _upper_blocks(ref, ref_starts)
    gamma = gamma_of(h)
    return KadTerms(_within_totals(gen_blocks, gen_starts, gamma), _within_totals(ref_blocks, ref_starts, gamma),
                    _cross_totals(ref, ref_starts, gen, gen_starts, gamma), np.diff(gen_starts).astype(np.float64),
                    np.diff(ref_starts).astype(np.float64), h, rule)


def gamma_of(bandwidth: float) -> float:
    return 1.0 / (2.0 * bandwidth ** 2 + GAMMA_EPS)


def median_pairwise_distance(rows) -> float:
    """Lower median of the N(N-1)/2 Euclidean distances between distinct rows (torch.median's convention)."""
    rows = as_embeddings(rows, "embeddings")
    return _median_bandwidth(rows, np.arange(rows.shape[0] + 1))[0]


def _median_bandwidth(rows: np.ndarray, starts: np.ndarray) -> tuple[float, list[_Block] | None]:
    """The lower median distance, and the blocks when they were small enough to keep for the kernel."""
    count = rows.shape[0]
    if count < 2:
        raise KadInputError("the KAD bandwidth needs at least 2 rows")
    if count * (count - 1) // 2 <= STORED_PAIRS:
        blocks = list(_upper_blocks(rows, starts))
        return _lower_median_of_blocks(blocks), blocks
    return _streamed_lower_median(rows, starts), None


# ---- block sums -------------------------------------------------------------------------------------------
@dataclass
class _Block:
    first_clip: int  # clips [first_clip, last_clip) against clips [first_clip, end)
    last_clip: int
    first_row: int
    squared: np.ndarray  # rows of those clips x rows from first_row to the end


def _clip_starts(clip_of_row: np.ndarray | None, rows: int, role: str) -> np.ndarray:
    if clip_of_row is None:
        return np.arange(rows + 1)
    owner = np.asarray(clip_of_row)
    steps = np.diff(owner)
    if owner.shape != (rows,) or (rows and owner[0] != 0) or np.any((steps != 0) & (steps != 1)):
        raise KadInputError(f"{role}: clip index per row must count 0, 1, 2, ... with each clip's rows together")
    return np.concatenate([[0], np.flatnonzero(steps) + 1, [rows]])


def _upper_blocks(rows: np.ndarray, starts: np.ndarray) -> Iterator[_Block]:
    """Squared distances of whole-clip row blocks against themselves and every later row, one block at a time."""
    norms = np.einsum("ij,ij->i", rows, rows)
    clip, clips = 0, starts.size - 1
    while clip < clips:
        first_row = starts[clip]
        width = rows.shape[0] - first_row
        last = clip + 1
        while last < clips and (starts[last + 1] - first_row) * width <= BLOCK_ENTRIES:
            last += 1
        block = rows[first_row:starts[last]]
        squared = norms[first_row:starts[last], None] + norms[None, first_row:] - 2.0 * _gram(block, rows[first_row:])
        local = np.arange(block.shape[0])
        squared[local, local] = 0.0  # a row's distance to itself, exactly (kadtk's diagonal is 0 by construction)
        yield _Block(clip, last, int(first_row), squared)
        clip = last


def _lower_median_of_blocks(blocks: list[_Block]) -> float:
    squared = np.concatenate([_upper_values(block) for block in blocks])  # each unordered pair once
    if squared.size == 0:
        raise KadInputError("the KAD bandwidth needs at least 2 rows")
    middle = (squared.size - 1) // 2
    # sqrt is monotone: the median of squared distances is the squared median distance.
    return float(np.sqrt(max(np.partition(squared, middle)[middle], 0.0)))


def _upper_values(block: _Block) -> np.ndarray:
    local = np.arange(block.squared.shape[0])[:, None]
    return block.squared[np.arange(block.squared.shape[1])[None, :] > local]


def _streamed_lower_median(rows: np.ndarray, starts: np.ndarray) -> float:
    """Exact lower median distance without holding all distances: histogram the squared distances over
    [0, 4 max |x|^2] (a bound on any of them), then select within the bin holding the median."""
    count = rows.shape[0]
    middle = (count * (count - 1) // 2 - 1) // 2
    ceiling = 4.0 * float(np.einsum("ij,ij->i", rows, rows).max()) or 1.0
    scale = MEDIAN_BINS / ceiling

    def bins_of(values: np.ndarray) -> np.ndarray:
        return np.minimum((np.clip(values, 0.0, None) * scale).astype(np.int64), MEDIAN_BINS - 1)

    histogram = np.zeros(MEDIAN_BINS, dtype=np.int64)
    for block in _upper_blocks(rows, starts):
        histogram += np.bincount(bins_of(_upper_values(block)), minlength=MEDIAN_BINS)
    below = np.cumsum(histogram)
    target = int(np.searchsorted(below, middle, side="right"))
    rank = middle - (int(below[target - 1]) if target > 0 else 0)
    inside = []
    for block in _upper_blocks(rows, starts):
        values = _upper_values(block)
        inside.append(values[bins_of(values) == target])
    chosen = np.concatenate(inside)
    return float(np.sqrt(max(np.partition(chosen, rank)[rank], 0.0)))


def _within_totals(blocks: Iterable[_Block], starts: np.ndarray, gamma: float) -> np.ndarray:
    clips = starts.size - 1
    totals = np.zeros((clips, clips))
    for block in blocks:
        kernel = np.multiply(block.squared, -gamma)
        np.exp(kernel, out=kernel)
        row_edges = starts[block.first_clip:block.last_clip] - block.first_row
        col_edges = starts[block.first_clip:clips] - block.first_row
        summed = _sum_by_clip(_sum_by_clip(kernel, row_edges, 0), col_edges, 1)
        totals[block.first_clip:block.last_clip, block.first_clip:] = summed
        totals[block.first_clip:, block.first_clip:block.last_clip] = summed.T
    return totals


def _cross_totals(ref: np.ndarray, ref_starts: np.ndarray, gen: np.ndarray, gen_starts: np.ndarray,
                  gamma: float) -> np.ndarray:
    norms_ref = np.einsum("ij,ij->i", ref, ref)
    norms_gen = np.einsum("ij,ij->i", gen, gen)
    totals = np.zeros((ref_starts.size - 1, gen_starts.size - 1))
    clip, clips = 0, ref_starts.size - 1
    while clip < clips:
        last = clip + 1
        while last < clips and (ref_starts[last + 1] - ref_starts[clip]) * gen.shape[0] <= BLOCK_ENTRIES:
            last += 1
        rows = slice(ref_starts[clip], ref_starts[last])
        kernel = norms_ref[rows, None] + norms_gen[None, :] - 2.0 * _gram(ref[rows], gen)
        np.multiply(kernel, -gamma, out=kernel)
        np.exp(kernel, out=kernel)
        summed = _sum_by_clip(kernel, ref_starts[clip:last] - ref_starts[clip], 0)
        totals[clip:last] = _sum_by_clip(summed, gen_starts[:-1], 1)
        clip = last
    return totals


def _sum_by_clip(kernel: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Sums over each clip's rows (`edges`: first row of each clip along `axis`); one row per clip is a no-op."""
    if edges.size == kernel.shape[axis]:
        return kernel
    return np.add.reduceat(kernel, edges, axis=axis)


def _within(totals: np.ndarray, frames: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean kernel over ordered pairs of distinct positions in each weighted resample: all pairs of copies,
    less each position with itself (k = 1)."""
    rows = weights @ frames
    if np.any(rows < 2):
        raise KadInputError("KAD needs at least 2 rows on each side")
    return (np.einsum("bi,bi->b", weights @ totals, weights) - rows) / (rows * (rows - 1.0))


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # torch's MKL GEMM in float64 (numpy's BLAS here is slower on these shapes).
    import torch

    return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b)).mT).numpy()
