"""Frechet distance: scipy sqrtm (the reference libraries' computation) vs fluxbench's float64 eigen path.

    python bench/bench_frechet.py [--dim 2048] [--rows 3000] [--repeats 3] [--threads N]

Uses golden set A's fd2048 case when it is present (the dim/rows defaults match it), else seeded synthetic
embeddings of the same shape. Prints the median wall time of each method from precomputed statistics and
from raw embeddings (methods run round-robin, so a busy shared machine slows all of them alike), the values,
their relative difference and the speedup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

# The golden arrays ship with the tests (override: $FLUXBENCH_GOLDEN), split into parts under 5 MB.
GOLDEN = Path(os.environ.get("FLUXBENCH_GOLDEN", Path(__file__).resolve().parents[1] / "tests" / "data"
                             / "reference" / "golden"))


def _golden_arrays() -> dict:
    merged = {}
    for part in sorted(GOLDEN.glob("metrics_a*.npz")):
        with np.load(part) as data:
            merged.update({name: data[name] for name in data.files})
    return merged


def _embeddings(dim: int, rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    arrays = _golden_arrays() if (dim, rows) == (2048, 3000) else {}
    if "fd2048_x1_codes" in arrays:
        scale = float(arrays["fd2048_scale"])
        return arrays["fd2048_x1_codes"] * scale, arrays["fd2048_x2_codes"] * scale, "golden set A fd2048"
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    a = rng.standard_normal((rows, dim)) @ mixing
    b = (rng.standard_normal((rows, dim)) * np.linspace(0.5, 1.5, dim)) @ mixing + 0.1
    return a, b, "synthetic (seed 0)"


def _interleaved_medians(functions: list, repeats: int) -> list[tuple[float, float]]:
    """Median time and value of each function, run round-robin so that all see the same machine load."""
    times: list[list[float]] = [[] for _ in functions]
    values: list[float] = [0.0] * len(functions)
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            values[index] = function()
            times[index].append(time.perf_counter() - started)
    return [(statistics.median(t), v) for t, v in zip(times, values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from fluxbench.protocols.metrics.frechet import (GaussianStats, frechet_distance,
                                                     frechet_distance_from_stats, reference_frechet_distance)

    if args.threads:
        torch.set_num_threads(args.threads)
    a, b, source = _embeddings(args.dim, args.rows)
    stats_a, stats_b = GaussianStats.of(a), GaussianStats.of(b)
    frechet_distance_from_stats(stats_a, stats_b)  # warm-up: torch/LAPACK initialisation is not the kernel

    def reference_from_embeddings():
        return reference_frechet_distance(a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0),
                                          np.cov(b, rowvar=False))

    rows = [
        ("scipy sqrtm (reference)", "statistics",
         lambda: reference_frechet_distance(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)),
        ("fluxbench eigen float64", "statistics", lambda: frechet_distance_from_stats(stats_a, stats_b)),
        ("np.mean/np.cov + sqrtm", "embeddings", reference_from_embeddings),
        ("fluxbench frechet_distance", "embeddings", lambda: frechet_distance(a, b)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = _interleaved_medians([function for _, _, function in rows], args.repeats)
    results = [(name, start, seconds, value) for (name, start, _), (seconds, value) in zip(rows, measured)]

    reference = {start: (seconds, value) for name, start, seconds, value in results if "sqrtm" in name}
    print(f"Frechet distance, d={args.dim}, N={args.rows} per set, {source}; median of {args.repeats} "
          f"interleaved runs; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    header = f"{'method':28s} {'from':11s} {'seconds':>9s} {'speedup':>8s} {'value':>20s} {'rel. diff':>10s}"
    print(header)
    print("-" * len(header))
    for name, start, seconds, value in results:
        ref_seconds, ref_value = reference[start]
        print(f"{name:28s} {start:11s} {seconds:9.3f} {ref_seconds / seconds:7.1f}x {value:20.12f} "
              f"{abs(value - ref_value) / abs(ref_value):10.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
