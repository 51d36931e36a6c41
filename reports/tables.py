"""The paper's tables built from results files and the registry (rendered by `render.py`).

Table 3: model, params, hours, then FAD / KL / IS / CLAP per evaluation set, measured runs beside reported rows.
Table 1: the FluxMusic sizes (params, blocks, hidden, heads, GFLOPs) from the registry.
Table 4, the listening test, is `listening.py`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fluxbench.protocols.metrics.table import RESULT_KEYS as METRICS
from fluxbench.reports import ReportError
from fluxbench.reports.table_model import Cell, Column, Table, TableRow
from fluxbench.results import load_results

SET_TITLES = {"musiccaps": "MusicCaps", "song_describer": "Song Describer"}

log = logging.getLogger("fluxbench.report")


# ---- Table 3: measured runs and reported rows ---------------------------------------------------------------

@dataclass
class ModelRow:
    """One model's scores on one or more sets, measured here or reported in a publication."""

    label: str
    scores: dict[tuple[str, str], Cell]  # (set, metric key) -> cell
    parameters: int | float | str | None = None
    hours: float | str | None = None  # hours of training audio
    gflops: float | None = None
    reported: bool = False
    source: str = ""


@dataclass(frozen=True)
class Run:
    label: str
    path: Path
    document: dict[str, Any]


def split_label(spec: str) -> tuple[str | None, str]:
    """"LABEL=PATH" -> (LABEL, PATH); a plain path (even one containing '=') -> (None, PATH)."""
    label, sep, path = spec.partition("=")
    if not sep or os.path.exists(spec) or not label:
        return None, spec
    return label, path


def load_runs(specs: Iterable[str]) -> list[Run]:
    """Results files or run folders; a folder without results.json stands for every run folder inside it.

    Sub-folders of such a folder that are not used are logged with why: a run that has not finished (run.json
    but no results.json yet) and a folder holding runs one level further down.
    """
    runs = []
    for spec in specs:
        label, path = split_label(spec)
        paths = [Path(path)]
        if paths[0].is_dir() and not (paths[0] / "results.json").is_file():
            for reason in skipped_run_folders(paths[0]):
                log.warning("skipped %s", reason)
            paths = sorted(paths[0].glob("*/results.json")) or paths
            if label and len(paths) > 1:
                raise ReportError(f"{spec}: a label names one run, but {path} holds {len(paths)}")
        for one in paths:
            document = load_results(one)
            runs.append(Run(label or str(document["model"].get("name") or one.stem), one, document))
    return runs


def skipped_run_folders(folder: Path) -> list[str]:
    """Each sub-folder of a runs folder that holds no results.json although it looks like a run, with why."""
    skipped = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not (p / "results.json").is_file()):
        if (sub / "run.json").is_file():
            skipped.append(f"{sub}: an unfinished run (run.json but no results.json; rerun it to finish)")
        elif any(sub.glob("*/results.json")):
            skipped.append(f"{sub}: holds runs one level further down; pass {sub} itself")
    return skipped


