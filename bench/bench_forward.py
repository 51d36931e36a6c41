"""One FluxMusic transformer forward at the paper's size: 1024 music tokens + 256 text tokens.

    python bench/bench_forward.py [--size small] [--batch 1 2] [--device cpu|cuda] [--dtype float32|bfloat16]
                                  [--official-dir PATH]
    python bench/bench_forward.py --cast-vs-autocast [--dtype bfloat16|float16] [--device cuda]

With --official-dir pointing at a checkout of the official FluxMusic code (its model.py and modules/layers.py),
the official model is timed on the same machine with the same weights and inputs, interleaved with ours, and
the largest output difference is printed. FLOPs: 2 x (linear + attention-product MACs) of one forward.
--cast-vs-autocast times, interleaved, the half-precision forward as sampling ran it before (float32 weights
under autocast, which re-casts every weight on every forward when gradients are off) and as it runs now
(weights cast once by `cast_for_inference`), and prints the largest difference of their outputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from common import forward_inputs, interleaved
from fluxbench.models.fluxmusic import FluxMusicTransformer, get_config

MUSIC_TOKENS, TEXT_TOKENS = 1024, 256


def _official_model(directory: Path, config, state):
    sys.path.insert(0, str(directory))
    from model import Flux, FluxParams  # the official code, used only as a yardstick

    model = Flux(FluxParams(**config.to_dict()))
    model.load_state_dict(state)
    return model


def _inputs(config, batch, device, dtype):
    return forward_inputs(config, batch, MUSIC_TOKENS, TEXT_TOKENS, device, dtype)


def _time_shares(model, inputs) -> dict[str, float]:
    """Fractions of one forward's operator time in matrix products, the attention kernel and everything else."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] if torch.cuda.is_available()
                 else [ProfilerActivity.CPU]) as prof:
        model(**inputs)
    shares = {"matrix products": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        time_us = event.self_device_time_total if torch.cuda.is_available() else event.self_cpu_time_total
        kind = ("matrix products" if event.key in ("aten::addmm", "aten::mm", "aten::bmm") else
                "attention" if "scaled_dot_product" in event.key else "other")
        shares[kind] += time_us
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


def cast_vs_autocast(args) -> int:
    import copy

    from fluxbench.models.fluxmusic.transformer import cast_for_inference

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype != "float32" else torch.bfloat16
    config = get_config(args.size)
    torch.manual_seed(0)
    master = FluxMusicTransformer(config).eval().requires_grad_(False).to(device)
    cast = cast_for_inference(copy.deepcopy(master), dtype)

    def autocast_forward(inputs):
        with torch.autocast(device.type, dtype=dtype):
            return master(**inputs)

    print(f"FluxMusic-{args.size} forward in {str(dtype).removeprefix('torch.')}, {MUSIC_TOKENS} music + "
          f"{TEXT_TOKENS} text tokens, {args.device}, {torch.get_num_threads()} threads; median of {args.repeats} "
          f"interleaved runs")
    print(f"{'weights':<34} {'batch':>5} {'ms':>10} {'ratio':>6} {'max |diff|':>11}")
    with torch.inference_mode():
        for batch in args.batch:
            inputs = _inputs(config, batch, device, torch.float32)
            calls = {"float32 under autocast (before)": lambda: autocast_forward(inputs),
                     "cast once (now)": lambda: cast(**inputs)}
            outputs = {name: call() for name, call in calls.items()}  # warm-up
            times, _ = interleaved(calls, args.repeats, device)
            before = statistics.median(times["float32 under autocast (before)"])
            diff = float((outputs["cast once (now)"].float() - outputs["float32 under autocast (before)"].float())
                         .abs().max())
            for name in calls:
                seconds = statistics.median(times[name])
                print(f"{name:<34} {batch:>5} {seconds * 1e3:>10.1f} {before / seconds:>6.2f} {diff:>11.2e}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--official-dir", type=Path, help="checkout of the official FluxMusic code to compare with")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="also print where each implementation's time goes (matrix products, attention, rest)")
    parser.add_argument("--cast-vs-autocast", action="store_true",
                        help="half precision: autocast over float32 weights (before) vs weights cast once (now)")
    args = parser.parse_args()
    if args.cast_vs_autocast:
        return cast_vs_autocast(args)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    config = get_config(args.size)
    torch.manual_seed(0)
    ours = FluxMusicTransformer(config).eval()
    models = {"fluxbench": ours}
    if args.official_dir:
        models["official"] = _official_model(args.official_dir, config, ours.state_dict()).eval()
    for name in models:
        models[name] = models[name].to(device=device, dtype=dtype)

    rows = []
    with torch.inference_mode():
        for batch in args.batch:
            inputs = _inputs(config, batch, device, dtype)
            outputs = {name: model(**inputs) for name, model in models.items()}  # warm-up
            times, _ = interleaved({name: lambda model=model: model(**inputs) for name, model in models.items()},
                                   args.repeats, device)
            macs = config.macs(MUSIC_TOKENS, TEXT_TOKENS, batch)
            flops = 2 * (macs["linear"] + macs["attention"])
            for name in models:
                seconds = statistics.median(times[name])
                rows.append({
                    "impl": name, "size": args.size, "batch": batch, "device": str(device), "dtype": args.dtype,
                    "ms": seconds * 1e3, "tokens_per_s": batch * (MUSIC_TOKENS + TEXT_TOKENS) / seconds,
                    "gflops_per_s": flops / seconds / 1e9,
                    "max_abs_diff_vs_fluxbench": float((outputs[name].float() - outputs["fluxbench"].float()).abs().max()),
                })
            if "official" in models:
                speedup = statistics.median(times["official"]) / statistics.median(times["fluxbench"])
                rows[-2]["speedup_vs_official"] = speedup

    if args.profile:
        with torch.inference_mode():
            inputs = _inputs(config, args.batch[0], device, dtype)
            for name, model in models.items():
                print(f"{name}: " + ", ".join(f"{k} {v:.0%}" for k, v in _time_shares(model, inputs).items()))

    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    print(f"FluxMusic-{args.size} forward, {MUSIC_TOKENS} music + {TEXT_TOKENS} text tokens, {machine}")
    print(f"{'impl':<10} {'batch':>5} {'ms':>10} {'tokens/s':>10} {'GFLOP/s':>9} {'speedup':>8} {'max |diff|':>11}")
    for row in rows:
        speedup = f"{row['speedup_vs_official']:.2f}x" if "speedup_vs_official" in row else "-"
        print(f"{row['impl']:<10} {row['batch']:>5} {row['ms']:>10.1f} {row['tokens_per_s']:>10.0f} "
              f"{row['gflops_per_s']:>9.1f} {speedup:>8} {row['max_abs_diff_vs_fluxbench']:>11.2e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
