"""`fluxbench score`: FAD / FD / KL / IS / CLAP / KAD between a folder of generated and a folder of reference audio."""

from __future__ import annotations

import argparse
from pathlib import Path

from fluxbench.commands import aligned_table
from fluxbench.inputs import existing_dir, existing_file, output_dir, output_file, resample_count, seed_int, text_file
from fluxbench.protocols.metrics.table import BACKBONE_CHOICES, FADTK_BACKBONES, NAMES, RESULT_KEYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gen", required=True, type=existing_dir, help="folder of generated audio")
    parser.add_argument("--ref", type=existing_dir,
                        help="folder of reference audio (needed for fd, kl, kad, and fad without --ref-stats)")
    parser.add_argument("--captions", type=text_file,
                        help="captions for the CLAP score: CSV/TSV with a file/id and a caption column, JSON "
                             "or JSON lines")
    parser.add_argument("--metrics", help=f"comma-separated subset of {','.join(NAMES)} "
                                          "(default: every metric the backbone and inputs allow)")
    parser.add_argument("--backbone", default="paper", choices=BACKBONE_CHOICES,
                        help="paper: VGGish FAD/KAD, PANNs FD/KL/IS, CLAP (real weights); descriptor: weight-free "
                             "signal statistics, reported as descriptor_* (not comparable to FAD); "
                             "clap-laion-music, MERT-v1-95M, encodec-emb: fadtk's FAD backbones (fad, kad), "
                             "reported as <backbone>_fad / <backbone>_kad")
    parser.add_argument("--backbone-weights", metavar="FOLDER",
                        help="local model folder for a fadtk backbone (default: its hub id via the weights dir, "
                             "environment variable or hub cache)")
    parser.add_argument("--kad-bandwidth", default="generated", metavar="RULE",
                        help="KAD kernel bandwidth: generated (median distance of the generated set, kadtk 1.1.0's "
                             "code; default), reference (kadtk's README) or a positive number")
    parser.add_argument("--ref-stats", metavar="FILE:BACKBONE",
                        help="FAD reference statistics in fadtk's .npz format instead of reference audio, e.g. "
                             "fma_pop.npz:clap-laion-music (a bare 'fma_pop' is found in an installed fadtk)")
    parser.add_argument("--panns", default="16k", choices=("16k", "32k"),
                        help="CNN14 checkpoint: 16k (audioldm_eval's default rate) or 32k")
    parser.add_argument("--clap-model", help="transformers CLAP model id or folder (default laion/larger_clap_music)")
    parser.add_argument("--clap-long-clips", default="first", choices=("first", "mean"),
                        help="clips over 10 s: first 10 s, or the mean embedding of consecutive 10 s windows")
    parser.add_argument("--bootstrap", type=resample_count, default=0, metavar="N",
                        help="seeded bootstrap resamples for 95%% intervals (0: none; 1000 is typical)")
    parser.add_argument("--seed", type=seed_int, default=0, help="bootstrap / FAD-inf seed")
    parser.add_argument("--fad-inf", action="store_true", help="also extrapolate FAD/FD to infinite sample size")
    parser.add_argument("--out", type=output_file, help="results JSON (default: <gen>.scores.json next to the folder)")
    parser.add_argument("--cache-dir", type=output_dir, help="embedding cache (default: $FLUXBENCH_CACHE/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    parser.add_argument("--weights-dir", type=existing_dir, help="folder holding the official weight files by name")
    parser.add_argument("--vggish-weights", type=existing_file, help="path to vggish-10086976.pth")
    parser.add_argument("--panns-weights", type=existing_file, help="path to the CNN14 checkpoint")
    parser.add_argument("--device", help="torch device for the backbones (default: cuda when available)")


def main(args: argparse.Namespace) -> int:
    from fluxbench.protocols.metrics.scoring import ScoreError, score_folders
    from fluxbench.atomic import write_json
    from fluxbench.weights import CACHE_DIR

    panns = f"panns-{args.panns}"
    weights = {name: path for name, path in (("vggish", args.vggish_weights), (panns, args.panns_weights)) if path}
    if args.clap_model and Path(args.clap_model).exists():  # a local folder; otherwise a hub id
        weights["clap"] = args.clap_model
    if args.backbone_weights:
        if args.backbone not in FADTK_BACKBONES:
            raise ScoreError(f"--backbone-weights is for {', '.join(FADTK_BACKBONES)}; "
                             f"--backbone {args.backbone} takes its own weight options")
        weights[args.backbone] = args.backbone_weights
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else CACHE_DIR / "embeddings"
    results = score_folders(args.gen, args.ref, metrics=args.metrics, backbone=args.backbone,
                            captions=args.captions, bootstrap=args.bootstrap, seed=args.seed, cache_dir=cache_dir,
                            fad_inf=args.fad_inf, panns=panns, clap_model=args.clap_model,
                            clap_long_clips=args.clap_long_clips, weights=weights, weights_dir=args.weights_dir,
                            device=args.device, progress=not args.quiet, kad_bandwidth=args.kad_bandwidth,
                            ref_stats=args.ref_stats)
    gen = Path(args.gen)
    out = Path(args.out) if args.out else gen.parent / f"{gen.resolve().name}.scores.json"
    write_json(out, results, sort_keys=True)
    print(format_table(results))
    print(f"\nper-clip values and provenance: {out}")
    return 0


def format_table(results: dict) -> str:
    rows = [("metric", "value", "95% CI", "n", "backbone")]
    for key, entry in results["metrics"].items():
        label = RESULT_KEYS[key].long_label if key in RESULT_KEYS else key
        value = f"{entry['value']:.4f}" + (f" (std {entry['std']:.3f})" if "std" in entry else "")
        ci = entry.get("ci95")
        rows.append((label, value, f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-", str(entry["n"]), entry["backbone"]))
    lines = aligned_table(rows[0], rows[1:]).splitlines()
    for metric, reason in results["skipped_metrics"].items():
        lines.append(f"{metric}: skipped ({reason})")
    skipped = results["skipped"]
    if skipped:
        lines.append(f"{len(skipped)} file(s) skipped, e.g. {skipped[0]['file']}: {skipped[0]['reason']}")
    return "\n".join(lines)
