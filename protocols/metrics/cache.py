"""Embedding cache keyed by (backbone fingerprint, audio content hash), never by path.

An entry is one `.npz` of the arrays a backbone returned for one file (no pickle), written atomically under
`<root>/<sha256(fingerprint)[:16]>/<content hash[:2]>/<content hash>.npz`; `fingerprint.txt` beside the entries
says which backbone, weights and front-end they belong to. Regenerating audio into the same folder changes
the content hash, so stale features are never reused (the reference library keys its cache by folder path).
An unreadable entry is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None

    def _folder(self, fingerprint: str) -> Path:
        return self.root / hashlib.sha256(fingerprint.encode()).hexdigest()[:16]

    def _entry(self, fingerprint: str, digest: str) -> Path:
        return self._folder(fingerprint) / digest[:2] / f"{digest}.npz"

    def get(self, fingerprint: str, digest: str) -> dict[str, np.ndarray] | None:
        if self.root is None:
            return None
        entry = self._entry(fingerprint, digest)
        if not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        except (OSError, ValueError, EOFError):
            return None

    def put(self, fingerprint: str, digest: str, arrays: dict[str, np.ndarray]) -> None:
        if self.root is None:
            return
        folder = self._folder(fingerprint)
        entry = self._entry(fingerprint, digest)
        entry.parent.mkdir(parents=True, exist_ok=True)
        label = folder / "fingerprint.txt"
        if not label.exists():
            label.write_text(fingerprint + "\n")
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
