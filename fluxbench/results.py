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
Metric keys are those of `METRICS` below; a key a reader does not know is kept and shown under its own name.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError
from fluxbench.atomic import write_json

SCHEMA = "fluxbench.results"
SCHEMA_VERSION = 1
REQUIRED = ("model", "set", "settings", "metrics")


@dataclass(frozen=True)
class MetricInfo:
    label: str  # column header, as in the paper's tables
    lower_is_better: bool
    description: str


METRICS: dict[str, MetricInfo] = {
    "fad": MetricInfo("FAD", True, "Frechet distance of VGGish frame embeddings (audioldm_eval convention)"),
    "fd": MetricInfo("FD", True, "Frechet distance of PANNs CNN14 clip embeddings"),
    "kl_softmax": MetricInfo("KL", True, "KL(reference || generated) of PANNs class posteriors, softmax"),
    "kl_sigmoid": MetricInfo("KL-sig", True, "the sigmoid variant of the KL above"),
    "is": MetricInfo("IS", False, "Inception Score over PANNs class posteriors (10 splits)"),
    "clap": MetricInfo("CLAP", False, "mean text-audio cosine similarity of CLAP embeddings"),
    "fad_inf": MetricInfo("FAD-inf", True, "FAD extrapolated to infinitely many generated clips"),
    "fd_inf": MetricInfo("FD-inf", True, "FD extrapolated to infinitely many generated clips"),
}
# The weight-free descriptor backbone reports the same computations under "descriptor_<key>"; the labels say
# "desc." and avoid the name FAD, so nobody reads them as the paper's metrics.
_DESCRIPTOR_LABELS = {"fad": "desc. FD (frames)", "fd": "desc. FD (clips)", "kl_softmax": "desc. KL",
                      "kl_sigmoid": "desc. KL-sig", "is": "desc. IS", "fad_inf": "desc. FD-inf (frames)",
                      "fd_inf": "desc. FD-inf (clips)"}
METRICS.update({f"descriptor_{key}": MetricInfo(label, METRICS[key].lower_is_better,
                                                f"{METRICS[key].description}, on the weight-free descriptor instead")
                for key, label in _DESCRIPTOR_LABELS.items()})
# Beyond the paper: KAD (kadtk) and fadtk's FAD backbones, reported as "<backbone>_fad" / "<backbone>_kad".
METRICS["kad"] = MetricInfo("KAD", True, "Kernel Audio Distance (kadtk convention) of VGGish frame embeddings")
METRICS["descriptor_kad"] = MetricInfo("desc. KAD", True, "KAD of the weight-free descriptor frames")
for _backbone, _short in (("clap-laion-music", "CLAP"), ("MERT-v1-95M", "MERT"), ("encodec-emb", "EnCodec")):
    METRICS[f"{_backbone}_fad"] = MetricInfo(f"FAD-{_short}", True, f"Frechet distance of fadtk's {_backbone} frames")
    METRICS[f"{_backbone}_fad_inf"] = MetricInfo(f"FAD-{_short}-inf", True, f"FAD-{_short} extrapolated to infinite N")
    METRICS[f"{_backbone}_kad"] = MetricInfo(f"KAD-{_short}", True, f"KAD of kadtk's {_backbone} rows")


class ResultsError(FluxbenchError):
    pass


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_json(path, data, sort_keys=True)


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> Path:
    document = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **results}
    _validate(document, str(path))
    return write_json_atomic(path, document)


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
