"""The results file: one JSON document per benchmark run, the single source of tables and plots.

Layout (schema_version 1):
{
  "schema": "fluxbench.results", "schema_version": 1, "created": ISO-8601 time,
  "model":    {"name", "family", "parameters" (registry fact, else counted from the model's configuration),
               "training" (a model folder's training record), "fingerprint", "weights": {component: sha256}},
  "set":      {"name", "subset", "items", "scored_items" (items scoring read a generated and a reference clip
               for), "missing_references": [ids], "unscored": {id: why}, "limit", "reference_crop" (as applied),
               "captions_file", "captions_sha256", "captions": {id: caption}},
  "settings": {"seed", "steps", "guidance", "duration", "batch_size", "preset", "solver", ...},
  "metrics":  {key: {"value": float, "ci95": [low, high] | null, "n": int, "backbone": str, ...}},
  "per_clip": {item_id: {key: float}},
  "environment": {"fluxbench", "fluxbench_commit" (null outside a git checkout), "python", "torch", "numpy",
                  "transformers", "diffusers" (null when not installed), "device", "platform"},
  "timing":   {"preflight_s", "load_model_s" (includes training a model on first use), "train_s" (the model
               folder's training), "generate_s" (all processes), "score_s", "wall_s", ["anchors_s"]}
}
Metric keys are those of the metric table (`fluxbench.protocols.metrics.table.RESULT_KEYS`, which the writers and
readers of results consult; this schema module imports no metric); a key a reader does not know is kept and
shown under its own name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError
from fluxbench.atomic import write_json

SCHEMA = "fluxbench.results"
SCHEMA_VERSION = 1
REQUIRED = ("model", "set", "settings", "metrics")


class ResultsError(FluxbenchError):
    pass


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> Path:
    document = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **results}
    _validate(document, str(path))
    return write_json(path, document, sort_keys=True)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise ResultsError(f"{path}: no results file")
    from fluxbench.inputs import read_json

    document = read_json(path, "results file", allow_nan=True)
    _validate(document, str(path))
    return document


def _validate(document: dict[str, Any], where: str) -> None:
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ResultsError(f"{where}: not a fluxbench results file (field 'schema' should be {SCHEMA!r})")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{where}: schema_version {document.get('schema_version')!r} is not supported "
                           f"(expected {SCHEMA_VERSION})")
    for field in REQUIRED:
        if not isinstance(document.get(field), dict):
            raise ResultsError(f"{where}: missing or malformed field {field!r}")
    for key, metric in document["metrics"].items():
        if not isinstance(metric, dict) or "value" not in metric:
            raise ResultsError(f"{where}: metrics.{key} must be an object with a 'value'")
        value = metric["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ResultsError(f"{where}: metrics.{key}.value must be a finite number (or null: not measured), "
                               f"got {value!r}")
    captions = document["set"].get("captions")
    if captions is not None and not (isinstance(captions, dict)
                                     and all(isinstance(v, str) for v in captions.values())):
        raise ResultsError(f"{where}: set.captions must be an object of item id -> caption text")
