"""The clips scoring reads: which files of a folder, which of them can be scored, how generated and reference
clips pair up, and their captions.

Listing and pairing follow audioldm_eval at git 83d7b13: files are listed sorted by name; generated and
reference folders are "paired" when more than 99 % of the basenames (extension included) occur in both
folders, in both directions. Deviations, on purpose: only audio files are listed (the reference feeds every
file to the decoder), and a file that cannot be read is skipped and counted instead of being silently replaced
by the next file. Digital silence is scored, counted and warned about; clipping is measured per clip.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluxbench import FluxbenchError
from fluxbench import captions as caption_files
# AUDIO_SUFFIXES: the one list of audio suffixes, by which list_audio picks the files scored here.
from fluxbench.audio import AUDIO_SUFFIXES, AudioError, list_audio, read_audio  # noqa: F401
from fluxbench.inputs import errors_as
from fluxbench.protocols.metrics.cache import content_hash

log = logging.getLogger(__name__)

PAIRING_THRESHOLD = 0.99
MIN_SECONDS = 0.1  # shorter files are broken generations, not music: skipped and counted
SILENCE_PEAK = 1.0 / 32768  # below one 16-bit step everywhere: digital silence (kept, counted, warned)
CLIP_LEVEL = 1.0 - 2.0 / 32768  # at full scale within 16-bit rounding: the sample was clipped
CLIPPED_WARN_FRACTION = 0.001  # clips with more clipped samples than this are named in a warning
CAPTION_ID_FIELDS = caption_files.FILE_FIELDS + tuple(f for f in caption_files.ID_FIELDS
                                                    if f not in caption_files.FILE_FIELDS)


class ScoreError(FluxbenchError):
    pass


# ---- listing and pairing (audioldm_eval's rules) -----------------------------------------------------------
@dataclass(frozen=True)
class Pairing:
    paired: bool
    shared: int
    generated: int
    reference: int

    def describe(self) -> str:
        state = "paired" if self.paired else "unpaired"
        return (f"{state}: {self.shared} file names shared by {self.generated} generated and "
                f"{self.reference} reference files (paired needs > {PAIRING_THRESHOLD:.0%} of both)")


def pairing(generated_names, reference_names) -> Pairing:
    """The reference's rule: paired when > 99 % of the names of each folder occur in the other one."""
    generated, reference = set(generated_names), set(reference_names)
    shared = len(generated & reference)
    paired = bool(generated and reference and shared / len(generated) > PAIRING_THRESHOLD
                  and shared / len(reference) > PAIRING_THRESHOLD)
    return Pairing(paired, shared, len(generated), len(reference))



# ---- clips and their audit ------------------------------------------------------------------------------
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


def collect_clips(folder, role: str, ids: list[str] | None) -> ClipSet:
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
    """id -> caption of a captions file (any format `fluxbench.captions` reads); a file column (file, path, ...)
    is preferred to an id column, as clips are matched by file name first."""
    with errors_as(ScoreError):
        return caption_files.read_captions(path, id_fields=CAPTION_ID_FIELDS)


def match_captions(captions, clips: list[Clip]) -> dict[str, str]:
    table = read_captions(captions) if isinstance(captions, (str, os.PathLike)) else dict(captions)
    matched = {}
    for clip in clips:
        for candidate in (clip.key, clip.path.name, clip.path.stem):
            if candidate in table:
                matched[clip.key] = table[candidate]
                break
    return matched


def pairing_summary(generated: ClipSet, reference: ClipSet | None, by_id: bool) -> dict[str, Any] | None:
    if reference is None:
        return None
    info = pairing([c.key for c in generated.clips], [c.key for c in reference.clips])
    return {"paired": info.paired, "shared": info.shared, "generated": info.generated,
            "reference": info.reference, "key": "id (file stem)" if by_id else "file name"}
