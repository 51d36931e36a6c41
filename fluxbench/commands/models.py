"""`fluxbench models`: the model zoo at a glance."""

from __future__ import annotations

import argparse
import json
import math

from fluxbench import registry
from fluxbench.commands import aligned_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable listing (exact parameter counts)")
    parser.add_argument("--flops", action="store_true",
                        help="add the paper's Table-1 GFLOPs column (2 x thop MACs, 1024 music + 256 text tokens)")
    parser.add_argument("--family", help="only models of this family")


def _human(count: int | None) -> str:
    if count is None:
        return "-"
    # Truncated like the paper's Table 1 (473,971,232 -> 473.9M).
    return f"{math.floor(count / 1e5) / 10:.1f}M"


def main(args: argparse.Namespace) -> int:
    rows = [e for e in registry.entries("model") if not args.family or e.facts.get("family") == args.family]
    if args.json:
        print(json.dumps([{"name": e.name, "summary": e.summary, **e.facts} for e in rows], indent=2))
        return 0
    header = ["name", "family", "parameters", "rate (Hz)", "weights"]
    if args.flops:
        header.insert(3, "GFLOPs")
    table = []
    for e in rows:
        row = [e.name, e.facts.get("family", "-"), _human(e.facts.get("parameters")),
               str(e.facts.get("sample_rate", "-")), e.facts.get("weights", "-")]
        if args.flops:
            row.insert(3, f"{e.facts['gflops']:.1f}" if "gflops" in e.facts else "-")
        table.append(row)
    print(aligned_table(header, table))
    return 0