def normalise_set(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def set_title(name: str) -> str:
    return SET_TITLES.get(name, name)


def measured_rows(runs: list[Run]) -> list[ModelRow]:
    """One row per label, merging that label's runs on different sets; two runs on one set are an error."""
    from fluxbench import registry

    facts = {e.name: e.facts for e in registry.entries("model")}
    rows: dict[str, ModelRow] = {}
    origin: dict[tuple[str, str], Path] = {}
    for run in runs:
        model = run.document["model"]
        known = facts.get(model.get("name"), {})
        fact = lambda key: model.get(key) if model.get(key) is not None else known.get(key)  # noqa: E731
        row = rows.setdefault(run.label, ModelRow(run.label, {}, fact("parameters"), fact("training_hours"),
                                                  fact("gflops"), source=str(run.path)))
        set_name = normalise_set(run.document["set"].get("name", ""))
        if (run.label, set_name) in origin:
            raise ReportError(f"{run.path}: {run.label!r} on set {set_name!r} is also in "
                              f"{origin[run.label, set_name]}; label the runs apart as LABEL=PATH")
        origin[run.label, set_name] = run.path
        if row.source != str(run.path):
            row.source += f"; {run.path}"
        for key, metric in run.document["metrics"].items():
            row.scores[set_name, key] = _metric_cell(metric, f"{run.path}: metrics.{key}")
    return list(rows.values())


def _metric_cell(metric: dict[str, Any], where: str) -> Cell:
    value, ci = metric.get("value"), metric.get("ci95")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ReportError(f"{where}: 'value' must be a number or null, got {value!r}")
    if ci is not None and not (isinstance(ci, (list, tuple)) and len(ci) == 2
                               and all(isinstance(v, (int, float)) for v in ci)):
        raise ReportError(f"{where}: 'ci95' must be [low, high] or null, got {ci!r}")
    n = metric.get("n")
    low, high = (float(ci[0]), float(ci[1])) if ci else (None, None)
    return Cell(value, low, high, int(n) if n is not None else None)


def metric_key(name: str) -> str:
    """Canonical metric key for a key or a table label ("KL" -> kl_softmax, "Inception score" -> is)."""
    text = str(name).strip()
    if text in METRICS:
        return text
    lowered = text.lower()
    by_label = {info.label.lower(): key for key, info in METRICS.items()}
    aliases = {"kl": "kl_softmax", "inception_score": "is", "clap_score": "clap", "fad_vggish": "fad"}
    return by_label.get(lowered) or aliases.get(lowered.replace(" ", "_")) or lowered


def comparison_table(rows: list[ModelRow], sets: list[str] | None = None, metrics: list[str] | None = None,
                     decimals: int = 2, title: str | None = None) -> Table:
    """Table 3: reported rows first (as the paper lists its baselines), then the measured ones."""
    # Columns default to what was measured here (published numbers sit beside them, they do not add columns).
    basis = [r for r in rows if not r.reported] or rows
    chosen_sets = [normalise_set(s) for s in sets] if sets else list(dict.fromkeys(s for r in basis for s, _ in r.scores))
    present = {m for r in basis for _, m in r.scores}
    order = list(METRICS) + sorted(present - set(METRICS))
    chosen_metrics = [metric_key(m) for m in metrics] if metrics else [m for m in order if m in present]
    columns = [Column("parameters", "Params", style="count"), Column("hours", "Hours", style="hours")]
    for set_name in chosen_sets:
        for key in chosen_metrics:
            info = METRICS.get(key)
            columns.append(Column(f"{set_name}:{key}", info.label if info else key, set_title(set_name),
                                  info.lower_is_better if info else None, decimals=decimals))
    shown = {(s, m) for s in chosen_sets for m in chosen_metrics}
    # A published row with no number in any shown column (e.g. on the offline demo set) would be noise.
    ordered = [r for r in rows if r.reported and shown & set(r.scores)] + [r for r in rows if not r.reported]
    table_rows = []
    for row in ordered:
        cells = {"parameters": Cell(row.parameters), "hours": Cell(row.hours)}
        for set_name in chosen_sets:
            for key in chosen_metrics:
                if (set_name, key) in row.scores:
                    cells[f"{set_name}:{key}"] = row.scores[set_name, key]
        table_rows.append(TableRow(row.label, cells, row.reported, row.source))
    title = title or "Text-to-music results per evaluation set (paper Table 3 layout)"
    return Table("table3", title, "Model", columns, table_rows)


# ---- Table 1: model sizes from the registry -----------------------------------------------------------------

ARCHITECTURE_FACTS = ("parameters", "double_blocks", "single_blocks", "hidden", "heads", "gflops")


def architecture_table(family: str | None = "fluxmusic") -> Table:
    from fluxbench import registry

    columns = [Column("parameters", "Params", style="count"),
               Column("double_blocks", "Double blocks", style="integer"),
               Column("single_blocks", "Single blocks", style="integer"),
               Column("hidden", "Hidden", style="integer"), Column("heads", "Heads", style="integer"),
               Column("gflops", "GFLOPs", decimals=1)]
    rows = [TableRow(e.name, {key: Cell(e.facts[key]) for key in ARCHITECTURE_FACTS}, source="registry")
            for e in registry.entries("model")
            if all(key in e.facts for key in ARCHITECTURE_FACTS) and (family is None or e.facts.get("family") == family)]
    notes = ["GFLOPs: one forward at batch 1 over 1024 music and 256 text tokens (2 x multiply-accumulates of the "
             "linear layers and norms, as in the paper)."]
    return Table("table1", "Model sizes (paper Table 1 layout)", "Model", columns, rows, notes)
