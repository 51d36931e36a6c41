"""Reading published caption tables (CSV) with one-line errors naming the file and the column."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from fluxbench import FluxbenchError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class SetError(FluxbenchError):
    pass


def read_caption_table(path: str | os.PathLike, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise SetError(f"{what}: caption file {path} not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise SetError(f"{what}: {path} lacks column(s) {missing}; expected the published layout with "
                           f"{list(required)} (found {columns})")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if not (row.get("caption") or "").strip():
            raise SetError(f"{what}: {path} line {line}: empty caption")
    return rows


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "t")


def find_audio(folder: Path | None, stem: str) -> Path | None:
    """`<folder>/<stem>.<ext>` for a known audio extension, else None."""
    if folder is None:
        return None
    for ext in AUDIO_EXTENSIONS:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def env_path(value: str | os.PathLike | None, variable: str) -> Path | None:
    value = value or os.environ.get(variable)
    return Path(value) if value else None
