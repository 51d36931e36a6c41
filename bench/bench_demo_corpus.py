"""Demo corpus synthesis: one process (as before) against all cores, interleaved, on fresh folders.

    python bench/bench_demo_corpus.py [--clips 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fluxbench.protocols.sets.demo import DemoSet


def render_seconds(clips: int, workers: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="fluxbench-corpus-"))
    try:
        started = time.perf_counter()
        DemoSet("train", size=clips, root=root).render_missing(workers=workers)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    times: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(args.rounds):
        for workers in times:  # interleaved, so machine load affects both alike
            times[workers].append(render_seconds(args.clips, workers))
    one, many = statistics.median(times[1]), statistics.median(times[cores])
    print(f"\n{args.clips} demo clips of 2.56 s, median of {args.rounds} interleaved rounds\n")
    print("| workers | seconds | clips/s |\n|---|---|---|")
    for workers, value in ((1, one), (cores, many)):
        print(f"| {workers} | {value:.1f} | {args.clips / value:.1f} |")
    print(f"\nspeed-up with {cores} workers: {one / many:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
