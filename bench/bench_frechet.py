"""Frechet distance: scipy sqrtm (the reference libraries' computation) vs fluxbench's float64 eigen path.

    python bench/bench_frechet.py [--dim 2048] [--rows 3000] [--repeats 3] [--threads N]

Uses golden set A's fd2048 case when it is present (the dim/rows defaults match it), else seeded synthetic
embeddings of the same shape. Prints the median wall and CPU time of each method from precomputed statistics
and from raw embeddings (methods run round-robin, so a busy shared machine slows all of them alike), the
values, their relative difference and the speedups, and the load average before and after (other jobs on
the cores inflate absolute times; the ratios are the result).
"""

from __future__ import annotations

import argparse
import os
import platform
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


def _interleaved_medians(functions: list, repeats: int) -> list[tuple[float, float, float]]:
    """Median wall time, median CPU time and value of each function, run round-robin so that all see the same
    machine load."""
    times: list[list[float]] = [[] for _ in functions]
    cpu: list[list[float]] = [[] for _ in functions]
    values: list[float] = [0.0] * len(functions)
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started, started_cpu = time.perf_counter(), time.process_time()
            values[index] = function()
            times[index].append(time.perf_counter() - started)
            cpu[index].append(time.process_time() - started_cpu)
    return [(statistics.median(t), statistics.median(c), v) for t, c, v in zip(times, cpu, values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="threads of every BLAS/OpenMP pool (default: the libraries')")
    args = parser.parse_args()

    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so that the thread limit reaches it)
    import torch

    from fluxbench.protocols.metrics.frechet import (GaussianStats, frechet_distance,
                                                     frechet_distance_from_stats, reference_frechet_distance)

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
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
    results = [(name, start, *timing) for (name, start, _), timing in zip(rows, measured)]
    load_after = os.getloadavg()

    reference = {start: (seconds, cpu, value) for name, start, seconds, cpu, value in results if "sqrtm" in name}
    print(f"Frechet distance, d={args.dim}, N={args.rows} per set, {source}; median of {args.repeats} "
          f"interleaved runs; torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after (another job shares the cores when above 0: compare the ratios)")
    header = (f"{'method':28s} {'from':11s} {'wall s':>8s} {'ratio':>7s} {'CPU s':>8s} {'ratio':>7s} "
              f"{'value':>20s} {'rel. diff':>10s}")
    print(header)
    print("-" * len(header))
    for name, start, seconds, cpu, value in results:
        ref_seconds, ref_cpu, ref_value = reference[start]
        print(f"{name:28s} {start:11s} {seconds:8.3f} {ref_seconds / seconds:6.1f}x {cpu:8.3f} "
              f"{ref_cpu / cpu:6.1f}x {value:20.12f} {abs(value - ref_value) / abs(ref_value):10.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
