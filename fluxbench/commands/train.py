"""`fluxbench train`: train FluxMusic with rectified flow (or the DDPM/DDIM ablation).

Rerunning the same command resumes from the newest checkpoint in --out. Multi-GPU:
    torchrun --nproc_per_node 8 -m fluxbench.cli train --manifest data.jsonl --out runs/small --size small
"""

from __future__ import annotations

import argparse
import json
import sys

from fluxbench import FluxbenchError
from fluxbench.inputs import (existing_dir, existing_file, finite_float, non_negative_float, non_negative_int,
                              output_dir, positive_float, positive_int, read_json, seconds, seed_int, text_file,
                              unit_interval)

# CLI option -> TrainConfig field, for options that map one to one.
_FIELDS = ["manifest", "out", "size", "init", "duration", "objective", "time_sampling", "time_location", "prediction",
           "steps", "global_batch", "micro_batch", "lr", "weight_decay", "warmup_steps", "grad_clip", "ema_decay",
           "ema_every", "null_prob", "precision", "seed", "save_every", "keep_checkpoints", "cache_dir", "weights_dir",
           "sample_steps", "guidance"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["demo"],
                        help="demo: a tiny model on the synthetic demo corpus, a few minutes on 2 CPU cores, "
                             "written to runs/demo-model/ (no download)")
    parser.add_argument("--config", metavar="JSON", type=text_file,
                        help="a training config file (e.g. a run's train.json); options given here override it")
    data = parser.add_argument_group("data and model")
    data.add_argument("--manifest", type=text_file,
                      help="JSON lines of {\"path\", \"caption\"[, \"captions\"]} (or the official "
                           "JSON list of {\"wav\", \"label\"})")
    data.add_argument("--out", type=output_dir, help="run folder: checkpoints, loss.csv and the trained-model folder")
    data.add_argument("--size", help="FluxMusic size: small, base, large, giant, giant_full, tiny (default small)")
    data.add_argument("--transformer", type=_json_object, metavar="JSON",
                      help="overrides of the size's config fields, e.g. '{\"depth\": 4}'")
    data.add_argument("--init", type=existing_file, help="start from this checkpoint's 'ema' weights (fine-tuning)")
    data.add_argument("--conditioner", choices=["t5-clap", "vocab"], help="text encoder (default t5-clap)")
    data.add_argument("--codec", choices=["audioldm2", "mel"], help="latent codec (default audioldm2)")
    data.add_argument("--duration", type=seconds, help="seconds per clip, cropped/padded (default 10.24)")
    data.add_argument("--cache-dir", type=output_dir,
                      help="where latents / text embeddings are cached (default OUT/cache)")
    data.add_argument("--weights-dir", type=existing_dir,
                      help="folder searched first for hub components (T5, CLAP, AudioLDM 2)")
    objective = parser.add_argument_group("objective")
    objective.add_argument("--objective", choices=["rectified_flow", "ddpm"],
                           help="rectified_flow (default) or ddpm (epsilon prediction, sampled with DDIM)")
    objective.add_argument("--time-sampling", choices=["logit_normal", "uniform"],
                           help="rectified-flow t distribution (default logit_normal, as the official code)")
    objective.add_argument("--time-location", type=finite_float,
                           help="location of the logit-normal t (default 0, as the official code; > 0 trains "
                                "more at high noise)")
    objective.add_argument("--prediction", choices=["velocity", "sample"],
                           help="what the rectified-flow network outputs: velocity (default, as the official "
                                "code) or the clean sample, read as the velocity (z_t - x) / t")
    objective.add_argument("--null-prob", type=unit_interval, help="per-encoder null-embedding dropout (default 0.1)")
    optimiser = parser.add_argument_group("optimisation")
    optimiser.add_argument("--steps", type=positive_int, help="optimiser steps (default 200000)")
    optimiser.add_argument("--global-batch", type=positive_int, help="clips per step over all processes (default 128)")
    optimiser.add_argument("--micro-batch", type=positive_int, help="clips per forward per process; the rest is "
                                                           "gradient accumulation (default 8)")
    optimiser.add_argument("--lr", type=non_negative_float, help="AdamW learning rate (default 1e-4)")
    optimiser.add_argument("--weight-decay", type=non_negative_float, help="AdamW weight decay (default 0)")
    optimiser.add_argument("--warmup-steps", type=non_negative_int, help="linear warm-up steps (default 0)")
    optimiser.add_argument("--grad-clip", type=positive_float, help="gradient-norm clip (default 1.0)")
    optimiser.add_argument("--ema-decay", type=unit_interval, help="EMA decay (default 0.99)")
    optimiser.add_argument("--ema-every", type=positive_int, help="EMA update interval in steps (default 100)")
    optimiser.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                           help="auto: bf16 autocast on GPU, fp32 on CPU")
    optimiser.add_argument("--seed", type=seed_int, help="seed of initialisation, data order and noise (default 0)")
    run = parser.add_argument_group("run")
    run.add_argument("--save-every", type=positive_int, help="checkpoint interval in steps (default 1000)")
    run.add_argument("--keep-checkpoints", type=positive_int, help="newest checkpoints kept (default 3)")
    run.add_argument("--sample-steps", type=positive_int,
                     help="sampling steps recorded in the model folder (default 50)")
    run.add_argument("--guidance", type=finite_float, help="guidance scale recorded in the model folder (default 3.5)")
    run.add_argument("--stop-after", type=positive_int, metavar="STEP",
                     help="stop after this step (checkpointed); rerun to continue")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def main(args: argparse.Namespace) -> int:
    from fluxbench.models.fluxmusic.train import TrainConfig, demo_config, read_losses, train

    values = {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
    if args.transformer is not None:
        values["transformer"] = args.transformer
    if args.conditioner:
        values["conditioner"] = {"kind": args.conditioner}
    if args.codec:
        values["codec"] = {"kind": args.codec}
    if args.config:
        config = TrainConfig.from_dict({**_read_config(args.config), **values})
    elif args.preset == "demo":
        config = demo_config(**values)
    else:
        missing = [f"--{name}" for name in ("manifest", "out") if name not in values]
        if missing:
            raise FluxbenchError(f"{' and '.join(missing)} required (or --preset demo)")
        config = TrainConfig.from_dict(values)
    # A bar only on a terminal: redrawn into a log file it is one endless line; plain step lines go there instead.
    out = train(config, device_choice=args.device, progress=not args.quiet and sys.stderr.isatty(),
                stop_after=args.stop_after)
    rows = read_losses(out) if (out / "loss.csv").is_file() else []
    if rows and not args.quiet:
        window = max(1, len(rows) // 10)
        first = sum(r["loss"] for r in rows[:window]) / window
        last = sum(r["loss"] for r in rows[-window:]) / window
        print(f"trained to step {int(rows[-1]['step'])}: loss {first:.4f} (first {window} steps) -> {last:.4f} "
              f"(last {window}); model folder {out}")
    return 0


def _json_object(text: str) -> dict:
    """An argparse type: a JSON object given inline (e.g. '{"depth": 4}')."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"depth\": 4}}', got {text!r}")
    return value


def _read_config(path: str) -> dict:
    values = read_json(path, "training config")
    if not isinstance(values, dict):
        raise FluxbenchError(f"{path}: expected a JSON object of training settings")
    return values
