"""Listening-test results: Table 4 (OVL / REL mean opinion scores per rater group) from JSON or CSV rows or
the human-evaluation analysis outputs, and the analysis's own rendering of its estimates.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fluxbench.reports import ReportError
from fluxbench.reports.table_model import Cell, Column, Table, TableRow

LISTENING_GROUPS = ("beginner", "expert")
# The two-way bootstrap needs at least two raters and two prompts to vary at all (one rating gives the
# zero-width [4.00, 4.00]), so at least 2 x 2 ratings; a mean below that is shown with its n, without an
# interval, and never marked best.
MIN_RATINGS_FOR_INTERVAL = 4
GROUND_TRUTH = "ground truth"  # the listening tests' name for the real recordings
ASPECT_LABELS = {"ovl": "OVL", "rel": "REL"}


@dataclass(frozen=True)
class ListeningRow:
    system: str
    group: str  # "expert" | "beginner"
    ovl: float
    rel: float
    ovl_ci95: tuple[float, float] | None = None
    rel_ci95: tuple[float, float] | None = None
    n: int | None = None  # ratings behind each mean
    reported: bool = False
    source: str = ""


def listening_row(data: dict[str, Any], where: str, reported: bool = False, source: str = "") -> ListeningRow:
    """A row from {system, group, ovl, ovl_ci95, rel, rel_ci95, n}; a CI is [low, high] or a ± half-width."""
    missing = [k for k in ("system", "group", "ovl", "rel") if data.get(k) in (None, "")]
    if missing:
        raise ReportError(f"{where}: listening row lacks {', '.join(missing)}; expected system, group, ovl, rel "
                          f"(and optionally ovl_ci95, rel_ci95, n)")
    group = str(data["group"]).strip().lower()
    if group not in LISTENING_GROUPS:
        raise ReportError(f"{where}: group {data['group']!r} is not one of {', '.join(LISTENING_GROUPS)}")
    values = {aspect: _number(data[aspect], f"{where}: {aspect}") for aspect in ASPECT_LABELS}
    intervals = {aspect: _interval(data.get(f"{aspect}_ci95"), values[aspect], f"{where}: {aspect}_ci95")
                 for aspect in ASPECT_LABELS}
    n = data.get("n")
    return ListeningRow(str(data["system"]), group, values["ovl"], values["rel"], intervals["ovl"], intervals["rel"],
                        int(_number(n, f"{where}: n")) if n not in (None, "") else None, reported, source)


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ReportError(f"{where}: expected a finite number, got {value!r}")
    return number


def _interval(value: Any, centre: float, where: str) -> tuple[float, float] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\[?\s*[^,;\s\]]+\s*[,;]\s*[^,;\s\]]+\s*\]?\s*", value):
        value = re.split(r"[,;]", value.strip(" []"))
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ReportError(f"{where}: expected [low, high] or a half-width, got {value!r}")
        low, high = (_number(v, where) for v in value)
        return low, high
    half = _number(value, where)
    return centre - half, centre + half


def load_listening(path: str | os.PathLike) -> list[ListeningRow]:
    """Listening-test rows from JSON or CSV.

    Accepted: a JSON list of rows (or {"rows": [...]}); a CSV with columns system, group, ovl, rel and optionally
    ovl_ci95, rel_ci95 (half-width or "low;high"), n; and the human-evaluation analysis outputs (human_eval.json
    with "estimates", or the long CSV with system, group, aspect, mean, ci_low, ci_high, n_ratings).
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no listening-test results file")
    from fluxbench.inputs import read_text

    text = read_text(path, "listening-test results")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}: not valid JSON ({error})") from None
        if isinstance(data, dict) and "estimates" in data:
            return _from_estimates(data["estimates"], str(path))
        records = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ReportError(f"{path}: expected a list of rows (or {{'rows': [...]}}) of system, group, ovl, rel")
    elif path.suffix.lower() == ".csv":
        records = list(csv.DictReader(io.StringIO(text)))
        if records and "aspect" in records[0]:
            return _from_estimates([{**r, "low": r.get("ci_low"), "high": r.get("ci_high")} for r in records],
                                   str(path))
    else:
        raise ReportError(f"{path}: expected a .json or .csv listening-test results file")
    rows = [listening_row(r, f"{path}: row {i + 1}", source=str(path)) for i, r in enumerate(records)]
    if not rows:
        raise ReportError(f"{path}: no listening-test rows")
    return rows


def _from_estimates(estimates: Any, where: str) -> list[ListeningRow]:
    """Per (system, group, aspect) estimates -> rows; the pooled group is left out (Table 4 splits by group)."""
    if not isinstance(estimates, list):
        raise ReportError(f"{where}: 'estimates' must be a list")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for i, e in enumerate(estimates):
        if not isinstance(e, dict) or not {"system", "group", "aspect", "mean"} <= set(e):
            raise ReportError(f"{where}: estimate {i + 1} needs system, group, aspect and mean")
        if str(e["group"]).lower() not in LISTENING_GROUPS:
            continue
        aspect = str(e["aspect"]).lower()
        row = merged.setdefault((str(e["system"]), str(e["group"]).lower()),
                                {"system": e["system"], "group": e["group"]})
        row[aspect] = e["mean"]
        if e.get("low") not in (None, "") and e.get("high") not in (None, ""):
            row[f"{aspect}_ci95"] = [e["low"], e["high"]]
        if e.get("n_ratings") not in (None, ""):
            row["n"] = e["n_ratings"]
    rows = [listening_row(r, f"{where}: {system}/{group}", source=where) for (system, group), r in merged.items()]
    if not rows:
        raise ReportError(f"{where}: no estimates for the groups {', '.join(LISTENING_GROUPS)}")
    return rows


