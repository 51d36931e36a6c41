"""Content-addressed artifact store for generated clips.

A clip's key is the hash of everything that determines it (model fingerprint, prompt, per-item seed, duration,
generation settings), so a rerun, a resumed run or another shard finds it instead of generating it again.
Files are written atomically: a killed process leaves either the whole file or nothing; each clip's size and
checksum are recorded beside it and checked before it is reused, so a clip damaged later is made again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fluxbench import FluxbenchError
from fluxbench.atomic import atomic_path, write_json
from fluxbench.audio import write_wav
from fluxbench.runtime import content_hash

log = logging.getLogger(__name__)


def content_key(identity: dict[str, Any]) -> str:
    return content_hash(identity)


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file, recorded when it is written and checked before it is reused."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def file_matches(path: str | os.PathLike, record: dict[str, Any]) -> bool:
    """Whether `path` still holds exactly what `record` (from `file_record`) describes."""
    try:
        if os.path.getsize(path) != record.get("bytes"):  # cheap first: truncation changes the size
            return False
        return file_record(path)["sha256"] == record.get("sha256")
    except OSError:
        return False


class ClipStore:
    """Clips under clips/<key[:2]>/<key>.wav, each with <key>.json: {"identity", "file": {"bytes", "sha256"}}.

    A clip counts as present only while its file matches the size and checksum recorded when it was written;
    a truncated, emptied or replaced clip (or one without a record) is generated again.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._verified: dict[str, tuple[int, int]] = {}  # key -> (size, mtime_ns) last seen intact

    def path(self, key: str) -> Path:
        return self.root / "clips" / key[:2] / f"{key}.wav"

    def record_path(self, key: str) -> Path:
        return self.path(key).with_suffix(".json")

    def has(self, key: str) -> bool:
        path = self.path(key)
        try:
            stat = path.stat()
        except OSError:
            return False
        if self._verified.get(key) == (stat.st_size, stat.st_mtime_ns):
            return True
        try:
            record = json.loads(self.record_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        intact = (isinstance(record, dict) and isinstance(record.get("file"), dict)
                  and file_matches(path, record["file"]))
        if intact:
            self._verified[key] = (stat.st_size, stat.st_mtime_ns)
        else:
            self._verified.pop(key, None)
            log.warning("stored clip %s is damaged or unrecorded; it will be generated again", path)
        return intact

    def put(self, key: str, wave: np.ndarray, sample_rate: int, identity: dict[str, Any] | None = None) -> Path:
        path = write_wav(self.path(key), wave, sample_rate)
        # The record is written after the clip: a kill in between leaves a clip without a record, redone later.
        write_json(self.record_path(key), {"identity": identity, "file": file_record(path)}, sort_keys=True)
        self._verified.pop(key, None)
        return path

    def export(self, key: str, target: str | os.PathLike) -> Path:
        """Place the clip at `target` (a hard link when possible, else a copy).

        The new file replaces `target` in one step (never delete-then-create), and `target` must be a regular
        file name inside an existing run folder: callers build it from `fluxbench.inputs.safe_file_stem`."""
        return place_file(self.path(key), target)


def place_file(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put `source` at `target` as a hard link when possible, else a copy, replacing `target` in one step
    (never delete-then-create); `target` must be a regular file name inside an existing folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and not target.is_symlink() and os.path.samefile(source, target):
        return target
    if target.is_dir():
        raise FluxbenchError(f"{target}: a folder is in the way of a generated clip")
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return target
