"""Score a folder of generated audio against a folder of references (the `fluxbench score` pipeline).

    score_folders(gen_dir, ref_dir=None, metrics=None, backbone="paper", captions=None, ids=None,
                  bootstrap=0, seed=0, cache_dir=None, fad_inf=False, panns="panns-16k", clap_model=None,
                  clap_long_clips="first", weights=None, weights_dir=None, device=None, progress=False,
                  kad_bandwidth="generated", ref_stats=None) -> dict

- metrics: names from the metric table, `table.py` ("fad", "fd", "kl", "is", "clap", "kad"), a list or a
  comma-separated string; None means every metric of the paper that the backbone offers and the inputs allow
  (CLAP only with captions, IS only with >= 10 clips, KL only for paired folders), with the reason for each one
  left out under "skipped_metrics"; fad and kad for fadtk's backbones.
- backbone: "paper" (VGGish FAD, PANNs CNN14 FD/KL/IS, CLAP; real weights resolved by fluxbench.weights) or
  "descriptor" (weight-free signal statistics; keys prefixed "descriptor_", never comparable to FAD), or one of
  fadtk's FAD backbones "clap-laion-music", "MERT-v1-95M", "encodec-emb" (FAD and KAD only; keys prefixed
  "<backbone>_", e.g. "clap-laion-music_fad").
- kad_bandwidth: "generated" (kadtk 1.1.0's code), "reference" (kadtk's README) or a number.
- ref_stats: "FILE:KEY" or (path, key): fadtk-format mean/covariance used as the FAD reference instead of
  reference audio (see reference_stats.py); metrics that need reference embeddings still need ref_dir.
- captions: a CSV path (columns file/id + caption) or a mapping from file name or id to prompt (CLAP score).
- ids: restrict to these item ids and pair by file stem (the runner's layout: <id>.wav beside <id>.flac);
  without ids, clips pair by file name, extension included, under audioldm_eval's 99 % rule.
- bootstrap: number of resamples for seeded percentile 95 % intervals of every set-level metric (0: none).
- fad_inf: also extrapolate FAD/FD to infinitely many generated samples ("fad_inf", "fd_inf").
- weights: optional {backbone name: local path}; weights_dir: a folder holding the official file names.

Returns a JSON-serialisable dict:
    {"schema": "fluxbench.score", "schema_version": 1, "frontend", "backbone", "backbones": {name: provenance},
     "metrics": {key: {"value", "ci95": [low, high] | None, "n", "backbone", "reference_name", ...}},
     "per_clip": {clip: {key: value}}, "generated"/"reference": {"dir", "files", "scored", "silent"},
     "pairing", "skipped": [{"set", "file", "reason"}], "skipped_metrics": {metric: reason},
     "warnings": [...], "settings": {...}}
Metric keys: fad, fd, kl_softmax, kl_sigmoid, is (with "std"), clap, kad, fad_inf, fd_inf; with the descriptor
backbone the same keys prefixed "descriptor_". "reference_name" is audioldm_eval's key for the same number.

Which clips are read and how they pair is `clips.py`; each metric's definition and requirements are `table.py`,
its computation `compute.py`. This module plans, embeds (through the cache) and collects.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping

import numpy as np

from fluxbench import __version__
from fluxbench.protocols.metrics.cache import EmbeddingCache
from fluxbench.protocols.metrics.clips import (CLIPPED_WARN_FRACTION, MIN_SECONDS, ClipSet, Pairing, ScoreError,
                                               audit_file, collect_clips, match_captions, pairing,
                                               pairing_summary, read_captions)
from fluxbench.protocols.metrics.compute import MetricInputs
from fluxbench.protocols.metrics.frechet import GaussianStats, UnreliableEstimateWarning
from fluxbench.protocols.metrics.frontend import FRONTEND
from fluxbench.protocols.metrics.table import (BACKBONE_CHOICES, FADTK_BACKBONES, IS_SEED, IS_SPLITS, NAMES,
                                               PAPER_METRICS, Metric, key_prefix, metric, sources)

log = logging.getLogger(__name__)

SCHEMA = "fluxbench.score"
SCHEMA_VERSION = 1
PANNS_CHOICES = ("panns-16k", "panns-32k")
EMBED_BATCH = 8
# The runner and the score command reach these through the scorer.
__all__ = ["ScoreError", "audit_file", "backbones_for", "read_captions", "score_folders"]


def score_folders(gen_dir, ref_dir=None, metrics=None, backbone: str = "paper", captions=None,
                  ids: Iterable[str] | None = None, bootstrap: int = 0, seed: int = 0, cache_dir=None,
                  fad_inf: bool = False, panns: str = "panns-16k", clap_model: str | None = None,
                  clap_long_clips: str = "first", weights: Mapping[str, str | os.PathLike] | None = None,
                  weights_dir=None, device: str | None = None, progress: bool = False,
                  kad_bandwidth: str | float = "generated", ref_stats=None) -> dict[str, Any]:
    """Set-level metrics (with intervals) and per-clip values for generated vs reference audio; see module doc."""
    if backbone not in BACKBONE_CHOICES:
        raise ScoreError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONE_CHOICES)}")
    if panns not in PANNS_CHOICES:
        raise ScoreError(f"unknown PANNs variant {panns!r}; expected one of {', '.join(PANNS_CHOICES)}")
    if bootstrap < 0 or bootstrap == 1:
        raise ScoreError(f"--bootstrap {bootstrap}: use 0 (no intervals) or at least 2 resamples")
    explicit = metrics is not None
    requested = _parse_metrics(metrics) if metrics is not None or backbone not in FADTK_BACKBONES else ["fad", "kad"]
    kad_bandwidth = _parse_kad_bandwidth(kad_bandwidth)
    stats_source, reference_stats = _reference_stats(ref_stats, backbone)
    id_list = list(ids) if ids is not None else None
    generated = collect_clips(gen_dir, "generated", id_list)
    reference = collect_clips(ref_dir, "reference", id_list) if ref_dir is not None else None
    caption_map = match_captions(captions, generated.clips) if captions is not None else None
    plan, skipped_metrics = _plan(requested, explicit, backbone, panns, generated, reference, caption_map,
                                  reference_stats is not None)

    backbones = _load_backbones(sorted({name for name, _ in plan.values()}), weights, weights_dir, device,
                                clap_model, clap_long_clips)
    cache = EmbeddingCache(cache_dir)
    sets = {"generated": generated, "reference": reference}
    needed = {(name, "generated") for name, _ in plan.values()}
    needed |= {(name, "reference") for name_of_metric, (name, _) in plan.items()
               if _reads_reference(name_of_metric, reference_stats is not None)}
    outputs = _embed_all(backbones, sets, needed, cache, progress)

    results: dict[str, dict[str, Any]] = {}
    per_clip: dict[str, dict[str, float]] = {clip.key: {} for clip in generated.clips}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreliableEstimateWarning)
        for name_of_metric, (name, output) in plan.items():
            definition = metric(name_of_metric)
            outcome = definition.function()(MetricInputs(
                definition, key_prefix(backbone), backbones[name], output, generated, outputs[(name, "generated")],
                reference=reference, ref_out=outputs.get((name, "reference")), reference_stats=reference_stats,
                stats_source=stats_source, captions=caption_map, bootstrap=bootstrap, seed=seed, extrapolate=fad_inf,
                kad_bandwidth=kad_bandwidth))
            results.update(outcome.entries)
            for clip, values in outcome.per_clip.items():
                per_clip[clip].update(values)
            notes += outcome.notes
    notes += sorted({str(w.message) for w in caught if issubclass(w.category, UnreliableEstimateWarning)})
    if generated.silent:
        notes.append(f"{len(generated.silent)} generated clip(s) are digital silence and were scored as such")
    clipped = generated.heavily_clipped()
    if clipped:
        worst = sorted(clipped, key=clipped.get, reverse=True)
        notes.append(f"{len(clipped)} generated clip(s) have over {CLIPPED_WARN_FRACTION:.1%} of their samples "
                     f"clipped at full scale: " + ", ".join(f"{k} ({clipped[k]:.1%})" for k in worst[:5])
                     + (" ..." if len(worst) > 5 else ""))
    for key, fraction in generated.clipped.items():
        if key in per_clip:
            per_clip[key]["clipped_fraction"] = fraction
    for note in notes:
        log.warning(note)

    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "fluxbench": __version__, "frontend": FRONTEND,
        "backbone": backbone,
        "backbones": {name: bb.provenance() for name, bb in backbones.items()},
        "metrics": results,
        "per_clip": {key: values for key, values in per_clip.items() if values},
        "generated": generated.summary(),
        "reference": reference.summary() if reference is not None else None,
        "pairing": pairing_summary(generated, reference, id_list is not None),
        "skipped": generated.skipped + (reference.skipped if reference is not None else []),
        "skipped_metrics": skipped_metrics,
        "warnings": notes,
        "settings": {"metrics": list(plan), "bootstrap": bootstrap, "seed": seed, "fad_inf": fad_inf,
                     "kad_bandwidth": kad_bandwidth if "kad" in plan else None,
                     "ref_stats": stats_source,
                     "panns": panns if backbone == "paper" else None, "is_splits": IS_SPLITS, "is_seed": IS_SEED,
                     "ids": id_list is not None, "min_seconds": MIN_SECONDS},
    }


# ---- options --------------------------------------------------------------------------------------------
def _parse_metrics(metrics) -> list[str]:
    if metrics is None:
        return list(PAPER_METRICS)
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in NAMES]
    if unknown or not names:
        raise ScoreError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; expected some of "
                         f"{', '.join(NAMES)}")
    return list(dict.fromkeys(names))


def _parse_kad_bandwidth(value) -> str | float:
    from fluxbench.protocols.metrics.kad import BANDWIDTH_RULES

    if isinstance(value, str) and value not in BANDWIDTH_RULES:
        try:
            value = float(value)
        except ValueError:
            raise ScoreError(f"--kad-bandwidth {value!r}: expected {' or '.join(BANDWIDTH_RULES)} or a positive "
                             "number") from None
    if not isinstance(value, str) and not (np.isfinite(value) and value > 0):
        raise ScoreError(f"--kad-bandwidth {value!r}: expected a positive number")
    return value


def _reference_stats(ref_stats, backbone: str) -> tuple[str | None, GaussianStats | None]:
    """(\"FILE:KEY\" as recorded, statistics) for --ref-stats, or (None, None)."""
    if ref_stats is None:
        return None, None
    from fluxbench.protocols.metrics.reference_stats import load_reference_stats, parse_ref_stats

    default_key = backbone if backbone in FADTK_BACKBONES else None
    path, key = parse_ref_stats(ref_stats, default_key) if isinstance(ref_stats, str) else ref_stats
    return f"{path}:{key}", load_reference_stats(path, key)


def backbones_for(metrics=None, backbone: str = "paper", panns: str = "panns-16k") -> list[str]:
    """The backbones that scoring `metrics` (None: all) would load, before any audio is read."""
    sources_of = sources(backbone, panns)
    return sorted({sources_of[m][0] for m in _parse_metrics(metrics) if m in sources_of})


def _plan(requested: list[str], explicit: bool, backbone: str, panns: str, generated: ClipSet,
          reference: ClipSet | None, captions: dict[str, str] | None,
          has_ref_stats: bool = False) -> tuple[dict[str, tuple[str, str]], dict]:
    """metric -> (backbone name, output name), and the metrics left out with why."""
    sources_of = sources(backbone, panns)
    paired = (pairing([c.key for c in generated.clips], [c.key for c in reference.clips])
              if reference is not None else None)
    plan, skipped = {}, {}
    for name in requested:
        reason = _why_not(metric(name), name in sources_of, backbone, generated, reference, paired, captions,
                          has_ref_stats)
        if reason is None:
            plan[name] = sources_of[name]
        elif explicit and not (metric(name).needs_pairs and "unpaired" in reason):
            raise ScoreError(f"{name}: {reason}")
        else:
            skipped[name] = reason
            log.warning("%s skipped: %s", name, reason)
    if not plan:
        raise ScoreError("no metric can be computed: " + "; ".join(f"{m}: {r}" for m, r in skipped.items()))
    return plan, skipped


def _why_not(definition: Metric, offered: bool, backbone: str, generated: ClipSet, reference: ClipSet | None,
             paired: Pairing | None, captions: dict[str, str] | None, has_ref_stats: bool) -> str | None:
    """Why the inputs do not allow this metric, or None when they do."""
    if not offered:
        return f"the {backbone} backbone has no {definition.name.upper()}; use --backbone paper"
    if definition.needs_reference and reference is None and not (definition.reference_stats_serve and has_ref_stats):
        if definition.reference_stats_serve:
            return "needs a reference folder or --ref-stats"
        return "needs a reference folder" + (" (reference statistics serve FAD only)" if has_ref_stats else "")
    if definition.needs_pairs and not paired.paired:
        return f"folders are unpaired ({paired.describe()})"
    if len(generated.clips) < definition.min_generated:
        return (f"needs at least {definition.min_generated} generated clips {definition.min_generated_why}, "
                f"got {len(generated.clips)}")
    if definition.needs_captions and not captions:
        return ("needs captions (--captions CSV)" if captions is None else
                "no caption matches a generated file name or id")
    return None


def _reads_reference(name: str, has_ref_stats: bool) -> bool:
    definition = metric(name)
    return definition.needs_reference and not (definition.reference_stats_serve and has_ref_stats)


# ---- backbones and embeddings ---------------------------------------------------------------------------
def _load_backbones(names: list[str], weights, weights_dir, device, clap_model, clap_long_clips) -> dict:
    from fluxbench.protocols.metrics.backbones import load_backbone, weight_sources
    from fluxbench.weights import resolve_all

    weights = dict(weights or {})
    requests = [(source, weights.get(name)) for name in names for source in weight_sources(name, clap_model)]
    paths = iter(resolve_all(requests, weights_dir)) if requests else iter(())
    return {name: load_backbone(name, next(paths) if weight_sources(name, clap_model) else None, device,
                                clap_long_clips=clap_long_clips) for name in names}


def _embed_all(backbones: dict, sets: dict, needed: set, cache: EmbeddingCache,
               progress: bool) -> dict[tuple[str, str], dict[str, dict[str, np.ndarray]]]:
    """Embeddings of every (backbone, role) in `needed`, through the cache. Backbones that read audio the same
    way (`Backbone.wave_source`) and miss the same clips share one decode and resample of each file; the next
    batch of files is decoded in a background thread while the networks run on the current one. Each backbone
    sees exactly the batches it would see alone, so the embeddings do not change."""
    outputs, plans = {}, {}
    for name, role in sorted(needed):
        backbone, clip_set = backbones[name], sets[role]
        found = {clip.key: cache.get(backbone.fingerprint, clip.digest) for clip in clip_set.clips}
        todo = [clip for clip in clip_set.clips if found[clip.key] is None]
        if todo:
            log.info("%s: embedding %d %s clip(s) (%d cached)", backbone.name, len(todo), clip_set.role,
                     len(clip_set.clips) - len(todo))
            group = (role, backbone.wave_source, tuple(clip.digest for clip in todo))
            plans.setdefault(group, (todo, []))[1].append(backbone)
        outputs[(name, role)] = found
    for (role, _, _), (todo, group) in plans.items():
        bar = _progress(len(todo), f"{'+'.join(b.name for b in group)} {role}", progress)
        chunks = [todo[start:start + EMBED_BATCH] for start in range(0, len(todo), EMBED_BATCH)]
        with ThreadPoolExecutor(max_workers=1) as reader:
            load = lambda chunk: [group[0].load_wave(clip.path) for clip in chunk]  # noqa: E731
            pending = reader.submit(load, chunks[0])
            for index, chunk in enumerate(chunks):
                waves = pending.result()
                if index + 1 < len(chunks):
                    pending = reader.submit(load, chunks[index + 1])
                for backbone in group:
                    for clip, arrays in zip(chunk, backbone.embed(waves)):
                        cache.put(backbone.fingerprint, clip.digest, arrays)
                        outputs[(backbone.name, role)][clip.key] = arrays
                bar.update(len(chunk))
        bar.close()
    return outputs


def _progress(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="clip", disable=not enabled or total == 0, leave=False)


