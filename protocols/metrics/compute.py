"""The compute functions the metric table (`table.py`) names: embeddings in, numbers out.

Each takes a `MetricInputs` and returns a `MetricOutcome`: the results entries it writes (the metric's value,
its 95 % interval when bootstrapped, counts and settings), per-clip values, and notes for the reader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluxbench.protocols.metrics.bootstrap import (bootstrap_frechet, bootstrap_frechet_to_stats,
                                                   bootstrap_inception, bootstrap_kad, bootstrap_mean, frechet_inf,
                                                   rng_for)
from fluxbench.protocols.metrics.clap_score import clap_cosines
from fluxbench.protocols.metrics.clips import ClipSet, ScoreError
from fluxbench.protocols.metrics.frechet import GaussianStats, frechet_distance, frechet_to_reference
from fluxbench.protocols.metrics.inception import inception_score, per_clip_inception_kl
from fluxbench.protocols.metrics.kad import kad_terms
from fluxbench.protocols.metrics.kl import kl_divergence
from fluxbench.protocols.metrics.table import IS_SEED, IS_SPLITS, Metric

log = logging.getLogger(__name__)


@dataclass
class MetricInputs:
    metric: Metric
    prefix: str  # of the results keys: "" for the paper backbone, "descriptor_", "<fadtk backbone>_"
    backbone: Any  # the loaded backbone (its name, device; CLAP also embeds text)
    output: str  # which of the backbone's outputs the metric reads
    generated: ClipSet
    gen_out: dict[str, dict[str, np.ndarray]]  # clip key -> backbone outputs
    reference: ClipSet | None = None
    ref_out: dict[str, dict[str, np.ndarray]] | None = None
    reference_stats: GaussianStats | None = None  # --ref-stats, for the metrics it serves
    stats_source: str | None = None  # "FILE:KEY" as recorded
    captions: dict[str, str] | None = None  # clip key -> prompt
    bootstrap: int = 0
    seed: int = 0
    extrapolate: bool = False  # --fad-inf
    kad_bandwidth: str | float = "generated"

    def key(self, value_key: str) -> str:
        return self.prefix + value_key

    def reference_name(self, value_key: str) -> dict[str, str]:
        """audioldm_eval's key, recorded only where the number is the paper's (the paper backbone)."""
        value = next(v for v in self.metric.values if v.key == value_key)
        return {"reference_name": value.reference_name} if not self.prefix and value.reference_name else {}


@dataclass
class MetricOutcome:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # results key -> entry
    per_clip: dict[str, dict[str, float]] = field(default_factory=dict)  # clip key -> results key -> value
    notes: list[str] = field(default_factory=list)

    def clip_value(self, clip: str, key: str, value: float) -> None:
        self.per_clip.setdefault(clip, {})[key] = value


def entry(value: float, backbone: str, count: int, interval=None, **extra) -> dict[str, Any]:
    result = {"value": float(value), "ci95": [interval.low, interval.high] if interval else None, "n": int(count),
              "backbone": backbone}
    if interval is not None:
        result["bootstrap_std"] = interval.std
        if interval.exact is not None:  # the rest were calibrated first-order resamples (see bootstrap.py)
            result["bootstrap_exact_resamples"] = interval.exact
    result.update(extra)
    return result


def rows(clip_set: ClipSet, outputs, output: str) -> tuple[np.ndarray, np.ndarray]:
    """Every clip's rows of `output` stacked, and the index of the clip each row came from."""
    arrays = [np.atleast_2d(np.asarray(outputs[clip.key][output], dtype=np.float64)) for clip in clip_set.clips]
    owner = np.concatenate([np.full(a.shape[0], i) for i, a in enumerate(arrays)])
    return np.concatenate(arrays), owner


