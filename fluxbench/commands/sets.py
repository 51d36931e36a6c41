"""`fluxbench sets`: the evaluation sets, their sizes and where their audio is expected."""

from __future__ import annotations

import argparse
import json

from fluxbench import registry
from fluxbench.commands import aligned_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable listing")


def main(args: argparse.Namespace) -> int:
    rows = [{"name": e.name, "summary": e.summary, **e.facts} for e in registry.entries("set")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["name", "items", "audio expected at", "summary"]
    table = [[r["name"], str(r.get("items", "-")), str(r.get("audio", "-")), r["summary"]] for r in rows]
    table += [[f"{prefix}:{'NAME_OR_PATH' if prefix == 'hf' else 'FILE'}", "-",
               "the dataset's audio column" if prefix == "hf" else "--audio-dir, or the table's audio column", summary]
              for prefix, (_, summary) in registry.SET_SOURCES.items()]
    print(aligned_table(header, table))
    print("\n--generated DIR scores audio made elsewhere: one file per item, named by item id (see README).")
    return 0
