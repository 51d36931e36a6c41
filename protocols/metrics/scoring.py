"""Score a folder of generated audio against a folder of references (the `fluxbench score` pipeline).

    score_folders(gen_dir, ref_dir=None, metrics=None, backbone="paper", captions=None, ids=None,
                  bootstrap=0, seed=0, cache_dir=None, fad_inf=False, panns="panns-16k", clap_model=None,
                  clap_long_clips="first", weights=None, weights_dir=None, device=None, progress=False,
                  kad_bandwidth="generated", ref_stats=None) -> dict

- metrics: names from METRICS ("fad", "fd", "kl", "is", "clap", "kad"), a list or a comma-separated string; None
  means every metric of the paper that the backbone offers and the inputs allow (CLAP only with captions, IS
  only with >= 10 clips, KL only for paired folders), with the reason for each one left out under
  "skipped_metrics"; fad and kad for fadtk's backbones.
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
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from fluxbench import FluxbenchError, __version__
from fluxbench.audio import AudioError, read_audio
from fluxbench.protocols.metrics.bootstrap import (bootstrap_frechet, bootstrap_frechet_to_stats,
                                                   bootstrap_inception, bootstrap_kad, bootstrap_mean, frechet_inf,
                                                   rng_for)
from fluxbench.protocols.metrics.cache import EmbeddingCache, content_hash
from fluxbench.protocols.metrics.clap_score import clap_cosines
from fluxbench.protocols.metrics.frechet import (GaussianStats, UnreliableEstimateWarning, frechet_distance,
                                                 frechet_to_reference)
from fluxbench.protocols.metrics.inception import inception_score, per_clip_inception_kl
from fluxbench.protocols.metrics.kad import kad_terms
from fluxbench.protocols.metrics.kl import kl_divergence
from fluxbench.protocols.metrics.preprocess import FRONTEND, list_audio, pairing

log = logging.getLogger(__name__)

SCHEMA = "fluxbench.score"
SCHEMA_VERSION = 1
METRICS = ("fad", "fd", "kl", "is", "clap", "kad")
PAPER_METRICS = ("fad", "fd", "kl", "is", "clap")  # the default set; KAD (beyond the paper) is asked for by name
FADTK_BACKBONES = ("clap-laion-music", "MERT-v1-95M", "encodec-emb")
BACKBONE_CHOICES = ("paper", "descriptor") + FADTK_BACKBONES
PANNS_CHOICES = ("panns-16k", "panns-32k")
IS_SPLITS = 10
IS_SEED = 2020
MIN_SECONDS = 0.1  # shorter files are broken generations, not music: skipped and counted
SILENCE_PEAK = 1.0 / 32768  # below one 16-bit step everywhere: digital silence (kept, counted, warned)
CLIP_LEVEL = 1.0 - 2.0 / 32768  # at full scale within 16-bit rounding: the sample was clipped
CLIPPED_WARN_FRACTION = 0.001  # clips with more clipped samples than this are named in a warning
EMBED_BATCH = 8
REFERENCE_NAMES = {"fad": "frechet_audio_distance", "fd": "frechet_distance",
                   "kl_softmax": "kullback_leibler_divergence_softmax",
                   "kl_sigmoid": "kullback_leibler_divergence_sigmoid", "is": "inception_score_mean"}
CAPTION_ID_COLUMNS = ("file", "filename", "file_name", "path", "id", "ytid", "name")
CAPTION_TEXT_COLUMNS = ("caption", "text", "prompt", "description")


class ScoreError(FluxbenchError):
    pass


@dataclass
class Clip:
    key: str  # pairing key and per-clip key: the file name, or the id in ids mode
    path: Path
    digest: str


@dataclass
class ClipSet:
    role: str
    folder: Path
    files: int
    clips: list[Clip] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    clipped: dict[str, float] = field(default_factory=dict)  # clip key -> fraction of samples at full scale

    def heavily_clipped(self) -> dict[str, float]:
        return {key: value for key, value in self.clipped.items() if value > CLIPPED_WARN_FRACTION}

    def summary(self) -> dict[str, Any]:
        fractions = list(self.clipped.values())
        return {"dir": str(self.folder), "files": self.files, "scored": len(self.clips), "silent": self.silent,
                "clipped_fraction": float(np.mean(fractions)) if fractions else 0.0,
                "clipped": self.heavily_clipped()}


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
    generated = _collect(gen_dir, "generated", id_list)
    reference = _collect(ref_dir, "reference", id_list) if ref_dir is not None else None
    caption_map = _captions_for(captions, generated.clips) if captions is not None else None
    plan, skipped_metrics = _plan(requested, explicit, backbone, panns, generated, reference, caption_map,
                                  reference_stats is not None)

    backbones = _load_backbones(sorted({name for name, _ in plan.values()}), weights, weights_dir, device,
                                clap_model, clap_long_clips)
    cache = EmbeddingCache(cache_dir)
    sets = {"generated": generated, "reference": reference}
    needed = {(name, "generated") for name, _ in plan.values()}
    needed |= {(name, "reference") for metric, (name, _) in plan.items()
               if metric in ("fd", "kl", "kad") or (metric == "fad" and reference_stats is None)}
    outputs = _embed_all(backbones, sets, needed, cache, progress)

    prefix = {"paper": "", "descriptor": "descriptor_"}.get(backbone, f"{backbone}_")
    results: dict[str, dict[str, Any]] = {}
    per_clip: dict[str, dict[str, float]] = {clip.key: {} for clip in generated.clips}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreliableEstimateWarning)
        for metric, (name, output) in plan.items():
            gen_out = outputs[(name, "generated")]
            ref_out = outputs.get((name, "reference"))
            if metric == "fad" and reference_stats is not None:
                _frechet_to_stats_metric(prefix, name, output, generated, gen_out, reference_stats, stats_source,
                                         bootstrap, seed, fad_inf, results, per_clip, notes, backbones[name].device)
            elif metric in ("fad", "fd"):
                _frechet_metric(metric, prefix, name, output, generated, reference, gen_out, ref_out, bootstrap,
                                seed, fad_inf, results, per_clip, notes, backbones[name].device)
            elif metric == "kad":
                _kad_metric(prefix, name, output, generated, reference, gen_out, ref_out, kad_bandwidth, bootstrap,
                            seed, results, per_clip, notes)
            elif metric == "kl":
                _kl_metric(prefix, name, generated, reference, gen_out, ref_out, bootstrap, seed, results, per_clip)
            elif metric == "is":
                _is_metric(prefix, name, generated, gen_out, bootstrap, seed, results, per_clip)
            else:
                _clap_metric(backbones[name], generated, gen_out, caption_map, bootstrap, seed, results, per_clip,
                             notes)
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
        "pairing": _pairing_summary(generated, reference, id_list is not None),
        "skipped": generated.skipped + (reference.skipped if reference is not None else []),
        "skipped_metrics": skipped_metrics,
        "warnings": notes,
        "settings": {"metrics": list(plan), "bootstrap": bootstrap, "seed": seed, "fad_inf": fad_inf,
                     "kad_bandwidth": kad_bandwidth if "kad" in plan else None,
                     "ref_stats": stats_source,
                     "panns": panns if backbone == "paper" else None, "is_splits": IS_SPLITS, "is_seed": IS_SEED,
                     "ids": id_list is not None, "min_seconds": MIN_SECONDS},
    }


# ---- inputs ---------------------------------------------------------------------------------------------
def _parse_metrics(metrics) -> list[str]:
    if metrics is None:
        return list(PAPER_METRICS)
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ScoreError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; expected some of "
                         f"{', '.join(METRICS)}")
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


def _collect(folder, role: str, ids: list[str] | None) -> ClipSet:
    files = list_audio(folder, role)
    if ids is not None:
        wanted = set(ids)
        files = [f for f in files if f.stem in wanted]
    clip_set = ClipSet(role, Path(folder), len(files))
    seen: dict[str, Path] = {}
    for path in files:
        key = path.stem if ids is not None else path.name
        if key in seen:
            raise ScoreError(f"{role} folder {folder}: {seen[key].name} and {path.name} have the same id {key!r}")
        seen[key] = path
        reason, clipped = audit_file(path)
        if reason == "silent":
            clip_set.silent.append(key)
        elif reason:
            clip_set.skipped.append({"set": role, "file": path.name, "reason": reason})
            continue
        clip_set.clipped[key] = clipped
        clip_set.clips.append(Clip(key, path, content_hash(path)))
    if clip_set.skipped:
        log.warning("%s: skipped %d of %d files (%s)", folder, len(clip_set.skipped), len(files),
                    "; ".join(f"{s['file']}: {s['reason']}" for s in clip_set.skipped[:3])
                    + (" ..." if len(clip_set.skipped) > 3 else ""))
    if len(clip_set.clips) < 2:
        raise ScoreError(f"{role} folder {folder}: {len(clip_set.clips)} usable clip(s) of {len(files)} "
                         f"file(s); metrics need at least 2" + (f" ({len(clip_set.skipped)} skipped, first: "
                                                               f"{clip_set.skipped[0]['reason']})"
                                                               if clip_set.skipped else ""))
    return clip_set


def audit_file(path: Path) -> tuple[str | None, float]:
    """(why the file cannot be scored, or "silent" for digital silence, which is scored, or None;
    the fraction of its samples clipped at full scale)."""
    try:
        audio, rate = read_audio(path)
    except AudioError as error:
        return str(error).split(": ", 1)[-1], 0.0
    seconds = audio.shape[-1] / rate
    if seconds < MIN_SECONDS:
        return f"too short ({seconds:.3f} s < {MIN_SECONDS} s)", 0.0
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if np.abs(audio[0]).max() < SILENCE_PEAK:
        return "silent", clipped
    return None, clipped


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """Captions CSV with a header: an id column (file/id/...) and a caption column (caption/text/prompt)."""
    from fluxbench.inputs import read_text

    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"captions file {path} does not exist")
    with io.StringIO(read_text(path, "captions file"), newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        id_column = next((columns[c] for c in CAPTION_ID_COLUMNS if c in columns), None)
        text_column = next((columns[c] for c in CAPTION_TEXT_COLUMNS if c in columns), None)
        if id_column is None or text_column is None:
            raise ScoreError(f"captions file {path}: columns {list(columns)}; expected one of "
                             f"{'/'.join(CAPTION_ID_COLUMNS)} and one of {'/'.join(CAPTION_TEXT_COLUMNS)}")
        table = {}
        for line, row in enumerate(reader, start=2):
            key, text = (row.get(id_column) or "").strip(), (row.get(text_column) or "").strip()
            if not key or not text:
                raise ScoreError(f"captions file {path}, line {line}: empty {id_column!r} or {text_column!r}")
            if Path(key).name in table:
                raise ScoreError(f"captions file {path}, line {line}: {key!r} already has a caption")
            table[Path(key).name] = text
    return table


def _captions_for(captions, clips: list[Clip]) -> dict[str, str]:
    table = read_captions(captions) if isinstance(captions, (str, os.PathLike)) else dict(captions)
    matched = {}
    for clip in clips:
        for candidate in (clip.key, clip.path.name, clip.path.stem):
            if candidate in table:
                matched[clip.key] = table[candidate]
                break
    return matched


def metric_sources(backbone: str = "paper", panns: str = "panns-16k") -> dict[str, tuple[str, str]]:
    """metric -> (backbone name, output name) for the "paper" or "descriptor" backbone or a fadtk backbone."""
    if backbone == "paper":
        return {"fad": ("vggish", "frames"), "fd": (panns, "embedding"), "kl": (panns, "logits"),
                "is": (panns, "logits"), "clap": ("clap", "audio"), "kad": ("vggish", "frames")}
    if backbone in FADTK_BACKBONES:  # FAD on their frames, KAD on kadtk's 1 s rows
        return {"fad": (backbone, "frames"), "kad": (backbone, "kad_frames")}
    return {"fad": ("descriptor", "frames"), "fd": ("descriptor", "embedding"), "kl": ("descriptor", "logits"),
            "is": ("descriptor", "logits"), "kad": ("descriptor", "frames")}


def backbones_for(metrics=None, backbone: str = "paper", panns: str = "panns-16k") -> list[str]:
    """The backbones that scoring `metrics` (None: all) would load, before any audio is read."""
    sources = metric_sources(backbone, panns)
    return sorted({sources[m][0] for m in _parse_metrics(metrics) if m in sources})


def _plan(requested: list[str], explicit: bool, backbone: str, panns: str, generated: ClipSet,
          reference: ClipSet | None, captions: dict[str, str] | None,
          has_ref_stats: bool = False) -> tuple[dict[str, tuple[str, str]], dict]:
    """metric -> (backbone name, output name), and the metrics left out with why."""
    sources = metric_sources(backbone, panns)
    paired = (pairing([c.key for c in generated.clips], [c.key for c in reference.clips])
              if reference is not None else None)
    plan, skipped = {}, {}
    for metric in requested:
        reason = None
        if metric not in sources:
            reason = f"the {backbone} backbone has no {metric.upper()}; use --backbone paper"
        elif metric == "fad" and reference is None and not has_ref_stats:
            reason = "needs a reference folder or --ref-stats"
        elif metric in ("fd", "kl", "kad") and reference is None:
            reason = "needs a reference folder" + (" (reference statistics serve FAD only)" if has_ref_stats else "")
        elif metric == "kl" and not paired.paired:
            reason = f"folders are unpaired ({paired.describe()})"
        elif metric == "is" and len(generated.clips) < IS_SPLITS:
            reason = f"needs at least {IS_SPLITS} generated clips for its {IS_SPLITS} splits, got {len(generated.clips)}"
        elif metric == "clap" and not captions:
            reason = ("needs captions (--captions CSV)" if captions is None else
                      "no caption matches a generated file name or id")
        if reason is None:
            plan[metric] = sources[metric]
        elif explicit and not (metric == "kl" and "unpaired" in reason):
            raise ScoreError(f"{metric}: {reason}")
        else:
            skipped[metric] = reason
            log.warning("%s skipped: %s", metric, reason)
    if not plan:
        raise ScoreError("no metric can be computed: " + "; ".join(f"{m}: {r}" for m, r in skipped.items()))
    return plan, skipped


def _pairing_summary(generated: ClipSet, reference: ClipSet | None, by_id: bool) -> dict[str, Any] | None:
    if reference is None:
        return None
    info = pairing([c.key for c in generated.clips], [c.key for c in reference.clips])
    return {"paired": info.paired, "shared": info.shared, "generated": info.generated,
            "reference": info.reference, "key": "id (file stem)" if by_id else "file name"}


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


# ---- metrics --------------------------------------------------------------------------------------------
def _entry(value: float, backbone: str, count: int, interval=None, **extra) -> dict[str, Any]:
    entry = {"value": float(value), "ci95": [interval.low, interval.high] if interval else None, "n": int(count),
             "backbone": backbone}
    if interval is not None:
        entry["bootstrap_std"] = interval.std
    entry.update(extra)
    return entry


def _frechet_metric(metric, prefix, backbone, output, generated, reference, gen_out, ref_out, bootstrap, seed,
                    fad_inf, results, per_clip, notes, device=None):
    gen_rows, gen_clip_of_row = _rows(generated, gen_out, output)
    ref_rows, ref_clip_of_row = _rows(reference, ref_out, output)
    key = prefix + metric
    value = frechet_distance(gen_rows, ref_rows)
    # The resamples' covariances and eigenvalue steps run where the backbone ran (a GPU when there is one).
    interval = (bootstrap_frechet(gen_rows, ref_rows, bootstrap, rng_for(seed, key),
                                  gen_clip_of_row if output == "frames" else None,
                                  ref_clip_of_row if output == "frames" else None, device) if bootstrap else None)
    results[key] = _entry(value, backbone, len(generated.clips), interval, n_reference=len(reference.clips),
                          rows=int(gen_rows.shape[0]), reference_rows=int(ref_rows.shape[0]), dims=int(gen_rows.shape[1]),
                          **({"reference_name": REFERENCE_NAMES[metric]} if not prefix else {}))
    reference_stats = GaussianStats.of(ref_rows)
    if fad_inf:
        extrapolated = frechet_inf(gen_rows, reference_stats, rng_for(seed, key + "_inf"))
        results[key + "_inf"] = {"value": extrapolated.value, "ci95": None, "n": len(generated.clips),
                                 "backbone": backbone, "slope": extrapolated.slope, "r2": extrapolated.r2,
                                 "sizes": extrapolated.sizes, "distances": extrapolated.distances}
    if output == "frames":
        for index, clip in enumerate(generated.clips):
            frames = gen_rows[gen_clip_of_row == index]
            if frames.shape[0] >= 2:
                per_clip[clip.key][key] = frechet_to_reference(frames, None, reference_stats, warn=False)
        notes.append(f"per-clip {key}: each clip's few frames against the whole reference set (rank-deficient "
                     "covariances; compare clips with one another, not with the set-level value)")


def _frechet_to_stats_metric(prefix, backbone, output, generated, gen_out, reference_stats, stats_source, bootstrap,
                             seed, fad_inf, results, per_clip, notes, device=None):
    """FAD against fixed reference statistics (--ref-stats): only the generated clips vary."""
    gen_rows, gen_clip_of_row = _rows(generated, gen_out, output)
    key = prefix + "fad"
    if reference_stats.mean.shape[0] != gen_rows.shape[1]:
        raise ScoreError(f"--ref-stats {stats_source}: {reference_stats.mean.shape[0]}-d statistics, but the "
                         f"{backbone} embeddings are {gen_rows.shape[1]}-d; pick the key of this backbone")
    value = frechet_to_reference(gen_rows, None, reference_stats)
    interval = (bootstrap_frechet_to_stats(gen_rows, reference_stats, bootstrap, rng_for(seed, key),
                                           gen_clip_of_row if output == "frames" else None, device)
                if bootstrap else None)
    results[key] = _entry(value, backbone, len(generated.clips), interval, reference_stats=stats_source,
                          rows=int(gen_rows.shape[0]), dims=int(gen_rows.shape[1]))
    if fad_inf:
        extrapolated = frechet_inf(gen_rows, reference_stats, rng_for(seed, key + "_inf"))
        results[key + "_inf"] = {"value": extrapolated.value, "ci95": None, "n": len(generated.clips),
                                 "backbone": backbone, "slope": extrapolated.slope, "r2": extrapolated.r2,
                                 "sizes": extrapolated.sizes, "distances": extrapolated.distances,
                                 "reference_stats": stats_source}
    if output == "frames":
        for index, clip in enumerate(generated.clips):
            frames = gen_rows[gen_clip_of_row == index]
            if frames.shape[0] >= 2:
                per_clip[clip.key][key] = frechet_to_reference(frames, None, reference_stats, warn=False)


def _kad_metric(prefix, backbone, output, generated, reference, gen_out, ref_out, bandwidth, bootstrap, seed,
                results, per_clip, notes):
    gen_rows, gen_clip_of_row = _rows(generated, gen_out, output)
    ref_rows, ref_clip_of_row = _rows(reference, ref_out, output)
    key = prefix + "kad"
    terms = kad_terms(gen_rows, ref_rows, bandwidth, gen_clip_of_row, ref_clip_of_row)
    interval = bootstrap_kad(terms, bootstrap, rng_for(seed, key)) if bootstrap else None
    results[key] = _entry(terms.value().value, backbone, len(generated.clips), interval,
                          n_reference=len(reference.clips), rows=int(gen_rows.shape[0]),
                          reference_rows=int(ref_rows.shape[0]), dims=int(gen_rows.shape[1]),
                          bandwidth=terms.bandwidth, bandwidth_from=terms.bandwidth_from, scale=100)
    if gen_rows.shape[0] > len(generated.clips):
        for clip, value in zip(generated.clips, terms.per_clip()):
            if np.isfinite(value):
                per_clip[clip.key][key] = float(value)
        notes.append(f"per-clip {key}: each clip's frames against the whole reference set at the set-level "
                     f"bandwidth {terms.bandwidth:.6g}")


def _rows(clip_set: ClipSet, outputs, output: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.atleast_2d(np.asarray(outputs[clip.key][output], dtype=np.float64)) for clip in clip_set.clips]
    owner = np.concatenate([np.full(a.shape[0], i) for i, a in enumerate(arrays)])
    return np.concatenate(arrays), owner


def _kl_metric(prefix, backbone, generated, reference, gen_out, ref_out, bootstrap, seed, results, per_clip):
    gen = {clip.key: gen_out[clip.key]["logits"] for clip in generated.clips}
    ref = {clip.key: ref_out[clip.key]["logits"] for clip in reference.clips}
    result = kl_divergence(gen, ref)
    if result.unmatched:
        log.warning("kl: %d reference clip(s) have no generated clip and were skipped", result.unmatched)
    for variant, value, items in (("softmax", result.softmax, result.per_item_softmax),
                                  ("sigmoid", result.sigmoid, result.per_item_sigmoid)):
        key = f"{prefix}kl_{variant}"
        interval = bootstrap_mean(list(items.values()), bootstrap, rng_for(seed, key)) if bootstrap else None
        results[key] = _entry(value, backbone, result.count, interval, unmatched=result.unmatched,
                              unused_generated=result.unused_generated,
                              **({"reference_name": REFERENCE_NAMES[f"kl_{variant}"]} if not prefix else {}))
        for clip_key, item_value in items.items():
            per_clip[clip_key][key] = item_value


def _is_metric(prefix, backbone, generated, gen_out, bootstrap, seed, results, per_clip):
    logits = np.stack([np.asarray(gen_out[clip.key]["logits"], dtype=np.float64) for clip in generated.clips])
    key = prefix + "is"
    mean, std = inception_score(logits, IS_SPLITS, True, IS_SEED)
    interval = bootstrap_inception(logits, bootstrap, rng_for(seed, key), IS_SPLITS, True, IS_SEED) if bootstrap else None
    results[key] = _entry(mean, backbone, len(generated.clips), interval, std=std, splits=IS_SPLITS,
                          shuffle_seed=IS_SEED, **({"reference_name": REFERENCE_NAMES["is"]} if not prefix else {}))
    for clip, value in zip(generated.clips, per_clip_inception_kl(logits)):
        per_clip[clip.key][key + "_kl"] = float(value)


def _clap_metric(backbone, generated, gen_out, captions, bootstrap, seed, results, per_clip, notes):
    clips = [clip for clip in generated.clips if clip.key in captions]
    if len(clips) < len(generated.clips):
        notes.append(f"clap: {len(generated.clips) - len(clips)} generated clip(s) have no caption and were skipped")
    text = backbone.embed_text([captions[clip.key] for clip in clips])
    audio = np.stack([gen_out[clip.key]["audio"] for clip in clips])
    cosines = clap_cosines(text, audio)
    interval = bootstrap_mean(cosines, bootstrap, rng_for(seed, "clap")) if bootstrap else None
    results["clap"] = _entry(float(cosines.mean()), "clap", len(clips), interval,
                             model=backbone.weights_path, long_clips=backbone.long_clips)
    for clip, value in zip(clips, cosines):
        per_clip[clip.key]["clap"] = float(value)
