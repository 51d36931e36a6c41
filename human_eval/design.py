"""Writing a listening study: blinded, uniformly encoded clips, the key, the rater links; the assignment of
prompts to raters and the attention checks are planned first, without audio (`plan.py`).

Inputs are folders of audio, one per system: the files directly in the folder (or in its `audio/` subfolder,
as in a run folder) named `<prompt id>.<wav|flac|ogg|mp3>`. Captions come from `--captions FILE` or from a
sidecar in a system folder (`captions.csv`, `captions.jsonl`, `captions.json`, `metadata.jsonl`,
`manifest.json`) or from `<prompt id>.txt` beside the audio.

Design choices, made for fair and analysable ratings (the assignment's are in `plan.py`):
- All clips are re-encoded alike (one sample rate, mono, one duration, 16-bit, 10 ms fades, the same
  integrated loudness) so that neither file metadata nor level reveals a system, and are stored under random
  names.
- Attention checks are clips that are bad on purpose (a stimulus buried in white noise at -5 dB SNR, or a
  clip you supply); a rater passes one by giving it an OVL of at most 2.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fluxbench import captions as caption_files
# AUDIO_SUFFIXES: the one list of audio suffixes, by which list_audio picks each system's clips.
from fluxbench.audio import (AUDIO_SUFFIXES, AudioError, fit_length, integrated_loudness,  # noqa: F401
                             list_audio, read_audio, resample, to_mono, write_wav)
from fluxbench.human_eval.plan import plan_study, select_prompts
from fluxbench.human_eval.study import AUDIO_DIR, KEY_FILE, RATERS_FILE, SCHEMA_VERSION, STUDY_FILE, StudyError
from fluxbench.inputs import errors_as, read_text

log = logging.getLogger(__name__)

CAPTION_SIDECARS = ("captions.csv", "captions.jsonl", "captions.json", "metadata.jsonl", "manifest.json")
GROUND_TRUTH = "ground truth"
ATTENTION_MAX_OVL = 2
ATTENTION_SNR_DB = -5.0
FADE_SECONDS = 0.01
PEAK_CEILING_DBFS = -1.0


@dataclass
class DesignOptions:
    raters: dict[str | None, int]  # group -> count; None: group chosen by the rater at first visit
    ratings_per_prompt: int | None = None  # raters per prompt and group; None: every rater of the group
    prompts: int | None = None  # use a random subset of this many prompts
    attention_checks: int = 0  # per rater
    attention_clips: list[Path] = field(default_factory=list)
    loudness_lufs: float | None = -23.0  # None: keep levels
    sample_rate: int | None = None  # None: the lowest rate among the inputs
    duration: float | None = None  # seconds; None: the shortest input
    seed: int = 0
    title: str = "Listening test"
    base_url: str = "http://localhost:8501"


def parse_system(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise StudyError(f"--system {spec!r}: expected NAME=FOLDER")
    return name.strip(), Path(path.strip())


def find_audio(folder: Path) -> dict[str, Path]:
    """Prompt id -> audio file of one system folder (or its audio/ subfolder)."""
    if (folder / "audio").is_dir():
        folder = folder / "audio"
    with errors_as(StudyError, AudioError):
        return {path.stem: path for path in list_audio(folder, "system audio", unique_stems=True)}


def read_captions(path: Path) -> dict[str, str]:
    """Prompt id -> caption of a captions file (CSV/TSV, JSON, JSON lines: any format `fluxbench.captions`
    reads)."""
    with errors_as(StudyError):
        return caption_files.read_captions(path)


def gather_captions(folders: list[Path], explicit: Path | None, prompt_ids: list[str],
                    audio: dict[str, dict[str, Path]]) -> dict[str, str]:
    if explicit is not None:
        captions = read_captions(explicit)
    else:
        captions = {}
        for folder in folders:
            for name in CAPTION_SIDECARS:
                if (folder / name).is_file():
                    for prompt_id, caption in read_captions(folder / name).items():
                        if captions.setdefault(prompt_id, caption) != caption:
                            raise StudyError(f"{folder / name}: caption of prompt {prompt_id!r} differs from "
                                             f"another folder's; pass one --captions file")
                    break
        for prompt_id in prompt_ids:
            for files in audio.values():
                note = files[prompt_id].with_suffix(".txt")
                if prompt_id not in captions and note.is_file():
                    with errors_as(StudyError):
                        captions[prompt_id] = read_text(note, "caption file").strip()
    missing = [p for p in prompt_ids if not captions.get(p)]
    if missing:
        raise StudyError(f"no caption for {len(missing)} prompt(s), e.g. {missing[0]!r}; pass --captions FILE "
                         f"(CSV/JSON/JSONL with id and caption) or put a captions sidecar in a system folder")
    return {p: captions[p] for p in prompt_ids}


def _prepare(wave: np.ndarray, rate: int, samples: int, loudness: float | None) -> tuple[np.ndarray, dict]:
    """Crop/pad, fade, and bring to the target loudness without exceeding the peak ceiling."""
    wave = fit_length(wave.astype(np.float64), samples)
    fade = min(int(FADE_SECONDS * rate), samples // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    info: dict = {"loudness_before": None, "gain_db": 0.0, "peak_limited": False}
    if loudness is not None:
        before = integrated_loudness(wave, rate)
        info["loudness_before"] = round(before, 3) if np.isfinite(before) else None
        if np.isfinite(before):
            gain_db = loudness - before
            peak = float(np.abs(wave).max())
            ceiling_db = PEAK_CEILING_DBFS - 20 * np.log10(peak)
            if gain_db > ceiling_db:
                gain_db, info["peak_limited"] = ceiling_db, True
            wave = wave * 10 ** (gain_db / 20)
            info["gain_db"] = round(float(gain_db), 3)
    return wave.astype(np.float32), info


def _load_mono(path: Path, rate: int) -> np.ndarray:
    audio, source_rate = read_audio(path)
    return resample(to_mono(audio), source_rate, rate)


def _bury_in_noise(wave: np.ndarray, unit_noise: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) or 0.1
    noise = unit_noise * rms * 10 ** (-ATTENTION_SNR_DB / 20)
    return (wave + noise) / max(1.0, float(np.abs(wave + noise).max()))


def check_options(options: DesignOptions) -> None:
    """Refuse settings that would silently become something else (0 raters per prompt, NaN loudness, ...)."""
    def bad(name: str, expected: str, value) -> StudyError:
        return StudyError(f"{name} {value!r}: expected {expected}")

    counts = (("--ratings-per-item", options.ratings_per_prompt, 1), ("--prompts", options.prompts, 1),
              ("--attention-checks", options.attention_checks, 0), ("--sample-rate", options.sample_rate, 1))
    for name, value, low in counts:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise bad(name, f"an integer >= {low}", value)
    if options.loudness_lufs is not None and not (isinstance(options.loudness_lufs, (int, float))
                                                  and -70 <= options.loudness_lufs <= 0):
        raise bad("--loudness", "a finite level in [-70, 0] LUFS", options.loudness_lufs)
    if options.duration is not None and not (isinstance(options.duration, (int, float))
                                             and 0 < options.duration <= 3600):
        raise bad("--duration", "a finite number of seconds in (0, 3600]", options.duration)


def create_study(out: str | Path, systems: dict[str, Path], options: DesignOptions,
                 captions_file: Path | None = None) -> dict:
    """Build a study folder atomically; returns a summary (counts, format, where the links are)."""
    import soundfile as sf

    check_options(options)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StudyError(f"{out}: already exists; a study's design is fixed once rating starts, choose a new folder")
    if len(systems) < 1:
        raise StudyError("no systems given; pass --system NAME=FOLDER (at least once)")
    named = [name for name in systems if name.lower() in options.title.lower()]
    if named:
        raise StudyError(f"--title {options.title!r} names the system {named[0]!r}; raters must not learn it")
    audio = {name: find_audio(folder) for name, folder in systems.items()}

    common = set.intersection(*(set(files) for files in audio.values()))
    for name, files in audio.items():
        dropped = sorted(set(files) - common)
        if dropped:
            log.warning("%s: %d prompt(s) missing from other systems are left out, e.g. %r", name, len(dropped), dropped[0])
    prompt_ids = sorted(common)
    if not prompt_ids:
        raise StudyError("the systems share no prompt ids (audio file names); every system needs the same prompts")
    rng = np.random.default_rng(options.seed)
    prompt_ids = select_prompts(prompt_ids, options.prompts, rng)
    captions = gather_captions(list(systems.values()), captions_file, prompt_ids, audio)
    for name in systems:
        mentions = [p for p, c in captions.items() if name.lower() in c.lower()]
        if mentions:
            log.warning("%d caption(s) mention the system name %r (e.g. prompt %r); raters will see it",
                        len(mentions), name, mentions[0])

    infos = {}
    for path in [audio[name][p] for name in systems for p in prompt_ids] + list(options.attention_clips):
        try:
            infos[path] = sf.info(str(path))
        except Exception as error:
            raise StudyError(f"{path}: unreadable audio ({error})") from None
    # The stimuli set the common format; attention clips are fitted to it.
    stimuli_info = [infos[audio[name][p]] for name in systems for p in prompt_ids]
    rate = options.sample_rate or min(info.samplerate for info in stimuli_info)
    seconds = options.duration or min(info.frames / info.samplerate for info in stimuli_info)
    if seconds < 0.5:
        raise StudyError(f"clip duration {seconds:.3f} s is too short to rate (and to measure loudness); "
                         f"pass --duration or use longer clips")
    samples = int(round(seconds * rate))
    plan = plan_study(prompt_ids, list(systems), options.raters, options.ratings_per_prompt,
                      options.attention_checks, len(options.attention_clips), samples, rng)

    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        (staging / AUDIO_DIR).mkdir()
        clips, key_clips = [], []
        stimulus: dict[tuple[str, str], str] = {}

        def add_clip(wave: np.ndarray, caption: str, entry: dict) -> str:
            clip_id = secrets.token_hex(8)  # random and unguessable: says nothing about the clip's origin
            prepared, info = _prepare(wave, rate, samples, options.loudness_lufs)
            relative = f"{AUDIO_DIR}/{clip_id}.wav"
            write_wav(staging / relative, prepared, rate)
            clips.append({"clip_id": clip_id, "caption": caption, "audio": relative})
            key_clips.append({"clip_id": clip_id, **entry, **info})
            return clip_id

        for name in systems:
            for prompt_id in prompt_ids:
                source = audio[name][prompt_id]
                stimulus[prompt_id, name] = add_clip(
                    _load_mono(source, rate), captions[prompt_id],
                    {"system": name, "prompt_id": prompt_id, "attention_check": False, "source": str(source)})

        checks = []
        for check in plan.checks:
            if check.noise is None:
                source = options.attention_clips[check.clip_index]
                wave = _load_mono(source, rate)
            else:
                source = audio[check.system][check.prompt_id]
                wave = _bury_in_noise(fit_length(_load_mono(source, rate), samples), check.noise)
            checks.append(add_clip(wave, captions[check.prompt_id], {
                "system": None, "prompt_id": check.prompt_id, "attention_check": True, "source": str(source)}))

        raters = [{"token": r.token, "group": r.group,
                   "order": [checks[item] if isinstance(item, int) else stimulus[item] for item in r.order],
                   "completion_code": r.completion_code} for r in plan.raters]
        rng.shuffle(clips)  # file order in study.json must not follow systems either
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_json(staging / STUDY_FILE, {"schema_version": SCHEMA_VERSION, "title": options.title,
                                           "created": created, "clips": clips, "raters": raters})
        settings = {"sample_rate": rate, "duration_seconds": samples / rate, "loudness_lufs": options.loudness_lufs,
                    "raters": {str(g): c for g, c in options.raters.items()},
                    "ratings_per_prompt": options.ratings_per_prompt, "prompts": len(prompt_ids),
                    "attention_checks": options.attention_checks, "seed": options.seed}
        _write_json(staging / KEY_FILE, {
            "schema_version": SCHEMA_VERSION, "created": created, "systems": list(systems),
            "sources": {name: str(folder) for name, folder in systems.items()}, "settings": settings,
            "attention_max_ovl": ATTENTION_MAX_OVL, "captions": captions, "clips": key_clips})
        with open(staging / RATERS_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["token", "group", "clips", "link", "completion_code"])
            for rater in raters:
                writer.writerow([rater["token"], rater["group"] or "asked at first visit", len(rater["order"]),
                                 rater_link(options.base_url, rater["token"]), rater["completion_code"]])
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    limited = sum(c["peak_limited"] for c in key_clips)
    if limited:
        log.warning("%d clip(s) could not reach %.1f LUFS without exceeding %.1f dBFS peak; they stay quieter",
                    limited, options.loudness_lufs, PEAK_CEILING_DBFS)
    return {"study": str(out), "systems": list(systems), "prompts": len(prompt_ids), "clips": len(clips),
            "attention_checks": len(checks), "raters": len(raters), "sample_rate": rate,
            "duration_seconds": round(samples / rate, 3), "peak_limited": limited,
            "raters_file": str(out / RATERS_FILE)}


def rater_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/?rater={token}"


def _write_json(path: Path, data: dict) -> None:
    # Written into the staging folder, which appears complete or not at all.
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
