"""Training data: the manifest, clips cropped and resampled alike, the latent cache, and the seeded order.

Every clip is encoded once into the cache (latents, and text embeddings for frozen encoders); the order in
which clips are drawn is a function of the seed and the step alone (`SampleStream`), so a resumed run draws
what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluxbench.atomic import atomic_path
from fluxbench.captions import json_records
from fluxbench.inputs import errors_as
from fluxbench.models.fluxmusic.train_config import TrainConfig, TrainingError
from fluxbench.runtime import content_hash


@dataclass(frozen=True)
class Record:
    path: str
    captions: tuple[str, ...]


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """JSON lines of {"path"|"wav", "caption"|"label", optional "captions": [...]}; relative paths are taken
    from the manifest's folder. The official layout (one JSON list of {"wav", "label"}) is read as well."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such manifest")
    with errors_as(TrainingError):
        rows = json_records(path, "manifest")
    records = []
    for number, row in rows:
        audio = row.get("path", row.get("wav")) if isinstance(row, dict) else None
        if not isinstance(audio, str) or not audio:
            raise TrainingError(f"{path}:{number}: missing field 'path' (or 'wav'): the audio file")
        captions = row["captions"] if row.get("captions") is not None else [row.get("caption", row.get("label"))]
        if not isinstance(captions, list) or not captions:
            raise TrainingError(f"{path}:{number}: field 'captions' must be a non-empty list of texts")
        if not all(isinstance(c, str) and c.strip() for c in captions):
            raise TrainingError(f"{path}:{number}: field 'caption' (or 'label', 'captions') must hold non-empty "
                                f"text")
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        records.append(Record(str(audio_path), tuple(captions)))
    if not records:
        raise TrainingError(f"{path}: the manifest lists no clips")
    return records


def load_clip(path: str, sample_rate: int, samples: int, normalize: bool) -> np.ndarray:
    """Mono at `sample_rate`, cropped from the start or zero-padded to `samples` (a fixed crop, so latents
    can be cached)."""
    from fluxbench.audio import fit_length, read_audio, resample, to_mono

    audio, rate = read_audio(path)
    wave = to_mono(audio)
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    wave = fit_length(wave, samples).astype(np.float32)
    if normalize:
        wave = wave - wave.mean()
        wave = 0.5 * wave / (np.abs(wave).max() + 1e-8)
    return wave


class LatentCache:
    """Latents (and, for frozen text encoders, text embeddings) of every clip, in safetensors shards.

    The folder name is a fingerprint of the inputs (files, captions, codec, conditioner, crop), so a changed
    manifest or codec gets a fresh cache; shards are written atomically and a half-built cache resumes.
    """

    SHARD = 256

    def __init__(self, folder: Path, size: int, with_text: bool) -> None:
        self.folder, self.size, self.with_text = folder, size, with_text
        self._handles: dict[int, Any] = {}

    @staticmethod
    def fingerprint(records: list[Record], config: TrainConfig, with_text: bool) -> str:
        files = [(r.path, os.path.getsize(r.path) if os.path.exists(r.path) else -1,
                  int(os.path.getmtime(r.path)) if os.path.exists(r.path) else -1, r.captions) for r in records]
        key = {"files": files, "codec": config.codec, "duration": config.duration, "normalize": config.normalize,
               "text": config.conditioner if with_text else None}
        return content_hash(key, 20)

    def shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:05d}.safetensors"

    @property
    def shards(self) -> int:
        return math.ceil(self.size / self.SHARD)

    def build(self, records: list[Record], codec, conditioner, config: TrainConfig, rank: int, world: int,
              device: torch.device, progress: bool) -> None:
        from safetensors.torch import save_file

        samples = int(round(config.duration * codec.sample_rate))
        todo = [s for s in range(self.shards) if s % world == rank and not self.shard_path(s).is_file()]
        iterator = todo
        if progress and todo:
            from tqdm.auto import tqdm

            iterator = tqdm(todo, desc="caching latents", unit="shard")
        for shard in iterator:
            rows = records[shard * self.SHARD:(shard + 1) * self.SHARD]
            tensors: dict[str, torch.Tensor] = {}
            latents = []
            for start in range(0, len(rows), 32):
                waves = np.stack([load_clip(r.path, codec.sample_rate, samples, config.normalize)
                                  for r in rows[start:start + 32]])
                with torch.no_grad():
                    latents.append(codec.encode(torch.from_numpy(waves).to(device)).float().cpu())
            tensors["latents"] = torch.cat(latents).contiguous()
            if self.with_text:  # every caption of 32 clips per encoder call, split back per clip
                for start in range(0, len(rows), 32):
                    chunk = rows[start:start + 32]
                    with torch.no_grad():
                        encoded = conditioner.encode([c for r in chunk for c in r.captions])
                    offset = 0
                    for index, record in enumerate(chunk, start):
                        span = slice(offset, offset + len(record.captions))
                        tensors[f"txt.{index}"] = encoded.txt[span].to(torch.bfloat16).cpu().contiguous()
                        tensors[f"y.{index}"] = encoded.y[span].to(torch.bfloat16).cpu().contiguous()
                        offset += len(record.captions)
            with atomic_path(self.shard_path(shard)) as tmp:
                save_file(tensors, str(tmp))

    def _open(self, shard: int):
        if shard not in self._handles:
            from safetensors import safe_open

            self._handles[shard] = safe_open(str(self.shard_path(shard)), framework="pt")
        return self._handles[shard]

    def latent(self, index: int) -> torch.Tensor:
        shard, row = divmod(index, self.SHARD)
        return self._open(shard).get_slice("latents")[row:row + 1]

    def text(self, index: int, caption: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard, row = divmod(index, self.SHARD)
        handle = self._open(shard)
        return (handle.get_slice(f"txt.{row}")[caption:caption + 1].float(),
                handle.get_slice(f"y.{row}")[caption:caption + 1].float())


def seed_of(*parts: int | str) -> int:
    """A 63-bit seed from the parts: every random draw of training is seeded by where it happens."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class SampleStream:
    """The infinite training order: epoch e is a permutation seeded by (seed, e); step k consumes positions
    [k * global_batch, (k + 1) * global_batch) of the concatenated epochs. A function of the step alone."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed(seed_of(self.seed, "epoch", epoch))
            self._permutations[epoch] = torch.randperm(self.size, generator=generator)
        return self._permutations[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        return [int(self._permutation(p // self.size)[p % self.size]) for p in range(start, start + count)]