def frechet(inputs: MetricInputs) -> MetricOutcome:
    """FAD (frames) or FD (clip embeddings); FAD against fixed statistics when --ref-stats serves it."""
    if inputs.reference_stats is not None and inputs.metric.reference_stats_serve:
        return _frechet_to_stats(inputs)
    outcome = MetricOutcome()
    name, key = inputs.backbone.name, inputs.key(inputs.metric.name)
    frames = inputs.output == "frames"
    gen_rows, gen_clip_of_row = rows(inputs.generated, inputs.gen_out, inputs.output)
    ref_rows, ref_clip_of_row = rows(inputs.reference, inputs.ref_out, inputs.output)
    value = frechet_distance(gen_rows, ref_rows)
    # The resamples' covariances and eigenvalue steps run where the backbone ran (a GPU when there is one).
    interval = (bootstrap_frechet(gen_rows, ref_rows, inputs.bootstrap, rng_for(inputs.seed, key),
                                  gen_clip_of_row if frames else None, ref_clip_of_row if frames else None,
                                  inputs.backbone.device) if inputs.bootstrap else None)
    outcome.entries[key] = entry(value, name, len(inputs.generated.clips), interval,
                                 n_reference=len(inputs.reference.clips), rows=int(gen_rows.shape[0]),
                                 reference_rows=int(ref_rows.shape[0]), dims=int(gen_rows.shape[1]),
                                 **inputs.reference_name(inputs.metric.name))
    reference_stats = GaussianStats.of(ref_rows)
    if inputs.extrapolate:
        outcome.entries[key + "_inf"] = _extrapolated(inputs, key, gen_rows, reference_stats)
    if frames:
        _per_clip_frechet(inputs, key, gen_rows, gen_clip_of_row, reference_stats, outcome)
        outcome.notes.append(f"per-clip {key}: each clip's few frames against the whole reference set "
                             "(rank-deficient covariances; compare clips with one another, not with the set-level "
                             "value)")
    return outcome


def _frechet_to_stats(inputs: MetricInputs) -> MetricOutcome:
    """FAD against fixed reference statistics (--ref-stats): only the generated clips vary."""
    outcome = MetricOutcome()
    name, key, stats = inputs.backbone.name, inputs.key(inputs.metric.name), inputs.reference_stats
    gen_rows, gen_clip_of_row = rows(inputs.generated, inputs.gen_out, inputs.output)
    if stats.mean.shape[0] != gen_rows.shape[1]:
        raise ScoreError(f"--ref-stats {inputs.stats_source}: {stats.mean.shape[0]}-d statistics, but the "
                         f"{name} embeddings are {gen_rows.shape[1]}-d; pick the key of this backbone")
    value = frechet_to_reference(gen_rows, None, stats)
    interval = (bootstrap_frechet_to_stats(gen_rows, stats, inputs.bootstrap, rng_for(inputs.seed, key),
                                           gen_clip_of_row if inputs.output == "frames" else None,
                                           inputs.backbone.device)
                if inputs.bootstrap else None)
    outcome.entries[key] = entry(value, name, len(inputs.generated.clips), interval,
                                 reference_stats=inputs.stats_source, rows=int(gen_rows.shape[0]),
                                 dims=int(gen_rows.shape[1]))
    if inputs.extrapolate:
        outcome.entries[key + "_inf"] = {**_extrapolated(inputs, key, gen_rows, stats),
                                         "reference_stats": inputs.stats_source}
    if inputs.output == "frames":
        _per_clip_frechet(inputs, key, gen_rows, gen_clip_of_row, stats, outcome)
    return outcome


def _extrapolated(inputs: MetricInputs, key: str, gen_rows: np.ndarray, stats: GaussianStats) -> dict[str, Any]:
    extrapolated = frechet_inf(gen_rows, stats, rng_for(inputs.seed, key + "_inf"))
    return {"value": extrapolated.value, "ci95": None, "n": len(inputs.generated.clips),
            "backbone": inputs.backbone.name, "slope": extrapolated.slope, "r2": extrapolated.r2,
            "sizes": extrapolated.sizes, "distances": extrapolated.distances}


def _per_clip_frechet(inputs, key, gen_rows, gen_clip_of_row, stats, outcome) -> None:
    for index, clip in enumerate(inputs.generated.clips):
        frames = gen_rows[gen_clip_of_row == index]
        if frames.shape[0] >= 2:
            outcome.clip_value(clip.key, key, frechet_to_reference(frames, None, stats, warn=False))


