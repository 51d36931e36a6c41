"""Anchor rows for a run on a labelled set: what the same metrics give for audio of known quality.

A number like "desc. FD 212" means nothing alone. Beside the trained model the run scores, with the same
backbone, items and seeds:
- untrained: the same architecture with freshly initialised weights, sampled with the same settings;
- noise: white noise at each reference's RMS level;
- codec: the references encoded and decoded by the model's own latent codec (the best the model could do);
- references: the references themselves (attribute columns only: how accurate the estimators are).
Attribute columns give how often an attribute read back from the audio (fluxbench.protocols.metrics.attributes)
matches the one the prompt names, with chance (always the most frequent class) shown, and the trained row's
p-value against chance (one-sided binomial: how likely a guesser blind to the audio does as well). "chroma
match" is how much better a clip's pitch-class profile correlates with its own prompt's reference than with
the others (about 0 when prompts are ignored); "level / ref." the median RMS ratio to the reference; "caption
reliance" (trained and untrained rows) how much the model's own training loss on the references rises at high
noise when each reference gets another's caption (about 0 for a model that does not read its prompt). The
verdict says, per metric, whether the trained model is better than noise and the untrained model and not better
than the codec, and per attribute whether it beats chance at p < ABOVE_CHANCE_P.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fluxbench.inputs import safe_file_stem
from fluxbench.models.base import GenerationSettings
from fluxbench.protocols.metrics.table import RESULT_KEYS
from fluxbench.runtime import derive_seed

log = logging.getLogger(__name__)

ANCHOR_DIR = "anchors"
FIT_CLIPS = 128  # labelled training-split clips the attribute estimators are fitted on
FOLDER_RATE = 16_000  # anchor clips' rate when the run scores a folder of audio (no model to ask)
ABOVE_CHANCE_P = 0.01  # an attribute counts as followed when chance does as well less often than this
ROWS = ("trained", "untrained", "noise", "codec", "references")
SIGNAL_COLUMNS = {"chroma_match": "chroma match", "level_ratio": "level / ref.",
                  "caption_reliance": "caption reliance"}


def _write_missing(folder: Path, ids: Sequence[str], make, rate: int) -> None:
    """Write <id>.wav for every id not on disk yet; `make(ids)` returns their waveforms (resumable)."""
    from fluxbench.audio import write_wav

    folder.mkdir(parents=True, exist_ok=True)
    todo = [item_id for item_id in ids if not (folder / f"{safe_file_stem(item_id)}.wav").is_file()]
    for start in range(0, len(todo), 8):
        chunk = todo[start:start + 8]
        for item_id, wave in zip(chunk, make(chunk)):
            write_wav(folder / f"{safe_file_stem(item_id)}.wav", wave, rate)


def _read(folder: Path, ids: Sequence[str], rate: int) -> list[np.ndarray]:
    from fluxbench.audio import AUDIO_SUFFIXES, read_audio, resample, to_mono

    waves = []
    for item_id in ids:
        path = next(p for p in folder.glob(f"{safe_file_stem(item_id)}.*") if p.suffix.lower() in AUDIO_SUFFIXES)
        audio, source_rate = read_audio(path)
        wave = to_mono(audio)
        waves.append(resample(wave, source_rate, rate) if source_rate != rate else wave)
    return waves


def build_anchor_clips(model, untrained, run_dir: Path, reference_dir: Path, ids: Sequence[str],
                       captions: Mapping[str, str], seed: int, settings: GenerationSettings | None,
                       duration: float) -> dict[str, Path]:
    """Render the untrained (`model.untrained(seed)`, or None), noise and codec rows' clips (those the model
    supports; noise alone without a model) under run_dir/anchors."""
    root = run_dir / ANCHOR_DIR
    rate = model.sample_rate if model is not None else FOLDER_RATE
    samples = int(round(duration * rate))
    folders = {}
    references = dict(zip(ids, _read(reference_dir, ids, rate)))
    seeds = {item_id: derive_seed(seed, item_id) for item_id in ids}

    if untrained is not None:
        folders["untrained"] = root / "untrained"
        _write_missing(folders["untrained"], ids, lambda chunk: untrained.generate(
            [captions[i] for i in chunk], seed=[seeds[i] for i in chunk], settings=settings).waveforms,
            rate)

    def noise(chunk):
        out = []
        for item_id in chunk:
            level = float(np.sqrt(np.mean(references[item_id] ** 2)))
            rng = np.random.default_rng(seeds[item_id])
            out.append(np.clip(level * rng.standard_normal(samples), -1.0, 1.0))
        return out

    folders["noise"] = root / "noise"
    _write_missing(folders["noise"], ids, noise, rate)

    codec = getattr(model, "codec", None) if model is not None else None
    if codec is not None:
        folders["codec"] = root / "codec"
        _write_missing(folders["codec"], ids, lambda chunk: codec_round_trip(
            codec, [references[i] for i in chunk], samples, model.device), rate)
    return folders


def codec_round_trip(codec, waves: Sequence[np.ndarray], samples: int, device="cpu") -> list[np.ndarray]:
    """Clips encoded and decoded by a latent codec, `samples` long and within full scale: the codec row."""
    import torch

    from fluxbench.audio import fit_length

    batch = torch.from_numpy(np.stack([fit_length(w, samples) for w in waves])).float()
    with torch.inference_mode():
        decoded = codec.decode(codec.encode(batch.to(device))).float().cpu().numpy()
    return [np.clip(fit_length(w, samples), -1.0, 1.0) for w in decoded]


def chroma_match(waves: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """Mean correlation of each clip's pitch-class profile with its own prompt's reference, minus the mean with
    the other references: about 0 when the prompt's key is ignored, near 1 for the references themselves."""
    from fluxbench.protocols.metrics.backbones.descriptor import pitch_class_profile

    def unit_rows(profiles):
        centred = np.stack(profiles) - np.mean(profiles, axis=1, keepdims=True)
        return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)

    correlations = unit_rows([pitch_class_profile(w) for w in waves]) @ unit_rows(
        [pitch_class_profile(r) for r in references]).T
    n = len(waves)
    own = float(np.trace(correlations)) / n
    return own - (float(correlations.sum()) - own * n) / (n * n - n)


