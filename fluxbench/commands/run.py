"""`fluxbench run`: benchmark a model on a set (the offline demo protocol when nothing is named)."""

from __future__ import annotations

import argparse
import sys

from fluxbench.inputs import (existing_dir, existing_file, finite_float, output_dir, path_component, positive_int,
                              resample_count, seconds, seed_int, text_file)
from fluxbench.runner import OFFLINE_DEFAULT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=OFFLINE_DEFAULT["model"],
                        help="registered model (`fluxbench models`) or a trained-model folder; "
                             f"default {OFFLINE_DEFAULT['model']}")
    parser.add_argument("--set", dest="set_name", default=OFFLINE_DEFAULT["set"],
                        help=f"registered set (`fluxbench sets`); default {OFFLINE_DEFAULT['set']}")
    parser.add_argument("--metrics", help="comma-separated metric keys, e.g. fad,kl_softmax,is,clap (default: all the "
                                          "backbone offers)")
    parser.add_argument("--backbone", default="auto", choices=("auto", "paper", "descriptor"),
                        help="paper (VGGish/PANNs/CLAP, needs their weights), descriptor (weight-free, not FAD), "
                             "or auto (descriptor for demo, paper otherwise)")
    parser.add_argument("--limit", type=positive_int, help="first N items of the set only")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--duration", type=seconds, help="seconds per clip (default: the set's, else 10.24)")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    gen = parser.add_argument_group("generation (model settings; unset = the model's defaults)")
    gen.add_argument("--steps", type=positive_int)
    gen.add_argument("--guidance", type=finite_float)
    gen.add_argument("--preset", help="e.g. paper or official for FluxMusic")
    gen.add_argument("--solver", help="e.g. euler, heun, midpoint")
    gen.add_argument("--negative-prompt")
    gen.add_argument("--no-clamp-x0", dest="clamp_x0", action="store_const", const=False,
                     help="FluxMusic folders written by training: sample without clamping the clean-sample "
                          "estimates to the training latents' range")
    model = parser.add_argument_group("model loading")
    model.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    model.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                       help="auto, float32, bfloat16, float16")
    model.add_argument("--weights-dir", type=existing_dir, help="folder holding local copies of weights (see README)")
    model.add_argument("--checkpoint", type=existing_file,
                       help="a FluxMusic checkpoint file to use instead of the hub release")
    data = parser.add_argument_group("set data")
    data.add_argument("--captions", type=text_file,
                      help="caption file of the set (song_describer.csv; MusicCaps ships its own, this overrides it)")
    data.add_argument("--audio-dir", type=existing_dir, help="folder of the set's reference audio")
    data.add_argument("--subset", help="set subset (musiccaps: all 5521, audioset-eval 2858, balanced 1000; "
                                       "song-describer: valid, all); recorded in results.json")
    data.add_argument("--reference-crop", choices=["none", "start", "center"],
                      help="crop references to the clip length (default: the set's convention)")
    parser.add_argument("--bootstrap", type=resample_count, default=1000,
                        help="bootstrap resamples for 95%% CIs (0: none)")
    parser.add_argument("--out", type=output_dir, default="runs", help="runs folder (default runs/)")
    parser.add_argument("--name", type=path_component,
                        help="run folder name under --out (default <model name>-<set>-seed<seed>)")
    parser.add_argument("--no-anchors", action="store_true",
                        help="on labelled sets (demo), skip the noise / untrained / codec rows scored beside the model")
    parser.add_argument("--shard", help="i/K: generate only every K-th batch starting at i (score with a plain run)")


def main(args: argparse.Namespace) -> int:
    from fluxbench.runner import RunConfig, Runner, parse_shard, summary_table

    generation = {k: v for k, v in (("steps", args.steps), ("guidance", args.guidance), ("preset", args.preset),
                                    ("solver", args.solver), ("negative_prompt", args.negative_prompt),
                                    ("clamp_x0", args.clamp_x0))
                  if v is not None}
    model_options = {k: v for k, v in (("device", args.device), ("dtype", args.dtype),
                                       ("weights_dir", args.weights_dir), ("checkpoint", args.checkpoint))
                     if v is not None}
    set_options = {k: v for k, v in (("captions", args.captions), ("audio_dir", args.audio_dir),
                                     ("subset", args.subset)) if v is not None}
    config = RunConfig(
        model=args.model, set=args.set_name, metrics=args.metrics.split(",") if args.metrics else None,
        backbone=args.backbone, limit=args.limit, seed=args.seed, duration=args.duration,
        batch_size=args.batch_size, generation=generation, model_options=model_options, set_options=set_options,
        reference_crop=args.reference_crop, bootstrap=args.bootstrap, out=args.out, name=args.name,
        shard=parse_shard(args.shard) if args.shard else None, progress=not args.quiet and sys.stderr.isatty(),
        anchors=not args.no_anchors)
    runner = Runner(config)
    results = runner.run()
    if results is not None:
        print(summary_table(results))
        print(f"\nresults: {runner.run_dir / 'results.json'}")
    return 0
