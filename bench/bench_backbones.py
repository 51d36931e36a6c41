"""Scoring backbones' forward as it ran before vs as `Cnn14Backbone` / `VGGishBackbone` run it now.

    python bench/bench_backbones.py [--clips 8] [--seconds 10] [--rounds 5]

CNN14 of the real 16 kHz size with random weights (BatchNorm statistics randomised too), a batch of 10 s clips:
"before" is the checkpoint layout with separate BatchNorm layers and out-of-place ReLU (how the forward ran
until now); "now" is what `Cnn14Backbone` runs (BatchNorm folded into the convolutions, in-place ReLU, and on
the CPU channels-last convolution weights). VGGish (no BatchNorm, in-place ReLU already) before and now differ
in the weight layout only. All run interleaved; the table gives the median seconds per batch, the ratio and
the largest output difference relative to the output scale.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch

from common import interleaved, machine_load, random_cnn14, with_checkpoint_layout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips per batch (Cnn14Backbone's batch is 8)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from fluxbench.protocols.metrics.backbones import placed_for_inference
    from fluxbench.protocols.metrics.backbones.vggish import build_vggish, log_mel_examples

    before = random_cnn14()
    now = placed_for_inference(copy.deepcopy(before).fold_batch_norms(), "cpu")
    with_checkpoint_layout(before)
    waves = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (args.clips, int(args.seconds * 16_000))).astype(np.float32) * 0.1)
    vggish = build_vggish().eval().requires_grad_(False)
    vggish_now = placed_for_inference(copy.deepcopy(vggish), "cpu")
    examples = torch.from_numpy(np.concatenate([log_mel_examples(w) for w in waves.numpy()]))[:, None]

    with torch.inference_mode():
        reference, _ = before(waves)
        folded, _ = now(waves)
        vggish_difference = float((vggish_now(examples) - vggish(examples)).abs().max() / vggish(examples).abs().max())
        times, _ = interleaved({"before": lambda: before(waves), "now": lambda: now(waves),
                                "vggish": lambda: vggish(examples), "vggish now": lambda: vggish_now(examples)},
                               args.rounds)
    b, n, v, vn = (statistics.median(times[k]) for k in ("before", "now", "vggish", "vggish now"))
    difference = float((folded - reference).abs().max() / reference.abs().max())
    print(f"Backbone forward, batch of {args.clips} x {args.seconds:g} s at 16 kHz; median of {args.rounds} "
          f"interleaved rounds; {machine_load()}")
    header = f"{'network':44s} {'s / batch':>10s} {'clips/s':>8s} {'ratio':>6s} {'max rel. diff':>14s}"
    print(header)
    print("-" * len(header))
    print(f"{'CNN14, BatchNorm layers, ReLU (before)':44s} {b:10.3f} {args.clips / b:8.2f} {1.0:6.2f} {'':>14s}")
    print(f"{'CNN14 as Cnn14Backbone runs it (now)':44s} {n:10.3f} {args.clips / n:8.2f} {b / n:6.2f} "
          f"{difference:14.1e}")
    print(f"{'VGGish network (before)':44s} {v:10.3f} {args.clips / v:8.2f} {1.0:6.2f} {'':>14s}")
    print(f"{'VGGish as VGGishBackbone runs it (now)':44s} {vn:10.3f} {args.clips / vn:8.2f} {v / vn:6.2f} "
          f"{vggish_difference:14.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