def level_ratio(waves: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """Median over clips of RMS(clip) / RMS(its reference)."""
    rms = lambda w: float(np.sqrt(np.mean(np.square(w, dtype=np.float64))))  # noqa: E731
    return float(np.median([rms(w) / max(rms(r), 1e-12) for w, r in zip(waves, references)]))


def attribute_rows(folders: Mapping[str, Path], ids: Sequence[str], labels: Mapping[str, Mapping[str, str]],
                   estimator, reference_dir: Path
                   ) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, dict[str, float]]]:
    """Per row: attribute accuracy against the prompts' labels, the chroma match and level ratio against the
    references; the chance level per attribute; per row, each attribute's p-value against chance."""
    from fluxbench.protocols.metrics.attributes import SAMPLE_RATE, accuracy, clip_features

    truth = [labels[i] for i in ids]
    references = _read(reference_dir, ids, SAMPLE_RATE)
    rows, chance, p_values = {}, {}, {}
    for name, folder in folders.items():
        waves = _read(folder, ids, SAMPLE_RATE)
        table = accuracy([estimator.predict(clip_features(w)) for w in waves], truth)
        rows[name] = {"chroma_match": chroma_match(waves, references), "level_ratio": level_ratio(waves, references),
                      **{attribute: entry["accuracy"] for attribute, entry in table.items()}}
        chance = {attribute: entry["chance"] for attribute, entry in table.items()}
        p_values[name] = {attribute: entry["p_value"] for attribute, entry in table.items()}
    return rows, chance, p_values


