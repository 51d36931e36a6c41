"""Cost of bootstrap intervals at MusicCaps size: the per-resample path as it was vs the prepared-rows path.

    python bench/bench_metrics_bootstrap.py [--rounds 3] [--clips 5521] [--device cuda]

One resample of each set-level metric of a MusicCaps-sized run (5,521 generated and 5,521 reference clips):
VGGish FAD (10 frames of 128-d per clip, frames resampled by clip), PANNs FD (one 2048-d vector per clip),
KL (a mean over pairs) and IS (527 logits per clip, 10 splits). "before" recomputes each replicate from
scratch as the library did (`frechet_as_before`, kept here: centre and scale every row into new arrays, a
general matrix product for the covariance; the Inception Score of a copied resample); "now" is what `bootstrap_frechet`
(rows prepared once, then `frechet_of_weighted_rows`) and `bootstrap_inception` do per replicate. The two
run interleaved (before, now, before, now, ...) on the same draws and are checked to agree to 1e-9
relative; the table gives the median seconds per resample and the projected time of 1,000 resamples.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np


def frechet_as_before(gen, gen_weights, ref, ref_weights) -> float:
    """One resample as the library computed it before (kept here for timing): each set's rows centred and scaled
    into new arrays, the covariance as a general matrix product, then the same eigenvalue step."""
    import torch

    from fluxbench.protocols.metrics.frechet import trace_sqrt_product

    stats = []
    for rows, weights in ((gen, gen_weights), (ref, ref_weights)):
        count = float(weights.sum())
        mean = weights @ rows / count
        scaled = torch.from_numpy(np.ascontiguousarray((rows - mean) * np.sqrt(weights)[:, None]))
        stats.append((mean, (scaled.mT @ scaled).numpy() / (count - 1)))
    (mean_a, cov_a), (mean_b, cov_b) = stats
    diff = mean_a - mean_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_product(cov_a, cov_b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one resample each)")
    parser.add_argument("--clips", type=int, default=5521, help="clips per set (MusicCaps: 5521)")
    parser.add_argument("--device", default=None, help="device of the prepared-rows path (default: cpu)")
    args = parser.parse_args()

    import torch

    from fluxbench.protocols.metrics.bootstrap import bootstrap_inception, bootstrap_mean, clip_counts
    from fluxbench.protocols.metrics.frechet import CentredRows, frechet_of_weighted_rows
    from fluxbench.protocols.metrics.inception import inception_score

    rng = np.random.default_rng(0)
    clips = args.clips
    print(f"Bootstrap cost per resample, {clips} generated + {clips} reference clips; median of {args.rounds} "
          f"interleaved rounds; torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), load average {os.getloadavg()[0]:.1f}")
    header = f"{'metric':28s} {'before s':>9s} {'now s':>8s} {'ratio':>6s} {'before 1000':>12s} {'now 1000':>9s}"
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0]

    def report(label, before, now):
        b, n = statistics.median(before), statistics.median(now)
        totals[0] += b
        totals[1] += n
        print(f"{label:28s} {b:9.3f} {n:8.3f} {b / n:6.2f} {b * 1000 / 60:9.1f} min {n * 1000 / 60:6.1f} min",
              flush=True)

    for label, frames, dims in (("FAD (VGGish frames, 128-d)", 10, 128), ("FD (PANNs, 2048-d)", 1, 2048)):
        mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)
        gen = rng.standard_normal((clips * frames, dims)) @ mixing
        ref = rng.standard_normal((clips * frames, dims)) @ mixing + 0.1
        owner = np.repeat(np.arange(clips), frames)
        prepared = CentredRows(gen, args.device), CentredRows(ref, args.device)  # once per bootstrap
        times = ([], [])
        for round_ in range(args.rounds):
            draws = np.random.default_rng(round_)
            weights = clip_counts(clips, draws)[owner], clip_counts(clips, draws)[owner]
            started = time.perf_counter()
            before = frechet_as_before(gen, weights[0], ref, weights[1])
            times[0].append(time.perf_counter() - started)
            started = time.perf_counter()
            now = frechet_of_weighted_rows(prepared[0], weights[0], prepared[1], weights[1])
            times[1].append(time.perf_counter() - started)
            if abs(now - before) > 1e-9 * abs(before):
                print(f"  {label}: resample {round_} differs: {before!r} before, {now!r} now")
        report(label, *times)

    per_pair = rng.exponential(size=clips)
    started = time.perf_counter()
    bootstrap_mean(per_pair, 100, np.random.default_rng(0))  # unchanged: one weighted sum per replicate
    per = 2 * (time.perf_counter() - started) / 100
    report("KL (x2; unchanged)", [per], [per])

    logits = rng.standard_normal((clips, 527)) * 3
    times = ([], [])
    for round_ in range(args.rounds):
        draws = np.random.default_rng(round_)
        started = time.perf_counter()
        before = [inception_score(logits[draws.integers(0, clips, clips)], 10, True, 2020)[0] for _ in range(4)]
        times[0].append((time.perf_counter() - started) / 4)
        started = time.perf_counter()
        now = bootstrap_inception(logits, 4, np.random.default_rng(round_))
        times[1].append((time.perf_counter() - started) / 4)
        expected = np.percentile(before, [2.5, 97.5])
        if not np.allclose([now.low, now.high], expected, rtol=1e-9, atol=0):
            print(f"  IS: round {round_} differs: {expected} before, {now.low, now.high} now")
    report("IS (527 logits, 10 splits)", *times)
    print("-" * len(header))
    b, n = totals
    print(f"{'all intervals of a run':28s} {b:9.3f} {n:8.3f} {b / n:6.2f} {b * 1000 / 60:9.1f} min "
          f"{n * 1000 / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
