"""Content-addressed artifact store for generated clips.

A clip's key is the hash of everything that determines it (model fingerprint, prompt, per-item seed, duration,
generation settings), so a rerun, a resumed run or another shard finds it instead of generating it again.
Files are written atomically: a killed process leaves either the whole file or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fluxbench.audio import read_audio, write_wav


def content_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def derive_seed(seed: int, item_id: str) -> int:
    """A per-item seed that depends only on the run seed and the item, never on batch position."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class ClipStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "clips" / key[:2] / f"{key}.wav"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, wave: np.ndarray, sample_rate: int, identity: dict[str, Any] | None = None) -> Path:
        path = write_wav(self.path(key), wave, sample_rate)
        if identity is not None:  # provenance beside the clip, for humans and audits
            from fluxbench.results import write_json_atomic

            write_json_atomic(path.with_suffix(".json"), identity)
        return path

    def get(self, key: str) -> tuple[np.ndarray, int]:
        return read_audio(self.path(key))

    def export(self, key: str, target: str | os.PathLike) -> Path:
        """Place the clip at `target` (a hard link when possible, else a copy)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = self.path(key)
        if target.exists() or target.is_symlink():
            if target.is_file() and os.path.samefile(source, target):
                return target
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return target