def fit_estimator(eval_set):
    """Attribute estimators fitted on labelled clips from outside the evaluated items (the set's
    `anchor_training_clips`); None when the set has none."""
    from fluxbench.audio import read_audio, resample, to_mono
    from fluxbench.protocols.metrics.attributes import SAMPLE_RATE, AttributeEstimator, clip_features

    clips = eval_set.anchor_training_clips(FIT_CLIPS)
    if not clips:
        return None
    features = []
    for clip in clips:
        audio, rate = read_audio(clip.path)
        wave = to_mono(audio)
        features.append(clip_features(resample(wave, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wave))
    return AttributeEstimator.fit(features, [dict(clip.labels) for clip in clips])


def verdict(rows: Mapping[str, Mapping[str, float]], p_values: Mapping[str, float] | None = None
            ) -> dict[str, dict[str, bool]]:
    """Per column: is "trained" better than noise and untrained, and not better than the codec floor? Per
    attribute with a p-value in `p_values`: does it beat chance at p < ABOVE_CHANCE_P?"""
    out = {}
    p_values = p_values or {}
    trained = rows.get("trained", {})
    for column, value in trained.items():
        if column == "level_ratio":  # closeness to 1 matters, not a direction
            continue
        lower = RESULT_KEYS[column].lower_is_better if column in RESULT_KEYS else False
        better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
        checks = {}
        for anchor in ("noise", "untrained"):
            if anchor == "noise" and column == "loudness":  # the noise row is made at each reference's level
                continue
            if column in rows.get(anchor, {}):
                checks[f"beats_{anchor}"] = bool(better(value, rows[anchor][column]))
        if column in rows.get("codec", {}):
            checks["within_floor"] = not better(value, rows["codec"][column])
        if column in p_values:
            checks["above_chance"] = bool(p_values[column] < ABOVE_CHANCE_P)
        out[column] = checks
    return out


def _column_label(column: str) -> str:
    return RESULT_KEYS[column].label if column in RESULT_KEYS else column


# What each failed verdict check means, in the order the verdict line lists them.
MISSED_CHECKS = {"above_chance": f"not above chance (p < {ABOVE_CHANCE_P:g})", "beats_noise": "not better than noise",
                 "beats_untrained": "not better than untrained", "within_floor": "better than the codec floor"}


def verdict_line(verdicts: Mapping[str, Mapping[str, bool]]) -> str:
    """One line: either every column passed, or, per kind of miss, the columns that missed it."""
    missed = {check: [_column_label(column) for column, checks in verdicts.items() if checks.get(check) is False]
              for check in MISSED_CHECKS}
    if not any(missed.values()):
        return ("trained model sits between noise/untrained and the codec floor on every column, and beats chance "
                f"(p < {ABOVE_CHANCE_P:g}) on every attribute")
    return "trained model misses: " + "; ".join(f"{MISSED_CHECKS[check]} on {', '.join(columns)}"
                                                for check, columns in missed.items() if columns)


def anchor_table(anchors: Mapping[str, Any]) -> str:
    """Markdown: rows x (metrics, attribute accuracies), a chance row and the verdict."""
    rows, chance = anchors["rows"], anchors["chance"]
    metric_columns = [c for c in rows["trained"] if c not in chance and c not in SIGNAL_COLUMNS]
    signal_columns = [c for c in SIGNAL_COLUMNS if c in rows["trained"]]
    attribute_columns = list(chance)
    header = ["row", *map(_column_label, metric_columns), *(SIGNAL_COLUMNS[c] for c in signal_columns),
              *(f"{c} acc." for c in attribute_columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ROWS:
        if name not in rows:
            continue
        cells = [f"{rows[name][c]:.4g}" if c in rows[name] else "" for c in metric_columns + signal_columns]
        cells += [f"{rows[name][c]:.2f}" if c in rows[name] else "" for c in attribute_columns]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    blank = [""] * (len(metric_columns) + len(signal_columns))
    lines.append("| " + " | ".join(["chance", *blank, *(f"{chance[c]:.2f}" for c in attribute_columns)]) + " |")
    trained_p = anchors.get("p_values", {}).get("trained", {})
    if trained_p:
        lines.append("| " + " | ".join(["p (trained vs chance)", *blank,
                                         *(f"{trained_p[c]:.1g}" for c in attribute_columns)]) + " |")
    lines += ["", verdict_line(anchors["verdict"])]
    return "\n".join(lines)


@dataclass(frozen=True)
class AnchorInputs:
    """What the anchor rows are scored from: the run's model (None for a folder of audio made elsewhere), its
    set, scored items and folders, the metric values it got, and how it scored them."""

    model: Any
    eval_set: Any
    items: Sequence[Any]
    run_dir: Path
    generated_dir: Path
    reference_dir: Path
    values: Mapping[str, Mapping[str, Any]]  # the run's metrics (results.json "metrics")
    metrics: Sequence[str] | None
    backbone: str
    seed: int
    cache_dir: Path
    settings: GenerationSettings | None  # the model's generation settings; None without a model
    weights_dir: str | None = None


def score_anchors(run: AnchorInputs) -> dict[str, Any]:
    """Every anchor row, scored like the run itself (same backbone and items, no intervals)."""
    from fluxbench.protocols.metrics.scoring import score_folders

    model = run.model
    ids = [item.id for item in run.items]
    captions = {item.id: item.caption for item in run.items}
    untrained = model.untrained(run.seed) if model is not None else None  # one twin for clips and reliance
    duration = run.settings.duration if run.settings is not None else float(run.eval_set.duration or 10.24)
    folders = build_anchor_clips(model, untrained, run.run_dir, run.reference_dir, ids, captions, run.seed,
                                 run.settings, duration)
    metric_keys = list(run.values)
    rows: dict[str, dict[str, float]] = {"trained": {k: run.values[k]["value"] for k in metric_keys}}
    for name, folder in folders.items():
        scored = score_folders(folder, run.reference_dir, metrics=run.metrics, backbone=run.backbone,
                               ids=[safe_file_stem(i) for i in ids], bootstrap=0, seed=run.seed,
                               cache_dir=run.cache_dir, weights_dir=run.weights_dir, progress=False)
        rows[name] = {k: scored["metrics"][k]["value"] for k in metric_keys if k in scored["metrics"]}
    chance: dict[str, float] = {}
    p_values: dict[str, dict[str, float]] = {}
    estimator = fit_estimator(run.eval_set)
    if estimator is not None:
        attribute_folders = {"trained": run.generated_dir, **folders, "references": run.reference_dir}
        accuracies, chance, p_values = attribute_rows(attribute_folders, ids, run.eval_set.labels(), estimator,
                                                      run.reference_dir)
        for name, values in accuracies.items():
            rows.setdefault(name, {}).update(values)
    if model is not None:
        references = _read(run.reference_dir, ids, model.sample_rate)
        texts = [captions[i] for i in ids]
        for name, candidate in (("trained", model), ("untrained", untrained)):
            reliance = (candidate.caption_reliance(references, model.sample_rate, texts, run.seed)
                        if candidate is not None else None)
            if reliance is not None and name in rows:
                rows[name]["caption_reliance"] = reliance
    return {"rows": rows, "chance": chance, "p_values": p_values,
            "verdict": verdict({k: v for k, v in rows.items() if k != "references"}, p_values.get("trained")),
            "n": len(ids), "fit_clips": FIT_CLIPS if estimator is not None else 0, "backbone": run.backbone}
