"""`fluxbench verify-backbones`: score fadtk's 23 sample clips with the installed backbone weights and compare
with fadtk's published per-song FAD against FMA-pop."""

from __future__ import annotations

import argparse

from fluxbench.inputs import existing_dir, positive_float
from fluxbench.protocols.metrics.table import FADTK_BACKBONES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbones", default=",".join(FADTK_BACKBONES),
                        help=f"comma-separated subset of {','.join(FADTK_BACKBONES)} (default: all)")
    parser.add_argument("--samples", metavar="DIR", type=existing_dir,
                        help="folder of fadtk's sample clips with samples_FAD_scores.csv inside or beside it "
                             "(default: the copy in an installed fadtk)")
    parser.add_argument("--stats", metavar="FILE", default="fma_pop",
                        help="fadtk statistics file (default: fma_pop.npz of an installed fadtk)")
    parser.add_argument("--weights-dir", help="folder holding the backbones' model folders by their hub names")
    parser.add_argument("--weights", action="append", default=[], metavar="BACKBONE=FOLDER",
                        help="a backbone's local model folder (repeatable)")
    parser.add_argument("--tolerance", type=positive_float, default=5.0, metavar="PERCENT",
                        help="fadtk's pass mark: max |difference| / mean of the computed values (default 5)")
    parser.add_argument("--device", help="torch device (default: cuda when available)")


def main(args: argparse.Namespace) -> int:
    from fluxbench.protocols.metrics.backbones import load_backbone, weight_sources
    from fluxbench.protocols.metrics.reference_stats import load_reference_stats, locate_stats_file
    from fluxbench.protocols.metrics.verify import (VerifyError, check_backbone, format_checks, locate_samples,
                                                    read_published)
    from fluxbench.weights import MissingWeightsError, resolve

    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    unknown = [n for n in names if n not in FADTK_BACKBONES]
    if unknown or not names:
        raise VerifyError(f"--backbones: unknown {', '.join(unknown) or '(none given)'}; expected some of "
                          f"{', '.join(FADTK_BACKBONES)}")
    explicit = {}
    for item in args.weights:
        name, sep, folder = item.partition("=")
        if not sep or name not in FADTK_BACKBONES:
            raise VerifyError(f"--weights {item!r}: expected BACKBONE=FOLDER with BACKBONE one of "
                              f"{', '.join(FADTK_BACKBONES)}")
        explicit[name] = folder
    clips, table = locate_samples(args.samples)
    stats_file = locate_stats_file(args.stats)
    # Every backbone's weights first, so one run names all the missing ones.
    folders, missing = {}, {}
    for name in names:
        try:
            folders[name] = resolve(weight_sources(name)[0], explicit.get(name), args.weights_dir)
        except MissingWeightsError as error:
            missing[name] = str(error)
    checks = []
    for name, folder in folders.items():
        backbone = load_backbone(name, folder, args.device)
        checks.append(check_backbone(backbone, clips, load_reference_stats(stats_file, name),
                                     read_published(table, name)))
    print(f"{len(clips)} clips from {clips[0].parent}; published values {table}; reference {stats_file}")
    print(format_checks(checks, missing, args.tolerance))
    if missing:
        return 2
    return 0 if all(check.fadtk_percent < args.tolerance for check in checks) else 1
