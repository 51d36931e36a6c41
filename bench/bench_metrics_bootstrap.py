"""Default bootstrap intervals (1,000 resamples) of a MusicCaps-size run: all-exact replicates vs the shipped path.

    python bench/bench_metrics_bootstrap.py [--clips 5521] [--replicates 1000] [--exact-rounds 3] [--device cuda]
                                            [--threads 1]

Synthetic embeddings of a MusicCaps-sized run (5,521 generated and 5,521 reference clips): VGGish FAD (10
frames of 128-d per clip, frames resampled by clip), PANNs FD (one 2048-d vector per clip), KL (a mean over
pairs, two variants) and IS (527 logits per clip, 10 splits). "all exact" is the per-resample path every
replicate took before (`frechet_of_weighted_rows` on prepared rows), timed on `--exact-rounds` resamples
and projected to the replicate count; "now" is the whole interval as `score_folders` computes it (exact
calibration resamples plus calibrated first-order replicates beyond the flop budget, see
`fluxbench.protocols.metrics.bootstrap`). The two alternate per metric, so both see the same machine load;
the load average is printed before and after. The exact and calibrated intervals are printed side by side
for FAD (for FD the all-exact interval would take the projected time).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5521, help="clips per set (MusicCaps: 5521)")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap resamples (fluxbench run: 1000)")
    parser.add_argument("--exact-rounds", type=int, default=3, help="exact resamples timed per Frechet metric")
    parser.add_argument("--device", default=None, help="device of the Frechet paths (default: cpu)")
    parser.add_argument("--threads", type=int, help="threads of every BLAS/OpenMP pool (default: the libraries')")
    args = parser.parse_args()

    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so that the thread limit reaches it)
    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)

    from fluxbench.protocols.metrics.bootstrap import (bootstrap_frechet, bootstrap_inception, bootstrap_mean,
                                                       clip_counts, exact_resample_count, rng_for)
    from fluxbench.protocols.metrics.frechet_resampling import CentredRows, frechet_of_weighted_rows

    rng = np.random.default_rng(0)
    clips, replicates = args.clips, args.replicates
    started_load = os.getloadavg()
    print(f"Bootstrap intervals of a run with {clips} generated + {clips} reference clips, {replicates} resamples; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}); load average {started_load[0]:.1f} "
          f"{started_load[1]:.1f} {started_load[2]:.1f} at start (another job shares the cores when above 0)")
    header = f"{'metric':28s} {'exact/resample s':>16s} {'all exact':>10s} {'now':>8s} {'ratio':>6s}  exact resamples"
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0]

    def report(label, per_resample, now, exact_count):
        before = per_resample * replicates
        totals[0] += before
        totals[1] += now
        print(f"{label:28s} {per_resample:16.3f} {before / 60:6.1f} min {now:7.1f}s {before / now:6.1f}  "
              f"{exact_count}", flush=True)

    for label, frames, dims in (("FAD (VGGish frames, 128-d)", 10, 128), ("FD (PANNs, 2048-d)", 1, 2048)):
        mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)
        gen = rng.standard_normal((clips * frames, dims)) @ mixing
        ref = (rng.standard_normal((clips * frames, dims)) * np.linspace(0.6, 1.4, dims)) @ mixing + 0.05
        owner = np.repeat(np.arange(clips), frames) if frames > 1 else None
        prepared = CentredRows(gen, args.device), CentredRows(ref, args.device)
        exact_times = []
        for round_ in range(args.exact_rounds):
            draws = np.random.default_rng(round_)
            counts = clip_counts(clips, draws), clip_counts(clips, draws)
            weights = [c if owner is None else c[owner] for c in counts]
            tick = time.perf_counter()
            frechet_of_weighted_rows(prepared[0], weights[0], prepared[1], weights[1])
            exact_times.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        interval = bootstrap_frechet(gen, ref, replicates, rng_for(0, label), owner, owner, args.device)
        now = time.perf_counter() - tick
        report(label, statistics.median(exact_times), now,
               exact_resample_count(replicates, gen.shape[0] + ref.shape[0], dims))
        print(f"  interval [{interval.low:.6g}, {interval.high:.6g}], std {interval.std:.4g}")
        if frames > 1:
            from fluxbench.protocols.metrics import bootstrap

            budget, bootstrap.EXACT_FLOP_BUDGET = bootstrap.EXACT_FLOP_BUDGET, float("inf")
            try:
                tick = time.perf_counter()
                exact = bootstrap_frechet(gen, ref, replicates, rng_for(0, label), owner, owner, args.device)
                print(f"  all-exact interval [{exact.low:.6g}, {exact.high:.6g}], std {exact.std:.4g} "
                      f"({time.perf_counter() - tick:.0f} s)", flush=True)
            finally:
                bootstrap.EXACT_FLOP_BUDGET = budget

    per_pair = rng.exponential(size=clips)
    tick = time.perf_counter()
    for variant in ("softmax", "sigmoid"):
        bootstrap_mean(per_pair, replicates, rng_for(0, "kl_" + variant))
    now = time.perf_counter() - tick
    report("KL (softmax + sigmoid)", now / replicates, now, replicates)

    logits = rng.standard_normal((clips, 527)) * 3
    tick = time.perf_counter()
    bootstrap_inception(logits, replicates, rng_for(0, "is"))
    now = time.perf_counter() - tick
    report("IS (527 logits, 10 splits)", now / replicates, now, replicates)
    print("-" * len(header))
    before, now = totals
    ended_load = os.getloadavg()
    print(f"{'all intervals of a run':28s} {'':16s} {before / 60:6.1f} min {now:7.1f}s {before / now:6.1f}  "
          f"(now {now / 60:.1f} min)")
    print(f"load average {ended_load[0]:.1f} {ended_load[1]:.1f} {ended_load[2]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
