"""Published numbers (the paper's Table 3 and Table 4 rows) as reference rows beside measured ones.

The numbers live with the baselines, as data marked "reported": a module `fluxbench.models.baselines.reported`
with any of the attributes `REPORTED`, `TABLE3`, `TABLE4`, and/or files `reported*.json` in that package's
folder. Until any exists there are no reported rows and no error. Accepted shapes (a list of items, or a
dict with any of the lists "rows", "table3", "table4"):

    {"model": "MusicGen", "set": "musiccaps", "metrics": {"FAD": 4.5, "KL": 1.4, ...},
     "params": 1.5e9 | "1.5B", "hours": 20000 | "20k", "source": "FluxMusic, Table 3"}
    {"model": ..., "sets": {"musiccaps": {"fad": ...}, "song_describer": {...}}, ...}     (several sets at once)
    {"system": "MusicGen", "group": "expert", "ovl": 3.2, "rel": 3.4, ...}               (a Table 4 row)

Metric names may be keys ("kl_softmax") or table labels ("KL"); a metric value is a number or
{"value": ..., "ci95": [low, high]}. Items with "reported": false are skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from fluxbench.reports import ReportError
from fluxbench.reports.listening import ListeningRow, listening_row
from fluxbench.reports.table_model import Cell
from fluxbench.reports.tables import ModelRow, metric_key, normalise_set

BASELINES_PACKAGE = "fluxbench.models.baselines"
MODULE = f"{BASELINES_PACKAGE}.reported"
FILES = "reported*.json"
DATA_ATTRIBUTES = ("REPORTED", "TABLE3", "TABLE4")
_ROW_FIELDS = {"model", "set", "sets", "results", "metrics", "params", "parameters", "hours", "gflops", "source",
               "citation", "reported", "note"}


def packaged_data() -> list[tuple[Any, str]]:
    """(data, where it came from) for each source the baselines ship; empty while they carry no numbers."""
    found = []
    if importlib.util.find_spec(MODULE) is not None:
        module = importlib.import_module(MODULE)
        for name in DATA_ATTRIBUTES:
            if hasattr(module, name):
                found.append((getattr(module, name), f"{MODULE}.{name}"))
    package = importlib.import_module(BASELINES_PACKAGE)
    for path in sorted(Path(package.__file__).parent.glob(FILES)):
        found.append((_read_json(path), str(path)))
    return found


def load_reported_rows(path: str | os.PathLike | None = None) -> list[ModelRow]:
    """Table 3 reference rows from `path` (a JSON file) or, without it, from the baselines' data."""
    return _load(path)[0]


def load_reported_listening_rows(path: str | os.PathLike | None = None) -> list[ListeningRow]:
    """Table 4 reference rows, from the same sources as `load_reported_rows`."""
    return _load(path)[1]


def _load(path: str | os.PathLike | None) -> tuple[list[ModelRow], list[ListeningRow]]:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ReportError(f"{path}: no reported-results file")
        return parse_reported(_read_json(path), str(path))
    models: list[ModelRow] = []
    listening: list[ListeningRow] = []
    for data, where in packaged_data():
        more_models, more_listening = parse_reported(data, where)
        models += more_models
        listening += more_listening
    return models, listening


def _read_json(path: Path) -> Any:
    from fluxbench.inputs import read_text

    try:
        return json.loads(read_text(path, "reported-results file"))
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from None


def parse_reported(data: Any, where: str) -> tuple[list[ModelRow], list[ListeningRow]]:
    if isinstance(data, dict):
        unknown = set(data) - {"rows", "table3", "table4"}
        if unknown:
            raise ReportError(f"{where}: unexpected key(s) {sorted(unknown)}; expected a list of rows or a dict "
                              f"of 'rows', 'table3', 'table4' lists")
        items = [item for key in ("rows", "table3", "table4") for item in data.get(key, [])]
    elif isinstance(data, list):
        items = data
    else:
        raise ReportError(f"{where}: expected a list of reported rows, got {type(data).__name__}")
    models: dict[str, ModelRow] = {}
    listening: list[ListeningRow] = []
    for index, item in enumerate(items):
        at = f"{where}: item {index + 1}"
        if not isinstance(item, dict):
            raise ReportError(f"{at}: expected an object, got {type(item).__name__}")
        if item.get("reported", True) is False:
            continue
        source = str(item.get("source") or item.get("citation") or "")
        if "group" in item or "ovl" in item:
            listening.append(listening_row(item, at, reported=True, source=source))
            continue
        _merge_model_item(models, item, at, source)
    return list(models.values()), listening


def _merge_model_item(models: dict[str, ModelRow], item: dict[str, Any], at: str, source: str) -> None:
    label = item.get("model")
    if not isinstance(label, str) or not label:
        raise ReportError(f"{at}: 'model' (the name to show) is missing")
    per_set = item.get("sets", item.get("results"))
    if per_set is None:
        if "set" not in item:
            raise ReportError(f"{at}: give 'set' with 'metrics', or 'sets': {{set: {{metric: value}}}}")
        metrics = item.get("metrics", {k: v for k, v in item.items() if k not in _ROW_FIELDS})
        per_set = {item["set"]: metrics}
    if not isinstance(per_set, dict) or not all(isinstance(m, dict) for m in per_set.values()):
        raise ReportError(f"{at}: scores must map set -> {{metric: value}}")
    row = models.setdefault(label, ModelRow(label, {}, reported=True, source=source))
    for field, value in (("parameters", item.get("parameters", item.get("params"))), ("hours", item.get("hours")),
                         ("gflops", item.get("gflops"))):
        if value is not None:
            setattr(row, field, value)
    if source and source not in row.source.split("; "):
        row.source = f"{row.source}; {source}" if row.source else source
    for set_name, metrics in per_set.items():
        for name, value in metrics.items():
            row.scores[normalise_set(set_name), metric_key(name)] = _cell(value, f"{at}: {set_name}.{name}")


def _cell(value: Any, where: str) -> Cell:
    ci = None
    if isinstance(value, dict):
        value, ci = value.get("value"), value.get("ci95")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ReportError(f"{where}: expected a number, got {value!r}")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2):
        raise ReportError(f"{where}: ci95 must be [low, high], got {ci!r}")
    return Cell(value, *(float(v) for v in ci)) if ci else Cell(value)