def kad(inputs: MetricInputs) -> MetricOutcome:
    outcome = MetricOutcome()
    generated, reference, key = inputs.generated, inputs.reference, inputs.key("kad")
    gen_rows, gen_clip_of_row = rows(generated, inputs.gen_out, inputs.output)
    ref_rows, ref_clip_of_row = rows(reference, inputs.ref_out, inputs.output)
    terms = kad_terms(gen_rows, ref_rows, inputs.kad_bandwidth, gen_clip_of_row, ref_clip_of_row)
    interval = bootstrap_kad(terms, inputs.bootstrap, rng_for(inputs.seed, key)) if inputs.bootstrap else None
    outcome.entries[key] = entry(terms.value().value, inputs.backbone.name, len(generated.clips), interval,
                                 n_reference=len(reference.clips), rows=int(gen_rows.shape[0]),
                                 reference_rows=int(ref_rows.shape[0]), dims=int(gen_rows.shape[1]),
                                 bandwidth=terms.bandwidth, bandwidth_from=terms.bandwidth_from, scale=100)
    if gen_rows.shape[0] > len(generated.clips):
        for clip, value in zip(generated.clips, terms.per_clip()):
            if np.isfinite(value):
                outcome.clip_value(clip.key, key, float(value))
        outcome.notes.append(f"per-clip {key}: each clip's frames against the whole reference set at the set-level "
                             f"bandwidth {terms.bandwidth:.6g}")
    return outcome


def kl(inputs: MetricInputs) -> MetricOutcome:
    outcome = MetricOutcome()
    gen = {clip.key: inputs.gen_out[clip.key][inputs.output] for clip in inputs.generated.clips}
    ref = {clip.key: inputs.ref_out[clip.key][inputs.output] for clip in inputs.reference.clips}
    result = kl_divergence(gen, ref)
    if result.unmatched:
        log.warning("kl: %d reference clip(s) have no generated clip and were skipped", result.unmatched)
    for variant, value, items in (("softmax", result.softmax, result.per_item_softmax),
                                  ("sigmoid", result.sigmoid, result.per_item_sigmoid)):
        key = inputs.key(f"kl_{variant}")
        interval = (bootstrap_mean(list(items.values()), inputs.bootstrap, rng_for(inputs.seed, key))
                    if inputs.bootstrap else None)
        outcome.entries[key] = entry(value, inputs.backbone.name, result.count, interval, unmatched=result.unmatched,
                                     unused_generated=result.unused_generated,
                                     **inputs.reference_name(f"kl_{variant}"))
        for clip_key, item_value in items.items():
            outcome.clip_value(clip_key, key, item_value)
    return outcome


def inception(inputs: MetricInputs) -> MetricOutcome:
    outcome = MetricOutcome()
    generated, key = inputs.generated, inputs.key("is")
    logits = np.stack([np.asarray(inputs.gen_out[clip.key][inputs.output], dtype=np.float64)
                       for clip in generated.clips])
    mean, std = inception_score(logits, IS_SPLITS, True, IS_SEED)
    interval = (bootstrap_inception(logits, inputs.bootstrap, rng_for(inputs.seed, key), IS_SPLITS, True, IS_SEED)
                if inputs.bootstrap else None)
    outcome.entries[key] = entry(mean, inputs.backbone.name, len(generated.clips), interval, std=std,
                                 splits=IS_SPLITS, shuffle_seed=IS_SEED, **inputs.reference_name("is"))
    for clip, value in zip(generated.clips, per_clip_inception_kl(logits)):
        outcome.clip_value(clip.key, key + "_kl", float(value))
    return outcome


def clap(inputs: MetricInputs) -> MetricOutcome:
    outcome = MetricOutcome()
    generated, captions, backbone = inputs.generated, inputs.captions, inputs.backbone
    clips = [clip for clip in generated.clips if clip.key in captions]
    if len(clips) < len(generated.clips):
        outcome.notes.append(f"clap: {len(generated.clips) - len(clips)} generated clip(s) have no caption and "
                             "were skipped")
    text = backbone.embed_text([captions[clip.key] for clip in clips])
    audio = np.stack([inputs.gen_out[clip.key][inputs.output] for clip in clips])
    cosines = clap_cosines(text, audio)
    interval = bootstrap_mean(cosines, inputs.bootstrap, rng_for(inputs.seed, "clap")) if inputs.bootstrap else None
    outcome.entries["clap"] = entry(float(cosines.mean()), "clap", len(clips), interval,
                                    model=backbone.weights_path, long_clips=backbone.long_clips)
    for clip, value in zip(clips, cosines):
        outcome.clip_value(clip.key, "clap", float(value))
    return outcome
