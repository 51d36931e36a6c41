"""`fluxbench metrics`: the metrics (what each needs and which way is better) and the backbones behind them."""

from __future__ import annotations

import argparse
import json

from fluxbench import registry
from fluxbench.commands import aligned_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable listing")


def main(args: argparse.Namespace) -> int:
    metrics = [{"name": e.name, "summary": e.summary, **e.facts} for e in registry.entries("metric")]
    backbones = [{"name": e.name, "summary": e.summary, **e.facts} for e in registry.entries("backbone")]
    if args.json:
        print(json.dumps({"metrics": metrics, "backbones": backbones}, indent=2))
        return 0
    print(aligned_table(["metric", "better", "backbone", "summary"],
                        [[m["name"], "lower" if m.get("lower_is_better") else "higher", m.get("backbone", "-"),
                          m["summary"]] for m in metrics]))
    print()
    print(aligned_table(["backbone", "rate", "weights", "summary"],
                        [[b["name"], f"{b['sample_rate']} Hz" if b.get("sample_rate") else "-",
                          b.get("weights") or "none", b["summary"]] for b in backbones]))
    return 0
