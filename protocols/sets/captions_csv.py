"""Reading published caption tables (CSV) with one-line errors naming the file and the column."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from fluxbench import FluxbenchError
from fluxbench.audio import AUDIO_SUFFIXES


class SetError(FluxbenchError):
    pass


def read_caption_table(path: str | os.PathLike, required: tuple[str, ...], what: str) -> list[dict[str, str]]:
    from fluxbench.inputs import read_text

    path = Path(path)
    if not path.is_file():
        raise SetError(f"{what}: caption file {path} not found")
    with io.StringIO(read_text(path, f"{what} caption file"), newline="") as handle:
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


class AudioFolder:
    """A folder of reference clips named `<stem>.<suffix>`, listed once.

    `find(stem)` prefers a readable suffix (in `AUDIO_SUFFIXES` order); a clip present only in another format
    (e.g. `<stem>.m4a`) is still returned, so that the runner reports it as unsupported instead of missing.
    """

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.by_stem: dict[str, list[Path]] = {}
        if folder is None or not Path(folder).is_dir():
            return
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or "." not in entry.name or not entry.is_file():
                    continue
                path = Path(entry.path)
                self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, stem: str) -> Path | None:
        candidates = self.by_stem.get(stem, [])
        rank = {suffix: i for i, suffix in enumerate(AUDIO_SUFFIXES)}
        return min(candidates, key=lambda p: (rank.get(p.suffix.lower(), len(rank)), p.name), default=None)


DATA_DIR = Path(__file__).parent / "data"


def shipped_file(path: Path, sha256: str, what: str, kind: str = "caption file") -> Path:
    """A data file shipped in the package, checked against its published sha256 (a damaged install is named)."""
    from fluxbench.weights import sha256_of

    if not path.is_file():
        raise SetError(f"{what}: the shipped {kind} {path} is missing (a damaged install: reinstall fluxbench, "
                       f"or pass --captions PATH)")
    digest = sha256_of(path)
    if digest != sha256:
        raise SetError(f"{what}: the shipped {kind} {path} has sha256 {digest}, expected {sha256} (a damaged "
                       f"install: reinstall fluxbench, or pass --captions PATH)")
    return path


def shipped_ids(path: Path, sha256: str, what: str) -> set[str]:
    """The ids of a shipped id list (one a line), checked against its sha256."""
    return {line.strip() for line in shipped_file(path, sha256, what, "id list").read_text("utf-8").splitlines()
            if line.strip()}


def env_path(value: str | os.PathLike | None, variable: str) -> Path | None:
    value = value or os.environ.get(variable)
    return Path(value) if value else None
