"""One GPU check, about 5 minutes on one H100/H200: speed and memory of FluxMusic and the scoring backbones.

    python bench/gpu_check.py [--compile] [--sdpa flash] [--memory-sizes small giant] [--out bench/results/gpu.json]
    python bench/gpu_check.py --tiny --device cpu          # the same code path on tiny sizes (runs in the tests)

Random weights of the real sizes (no downloads), each part timed after warm-up with the device synchronised:
1. giant transformer forward in bf16 at batch 1 and 8, 1024 music + 256 text tokens: ms, tokens/s, achieved
   TFLOP/s (2 x the linear and attention-product multiply-accumulates of `FluxMusicConfig.macs`) and MFU
   against the card's dense bf16 peak (`--peak-tflops` for a card not in PEAK_BF16_TFLOPS);
2. 50-step Euler sampling with guidance 3.5 (both passes in one batch of 2B) at batch 4: steps/s, clips per
   hour of 10.24 s, MFU;
3. staged generation (`FluxMusicModel.generate`: text encoders alone, then the fp16 transformer, then VAE
   and vocoder) per size at batch 4: peak allocated memory against `bench_generation.py`'s estimate;
4. VGGish and PANNs CNN14 `embed` on 10 s clips (front-end included): clips/s;
5. the projected time of MusicCaps (5,521 clips) with giant: generation + embedding generated and reference.
`--compile` (torch.compile of the transformer) and `--sdpa flash` (the flash attention kernel only) are each
measured against the plain forward. Results go to `--out` as JSON and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generation import (SAMPLES, build_components, estimate, parameters, random_model,  # noqa: E402
                              random_transformer)
from common import forward_inputs, hub_configs, synchronise, timed  # noqa: E402

MUSICCAPS_CLIPS = 5521
CLIP_SECONDS = 10.24
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100 NVL": 835.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0,
                    "RTX 4090": 165.0, "RTX 6000 Ada": 364.0}


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in PEAK_BF16_TFLOPS if key in name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def attention_context(choice: str, device: torch.device):
    if choice == "flash" and device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    return nullcontext()


def forward_flops(config, batch: int, music_tokens: int, text_tokens: int) -> float:
    macs = config.macs(music_tokens, text_tokens, batch)
    return 2.0 * (macs["linear"] + macs["attention"])


def check_forward(args, config, device, peak, music_tokens, text_tokens) -> list[dict]:
    model = random_transformer(config, device, torch.bfloat16)
    variants = [("plain", model, "default")]
    if args.sdpa == "flash":
        variants.append(("flash SDPA", model, "flash"))
    if args.compile:
        variants.append(("torch.compile", torch.compile(model), args.sdpa))
    rows = []
    for batch in args.forward_batches:
        inputs = forward_inputs(config, batch, music_tokens, text_tokens, device, torch.bfloat16)
        flops = forward_flops(config, batch, music_tokens, text_tokens)
        for label, module, attention in variants:
            with torch.inference_mode(), attention_context(attention, device):
                seconds = timed(lambda: module(**inputs), device, args.repeats, warmup=2)
            achieved = flops / seconds / 1e12
            rows.append({"variant": label, "batch": batch, "ms": 1e3 * seconds,
                         "tokens_per_s": batch * (music_tokens + text_tokens) / seconds, "tflops": achieved,
                         "mfu": achieved / peak if peak else None})
    del model, variants
    return rows


def check_sampling(args, config, device, peak, music_tokens, text_tokens) -> dict:
    from fluxbench.models.fluxmusic.flow import RectifiedFlow

    model = random_transformer(config, device, torch.bfloat16)
    module = torch.compile(model) if args.compile else model
    batch = args.sampling_batch
    inputs = forward_inputs(config, batch, music_tokens, text_tokens, device, torch.bfloat16)
    cond = {key: inputs[key] for key in ("img_ids", "txt", "txt_ids", "y")}
    uncond = dict(cond, txt=torch.zeros_like(cond["txt"]), y=torch.zeros_like(cond["y"]))
    noise = inputs["x"].float()

    def run(steps):
        return RectifiedFlow().sample(module, noise, cond, uncond, guidance=3.5, steps=steps)

    with torch.inference_mode(), attention_context(args.sdpa, device):
        run(2)  # warm-up (and compilation)
        seconds = timed(lambda: run(args.steps), device, 1, warmup=0)
    per_step = forward_flops(config, 2 * batch, music_tokens, text_tokens)
    achieved = per_step * args.steps / seconds / 1e12
    del model, module
    return {"batch": batch, "steps": args.steps, "guidance": 3.5, "seconds": seconds,
            "steps_per_s": args.steps / seconds, "clips_per_hour": 3600 * batch / seconds, "tflops": achieved,
            "mfu": achieved / peak if peak else None}


def check_generation_memory(args, configs, device, sizes: dict) -> list[dict]:
    from fluxbench.models.fluxmusic.pipeline import GenerationError

    counts = {name: parameters(module) for name, module in build_components(configs).items()}
    rows = []
    for size, config in sizes.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        model = random_model(config, configs, device, args.memory_batch)
        started = time.perf_counter()
        try:
            model.generate(["a prompt"] * args.memory_batch, duration=args.duration, steps=2)
        except GenerationError:
            pass  # random weights may overflow into NaN; the memory and time were spent all the same
        synchronise(device)
        row = {"size": size, "batch": args.memory_batch, "seconds": time.perf_counter() - started}
        if device.type == "cuda":
            measured = torch.cuda.max_memory_allocated(device) / 1024**3
            estimated = estimate(size, args.memory_batch, configs, counts, False)["peak"] if not args.tiny else None
            row.update(measured_gib=measured, estimated_gib=estimated,
                       ratio=measured / estimated if estimated else None)
        else:
            row["measured_gib"] = None  # allocator statistics exist on CUDA only
        rows.append(row)
        del model
    return rows


def check_backbones(args, device) -> dict:
    from fluxbench.protocols.metrics.backbones.panns import CNN14_CONFIGS, Cnn14Backbone, build_cnn14
    from fluxbench.protocols.metrics.backbones.vggish import VGGishBackbone, VGGishConfig, build_vggish

    cnn14_config = CNN14_CONFIGS["panns-16k"]
    vggish_config = VGGishConfig()
    if args.tiny:
        cnn14_config = replace(cnn14_config, widths=(4, 4, 8, 8, 8, 16), classes=5)
        vggish_config = VGGishConfig(widths=(4, 4, 8, 8, 8, 8), hidden=16, embedding=8)
    backbones = {"vggish": VGGishBackbone(build_vggish(vggish_config), "random", "random", str(device)),
                 "panns-16k": Cnn14Backbone("panns-16k", build_cnn14(cnn14_config), cnn14_config, "random",
                                            "random", str(device))}
    clip = int(args.backbone_seconds * 16_000)
    waves = [np.random.default_rng(i).standard_normal(clip).astype(np.float32) * 0.1
             for i in range(args.backbone_clips)]
    out = {}
    for name, backbone in backbones.items():
        seconds = timed(lambda: backbone.embed(waves), device, 1, warmup=1)
        out[name] = {"clips": len(waves), "clip_seconds": args.backbone_seconds, "seconds": seconds,
                     "clips_per_s": len(waves) / seconds}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda (default when present) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes everywhere (a smoke run on any machine)")
    parser.add_argument("--compile", action="store_true", help="also time the transformer under torch.compile")
    parser.add_argument("--sdpa", choices=["default", "flash"], default="default",
                        help="flash: also time the forward with only the flash attention kernel")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, when not in the table")
    parser.add_argument("--forward-batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sampling-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--memory-sizes", nargs="+", default=["small", "base", "large", "giant"])
    parser.add_argument("--memory-batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    from fluxbench.models.fluxmusic.configs import SIZES

    if args.tiny:
        configs = hub_configs(tiny=True)
        config = replace(SIZES["tiny"], context_in_dim=configs["t5"].d_model, vec_in_dim=configs["clap"].hidden_size)
        sizes = {"tiny": config}
        music_tokens, text_tokens, args.duration = 64, 16, 0.32
        args.backbone_seconds, args.backbone_clips = 1.0, 2
    else:
        config, configs, sizes = SIZES["giant"], hub_configs(), {size: SIZES[size] for size in args.memory_sizes}
        music_tokens, text_tokens, args.duration = 1024, 256, SAMPLES / 16_000
        args.backbone_seconds, args.backbone_clips = CLIP_SECONDS, 32
    peak = peak_tflops(device, args.peak_tflops)
    started = time.perf_counter()
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
               "torch": torch.__version__, "tiny": args.tiny, "peak_bf16_tflops": peak,
               "options": {"compile": args.compile, "sdpa": args.sdpa}}
    print(f"GPU check on {results['device']} (torch {torch.__version__}; bf16 peak "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown'}){' with tiny sizes' if args.tiny else ''}", flush=True)

    results["forward"] = check_forward(args, config, device, peak, music_tokens, text_tokens)
    for row in results["forward"]:
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
        print(f"forward {row['variant']:14s} batch {row['batch']:2d}: {row['ms']:9.2f} ms  "
              f"{row['tokens_per_s']:10.0f} tokens/s  {row['tflops']:8.2f} TFLOP/s  MFU {mfu}", flush=True)
    results["sampling"] = sampling = check_sampling(args, config, device, peak, music_tokens, text_tokens)
    mfu = f"{100 * sampling['mfu']:.1f}%" if sampling["mfu"] is not None else "n/a"
    print(f"sampling {sampling['steps']} steps, batch {sampling['batch']}, guidance in one batch: "
          f"{sampling['steps_per_s']:.2f} steps/s, {sampling['clips_per_hour']:.0f} clips/hour, MFU {mfu}", flush=True)
    results["generation_memory"] = check_generation_memory(args, configs, device, sizes)
    for row in results["generation_memory"]:
        if row["measured_gib"] is None:
            print(f"staged generation {row['size']} batch {row['batch']}: {row['seconds']:.1f} s "
                  f"(memory: CUDA only)", flush=True)
        else:
            estimated = f"{row['estimated_gib']:.2f}" if row["estimated_gib"] else "n/a"
            print(f"staged generation {row['size']} batch {row['batch']}: peak {row['measured_gib']:.2f} GiB "
                  f"measured, {estimated} GiB estimated", flush=True)
    results["backbones"] = check_backbones(args, device)
    for name, row in results["backbones"].items():
        print(f"{name} embed: {row['clips_per_s']:.1f} clips/s ({row['clip_seconds']} s clips)", flush=True)
    embed_seconds = sum(2 * MUSICCAPS_CLIPS / row["clips_per_s"] for row in results["backbones"].values())
    generation_seconds = 3600 * MUSICCAPS_CLIPS / sampling["clips_per_hour"]
    results["musiccaps_projection"] = {
        "clips": MUSICCAPS_CLIPS, "generation_hours": generation_seconds / 3600,
        "embedding_minutes": embed_seconds / 60, "total_hours": (generation_seconds + embed_seconds) / 3600,
        "note": "sampling only (no VAE/vocoder decode); embeddings of generated and reference clips"}
    projection = results["musiccaps_projection"]
    print(f"MusicCaps ({MUSICCAPS_CLIPS} clips) with {'tiny' if args.tiny else 'giant'}: generation "
          f"{projection['generation_hours']:.2f} h + embedding {projection['embedding_minutes']:.1f} min", flush=True)
    results["wall_seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} ({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
