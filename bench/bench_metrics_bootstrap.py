"""Cost of one bootstrap resample of the Frechet distance at the paper's embedding sizes (to choose --bootstrap N).

    python bench/bench_metrics_bootstrap.py [--replicates 5]

Rows: VGGish FAD on MusicCaps-sized data (5,521 clips x 10 frames of 128-d, frames resampled by clip) and
PANNs FD (one 2048-d vector per clip) at 1,000 and 3,000 clips. Prints seconds per resample and the
projected time of 1,000 resamples.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=5)
    args = parser.parse_args()

    import torch

    from fluxbench.protocols.metrics.bootstrap import bootstrap_frechet, rng_for

    rng = np.random.default_rng(0)
    cases = [("VGGish FAD, 5521 clips x 10 frames", 5521, 10, 128), ("PANNs FD, 1000 clips", 1000, 1, 2048),
             ("PANNs FD, 3000 clips", 3000, 1, 2048)]
    print(f"Bootstrap cost per resample (generated and reference both resampled); mean of "
          f"{args.replicates}; torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    header = f"{'case':36s} {'rows':>7s} {'dims':>5s} {'s / resample':>13s} {'1000 resamples':>15s}"
    print(header)
    print("-" * len(header))
    for label, clips, frames, dims in cases:
        mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)
        gen = rng.standard_normal((clips * frames, dims)) @ mixing
        ref = rng.standard_normal((clips * frames, dims)) @ mixing + 0.1
        owner = np.repeat(np.arange(clips), frames) if frames > 1 else None
        started = time.perf_counter()
        bootstrap_frechet(gen, ref, args.replicates, rng_for(0, label), owner, owner)
        per = (time.perf_counter() - started) / args.replicates
        print(f"{label:36s} {clips * frames:7d} {dims:5d} {per:13.3f} {per * 1000 / 60:12.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
