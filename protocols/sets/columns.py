"""Which column of a user's table or dataset holds the item id, the caption and the audio.

Named explicitly (`--id-column`, `--caption-column`, `--audio-column`) or detected from the usual names when
exactly one is present; two candidates are ambiguous and refused with the list of columns. Without an id
column, items are numbered by row (stable for one revision of the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fluxbench.protocols.sets.captions_csv import SetError

ID_NAMES = ("id", "item_id", "ytid", "caption_id", "uid", "key", "prompt_id", "clip_id")
CAPTION_NAMES = ("caption", "text", "prompt", "description", "captions")
AUDIO_NAMES = ("audio", "path", "file", "filename", "file_name", "audio_path", "audio_file", "location")


@dataclass(frozen=True)
class Columns:
    id: str | None  # None: items are numbered by row
    caption: str
    audio: str | None  # None: audio found in the audio folder by item id


def pick(role: str, explicit: str | None, candidates: Iterable[str], columns: list[str], where: str,
         required: bool, flag: str, listed: str) -> str | None:
    """The column for `role` among `columns`: the explicit one (which must exist), else the one candidate
    present; `listed` names every column of the table in messages."""
    if explicit:
        if explicit not in columns:
            raise SetError(f"{where}: {flag} {explicit!r} is not a column; columns: {listed}")
        return explicit
    lowered = {column.lower(): column for column in columns}
    found = [lowered[name] for name in candidates if name in lowered]
    if len(found) > 1:
        raise SetError(f"{where}: {len(found)} columns could hold the {role} ({', '.join(found)}); pick one with "
                       f"{flag} (columns: {listed})")
    if not found and required:
        raise SetError(f"{where}: no {role} column found (looked for {', '.join(candidates)}); name it with {flag} "
                       f"(columns: {listed})")
    return found[0] if found else None


def detect(columns: list[str], where: str, id_column: str | None = None, caption_column: str | None = None,
           audio_column: str | None = None, audio_candidates: Iterable[str] = AUDIO_NAMES) -> Columns:
    """The id, caption and audio columns of a table with `columns` (see the module doc)."""
    listed = ", ".join(columns)
    caption = pick("caption", caption_column, CAPTION_NAMES, columns, where, True, "--caption-column", listed)
    rest = [c for c in columns if c != caption]
    return Columns(pick("item id", id_column, ID_NAMES, rest, where, False, "--id-column", listed), caption,
                   pick("audio", audio_column, audio_candidates, rest, where, False, "--audio-column", listed))


def row_id(index: int) -> str:
    return f"row-{index:06d}"
