"""Kernel Audio Distance at N = 5,000 rows per set, d = 2,048 (PANNs-sized clip embeddings).

    python bench/bench_kad.py [--rows 5000] [--dims 2048] [--replicates 1000]

Rows: the median-distance bandwidth, the point estimate (bandwidth included), the bootstrap cost per resample
(both sets resampled, bandwidth fixed, from the kernel totals the point estimate leaves behind) and their total.
float64 throughout.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--replicates", type=int, default=1000)
    args = parser.parse_args()

    import torch

    from fluxbench.protocols.metrics.bootstrap import bootstrap_kad, rng_for
    from fluxbench.protocols.metrics.kad import kad_terms, median_pairwise_distance

    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((args.dims, args.dims)) / np.sqrt(args.dims)
    gen = rng.standard_normal((args.rows, args.dims)) @ mixing
    ref = rng.standard_normal((args.rows, args.dims)) @ mixing + 0.05

    def peak_gb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6

    timings = []
    started = time.perf_counter()
    median_pairwise_distance(gen)
    timings.append(("median bandwidth", time.perf_counter() - started, peak_gb(), ""))
    started = time.perf_counter()
    terms = kad_terms(gen, ref)
    result = terms.value()
    timings.append(("KAD (bandwidth + kernel sums)", time.perf_counter() - started, peak_gb(),
                    f"KAD {result.value:.4f}, bandwidth {result.bandwidth:.4f}"))
    started = time.perf_counter()
    bootstrap_kad(terms, args.replicates, rng_for(0, "kad"))
    total = time.perf_counter() - started
    timings.append((f"bootstrap, {args.replicates} resamples", total, peak_gb(),
                    f"{1000 * total / args.replicates:.2f} ms per resample"))

    print(f"KAD, {args.rows} generated x {args.rows} reference rows, {args.dims} dims, float64; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs")
    header = f"{'stage':32s} {'seconds':>9s} {'peak RSS GB':>12s}  note"
    print(header)
    print("-" * len(header))
    for label, seconds, peak, note in timings:
        print(f"{label:32s} {seconds:9.2f} {peak:12.2f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
