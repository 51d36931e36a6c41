"""The study folder and the rating scale.

A study folder holds two descriptions of the same study:

- `study.json`: what the rating app needs and may show, and nothing more: per clip an opaque id, the caption
  and the blinded audio file; per rater an access token, a group (or none: chosen at first visit) and the
  order of clips.
- `key.json`: what only the experimenter needs: which system and prompt each clip came from, which clips are
  attention checks and how they are scored. The app never reads it.

Plus `audio/<clip id>.wav` (loudness-normalised copies, one format for all systems), `raters.csv` (tokens and
links to hand out) and, by default, `responses.sqlite` (the ratings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fluxbench import FluxbenchError

SCHEMA_VERSION = 1
STUDY_FILE = "study.json"
KEY_FILE = "key.json"
RATERS_FILE = "raters.csv"
AUDIO_DIR = "audio"
DEFAULT_DB_FILE = "responses.sqlite"

# The paper rates overall quality (OVL) and relevance to the caption (REL) on 1-5, by beginners and experts.
GROUPS = ("beginner", "expert")
ASPECTS = ("ovl", "rel")
SCORES = (1, 2, 3, 4, 5)
ASPECT_QUESTIONS = {
    "ovl": "Overall quality (OVL): how good does this clip sound as music?",
    "rel": "Relevance (REL): how well does the clip match the caption?",
}
ANCHORS = {
    "ovl": {1: "Bad", 2: "Poor", 3: "Fair", 4: "Good", 5: "Excellent"},
    "rel": {1: "Not at all", 2: "Slightly", 3: "Partly", 4: "Mostly", 5: "Completely"},
}


class StudyError(FluxbenchError):
    pass


@dataclass(frozen=True)
class Clip:
    clip_id: str
    caption: str
    audio: str  # path relative to the study folder


@dataclass(frozen=True)
class RaterPlan:
    token: str
    group: str | None  # None: the rater picks a group with the background questions
    order: tuple[str, ...]
    completion_code: str


@dataclass(frozen=True)
class Study:
    root: Path
    title: str
    clips: dict[str, Clip]
    raters: dict[str, RaterPlan]

    @classmethod
    def load(cls, root: str | Path) -> "Study":
        root = Path(root)
        data = _read_json(root / STUDY_FILE, "a study folder made by `fluxbench human-eval create`")
        try:
            clips = {c["clip_id"]: Clip(c["clip_id"], c["caption"], c["audio"]) for c in data["clips"]}
            raters = {
                r["token"]: RaterPlan(r["token"], r["group"], tuple(r["order"]), r["completion_code"])
                for r in data["raters"]
            }
            title = data["title"]
        except (KeyError, TypeError) as error:
            raise StudyError(f"{root / STUDY_FILE}: malformed study file (missing {error})") from None
        for plan in raters.values():
            unknown = [c for c in plan.order if c not in clips]
            if unknown:
                raise StudyError(f"{root / STUDY_FILE}: rater order names unknown clip {unknown[0]!r}")
        return cls(root, title, clips, raters)

    def audio_path(self, clip_id: str) -> Path:
        return self.root / self.clips[clip_id].audio


@dataclass(frozen=True)
class KeyEntry:
    clip_id: str
    system: str | None  # None for attention checks
    prompt_id: str
    attention_check: bool
    source: str


@dataclass(frozen=True)
class Key:
    systems: tuple[str, ...]
    entries: dict[str, KeyEntry]
    attention_max_ovl: int  # an attention check passes when its OVL is at most this

    @classmethod
    def load(cls, root: str | Path) -> "Key":
        path = Path(root) / KEY_FILE
        data = _read_json(path, "the study's key (written by `fluxbench human-eval create`)")
        try:
            entries = {
                e["clip_id"]: KeyEntry(e["clip_id"], e["system"], e["prompt_id"], e["attention_check"], e["source"])
                for e in data["clips"]
            }
            return cls(tuple(data["systems"]), entries, int(data["attention_max_ovl"]))
        except (KeyError, TypeError, ValueError) as error:
            raise StudyError(f"{path}: malformed key file (missing or bad {error})") from None


def _read_json(path: Path, expected: str) -> dict:
    if not path.is_file():
        raise StudyError(f"{path}: not found; expected {expected}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StudyError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise StudyError(f"{path}: unsupported study schema (expected schema_version {SCHEMA_VERSION})")
    return data
