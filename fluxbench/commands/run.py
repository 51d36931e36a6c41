"""`fluxbench run`: benchmark a model on a set (the offline demo protocol when nothing is named)."""

from __future__ import annotations

import argparse
import sys

from fluxbench import FluxbenchError
from fluxbench.inputs import (existing_dir, existing_file, finite_float, output_dir, path_component, positive_int,
                              resample_count, seconds, seed_int, text_file)
from fluxbench.catalog import OFFLINE_DEFAULT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="registered model (`fluxbench models`, installed plugins included), a trained-model "
                             "folder, or module:factory / file.py:factory for your own TextToMusicModel; "
                             f"default {OFFLINE_DEFAULT['model']}")
    parser.add_argument("--generated", type=existing_dir,
                        help="score this folder of audio made elsewhere instead of a model: one file per item, "
                             "named by item id (<id>.wav, .flac, .mp3, ...)")
    parser.add_argument("--label", type=path_component,
                        help="the name a --generated folder gets in results and reports (default: the folder's)")
    parser.add_argument("--set", dest="set_name", default=OFFLINE_DEFAULT["set"],
                        help="registered set (`fluxbench sets`), hf:NAME_OR_PATH (a Hugging Face dataset), "
                             f"table:FILE (.csv/.tsv/.jsonl with --audio-dir), or module:factory; default "
                             f"{OFFLINE_DEFAULT['set']}")
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
    data.add_argument("--split", help="hf: sets: the dataset split (default: its only split)")
    data.add_argument("--id-column", help="hf: and table: sets: the item id column (default: detected, else row "
                                          "numbers)")
    data.add_argument("--caption-column", help="hf: and table: sets: the caption column (default: detected)")
    data.add_argument("--audio-column", help="hf: and table: sets: the audio column (default: detected; table: "
                                             "without one, <id>.<suffix> in --audio-dir)")
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
                                     ("subset", args.subset), ("split", args.split), ("id_column", args.id_column),
                                     ("caption_column", args.caption_column),
                                     ("audio_column", args.audio_column)) if v is not None}
    if args.generated and args.model is not None:
        raise FluxbenchError("--generated scores a folder of audio in place of a model; leave out --model")
    if args.label and not args.generated:
        raise FluxbenchError("--label names a --generated folder; a model is named by --model (or --name for the "
                             "run folder)")
    if args.generated and (generation or "checkpoint" in model_options):
        raise FluxbenchError("--generated: generation options (--steps, --guidance, --checkpoint, ...) do not apply "
                             "to a folder of audio")
    config = RunConfig(
        model=args.model or OFFLINE_DEFAULT["model"], set=args.set_name, generated=args.generated, label=args.label,
        metrics=args.metrics.split(",") if args.metrics else None,
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