def listening_table(rows: list[ListeningRow], decimals: int = 2) -> Table:
    """Table 4: one row per system, OVL and REL per rater group; higher is better."""
    duplicates = [k for k in {(r.system, r.group, r.reported) for r in rows}
                  if sum((r.system, r.group, r.reported) == k for r in rows) > 1]
    if duplicates:
        system, group, _ = duplicates[0]
        raise ReportError(f"listening results: system {system!r} has more than one {group} row")
    groups = [g for g in LISTENING_GROUPS if any(r.group == g for r in rows)]
    columns = [Column(f"{g}:{aspect}", label, g.capitalize(), lower_is_better=False, decimals=decimals,
                      min_n=MIN_RATINGS_FOR_INTERVAL)
               for g in groups for aspect, label in ASPECT_LABELS.items()]
    systems = list(dict.fromkeys((r.system, r.reported) for r in sorted(rows, key=lambda r: not r.reported)))
    table_rows = []
    for system, reported in systems:
        own = [r for r in rows if r.system == system and r.reported == reported]
        cells = {}
        for r in own:
            for aspect in ASPECT_LABELS:
                ci = getattr(r, f"{aspect}_ci95")
                if r.n is not None and r.n < MIN_RATINGS_FOR_INTERVAL:
                    ci = None  # too few ratings for an interval to mean anything
                cells[f"{r.group}:{aspect}"] = Cell(getattr(r, aspect), *(ci or (None, None)), n=r.n)
        table_rows.append(TableRow(system, cells, reported, "; ".join(sorted({r.source for r in own if r.source})),
                                   ranked=system.strip().lower() != GROUND_TRUTH))
    counts = sorted({r.n for r in rows if r.n is not None and not r.reported})
    notes = ["OVL: overall quality; REL: relevance to the caption; mean opinion scores on a 1-5 scale."]
    if not all(row.ranked for row in table_rows):
        notes.append("Ground truth (the real recordings) is shown for reference and not ranked.")
    if counts:
        notes.append(f"Ratings per mean: {counts[0]}" + (f" to {counts[-1]}." if len(counts) > 1 else ".")
                     + f" n: ratings behind a mean; below {MIN_RATINGS_FOR_INTERVAL} no interval and never bold.")
    return Table("table4", "Listening test (paper Table 4 layout)", "System", columns, table_rows, notes)


# ---- the human-evaluation analysis's own rendering ---------------------------------------------------------

class Estimate(Protocol):
    mean: float
    low: float | None
    high: float | None
    n_ratings: int
    n_raters: int
    n_prompts: int


class Estimates(Protocol):
    """What the analysis hands over: (system, group, aspect) -> estimate, in Table 4's layout."""

    title: str
    systems: list[str]
    groups: list[str]
    cells: dict[tuple[str, str, str], Estimate]
    notes: list[str]


def estimate_text(estimate: Estimate, with_ci: bool = True) -> str:
    interval = f" [{estimate.low:.2f}, {estimate.high:.2f}]" if with_ci and estimate.low is not None else ""
    return f"{estimate.mean:.2f}{interval} (n={estimate.n_ratings})"


def estimates_header(estimates: Estimates) -> list[str]:
    return ["System"] + [f"{g.capitalize()} {label}" for g in estimates.groups for label in ASPECT_LABELS.values()]


def estimates_rows(estimates: Estimates, with_ci: bool = True) -> list[list[str]]:
    out = []
    for system in estimates.systems:
        row = [system]
        for group in estimates.groups:
            for aspect in ASPECT_LABELS:
                cell = estimates.cells.get((system, group, aspect))
                row.append("-" if cell is None else estimate_text(cell, with_ci))
        out.append(row)
    return out


def estimates_markdown(estimates: Estimates, with_ci: bool = True) -> str:
    header = estimates_header(estimates)
    lines = [f"**{estimates.title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in estimates_rows(estimates, with_ci)]
    lines += [""] + [f"{note}" for note in estimates.notes]
    return "\n".join(lines).rstrip() + "\n"


def estimates_csv(estimates: Estimates) -> str:
    """Long format with every number: one line per system, group and aspect (`load_listening` reads it back)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["system", "group", "aspect", "mean", "ci_low", "ci_high", "n_ratings", "n_raters",
                     "n_prompts"])
    for system in estimates.systems:
        for group in estimates.groups:
            for aspect, label in ASPECT_LABELS.items():
                cell = estimates.cells.get((system, group, aspect))
                if cell is not None:
                    low, high = ("" if v is None else f"{v:.4f}" for v in (cell.low, cell.high))
                    writer.writerow([system, group, label, f"{cell.mean:.4f}", low, high,
                                     cell.n_ratings, cell.n_raters, cell.n_prompts])
    return buffer.getvalue()
