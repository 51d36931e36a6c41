"""Training FluxMusic: rectified flow (or the DDPM/DDIM ablation) with EMA, DDP, caching and exact resume.

A run folder holds everything:
    train.json                  the training configuration (a rerun must match it, then it resumes)
    loss.csv                    one row per optimiser step (step, loss, grad_norm, lr, samples, seconds)
    checkpoints/step_XXXXXXX.pt the official layout: {"ema": transformer EMA state, "model", "opt", ...}
    fluxmusic.json + transformer.safetensors (+ conditioner.safetensors)
                                a trained-model folder holding the EMA weights, rewritten at every save
    cache/                      latents (and frozen text embeddings) computed once, read every epoch
    tensorboard/                when TensorBoard is installed

Exact resume: every random draw of step k (data order, caption choice, null-condition dropout, t and the
noise) comes from generators seeded by (seed, step, micro-batch) and by (seed, epoch) for the data
permutation, so restoring the step restores the random streams; the model, EMA, optimiser, scheduler and
the global torch RNG state are restored from the checkpoint. A run stopped after step k and resumed logs
the same losses after k as one that never stopped.

Distributed: launch with `torchrun --nproc_per_node N -m fluxbench.cli train ...`; each rank takes its own
slice of every global batch, DDP averages the gradients, rank 0 builds nothing twice, logs and saves.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluxbench import FluxbenchError
from fluxbench.atomic import atomic_path, write_json, write_text
from fluxbench.inputs import load_failure
from fluxbench.models.fluxmusic.checkpoint import load_state_dict, save_model_folder, save_official
from fluxbench.models.fluxmusic.conditioner import TextConditioning
from fluxbench.models.fluxmusic.configs import FluxMusicConfig, get_config
from fluxbench.models.fluxmusic.flow import get_objective
from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer, music_ids, patchify, text_ids

log = logging.getLogger("fluxbench.train")

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "train.json"
LOSS_FILE = "loss.csv"
LOSS_COLUMNS = ["step", "loss", "grad_norm", "lr", "samples", "seconds"]
LR_SCHEDULES = ("constant", "cosine")


class TrainingError(FluxbenchError):
    pass


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper's (Section 4.1) where it states them."""

    manifest: str
    out: str
    size: str = "small"
    transformer: dict[str, Any] = field(default_factory=dict)  # overrides of the size's config fields
    init: str | None = None  # a checkpoint whose "ema" weights start the run (fine-tuning)
    conditioner: dict[str, Any] = field(default_factory=lambda: {"kind": "t5-clap"})
    codec: dict[str, Any] = field(default_factory=lambda: {"kind": "audioldm2"})
    duration: float = 10.24
    normalize: bool = True  # remove DC, peak 0.5, as the official data loader does
    objective: str = "rectified_flow"
    time_sampling: str = "logit_normal"
    steps: int = 200_000
    global_batch: int = 128
    micro_batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # or "cosine": half-cosine decay to zero after the warm-up
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    ema_every: int = 100
    null_prob: float = 0.1
    precision: str = "auto"  # "auto" = bf16 autocast on GPU, float32 on CPU
    seed: int = 0
    save_every: int = 1000
    keep_checkpoints: int = 3
    cache_dir: str | None = None
    weights_dir: str | None = None  # where hub components are looked up first (see fluxbench.weights)
    sample_steps: int = 50  # generation defaults written into the model folder
    guidance: float = 3.5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"training config: unknown field(s) {unknown}")
        return cls(**values)

    def check(self) -> None:
        for name, value in asdict(self).items():  # a config file can hold anything JSON can
            expected = next((f.type for f in fields(self) if f.name == name), None)
            if expected in ("int", int) and (not isinstance(value, int) or isinstance(value, bool)):
                raise TrainingError(f"training config: {name} must be an integer, got {value!r}")
            if expected in ("float", float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                 or not math.isfinite(value)):
                raise TrainingError(f"training config: {name} must be a finite number, got {value!r}")
            if expected in ("str", str) and not isinstance(value, str):
                raise TrainingError(f"training config: {name} must be text, got {value!r}")
            if expected == "str | None" and value is not None and not isinstance(value, str):
                raise TrainingError(f"training config: {name} must be text, got {value!r}")
            if expected == "dict[str, Any]" and not isinstance(value, dict):
                raise TrainingError(f"training config: {name} must be a JSON object, got {value!r}")
        if self.lr < 0 or self.weight_decay < 0 or not self.grad_clip > 0:  # lr 0 keeps the initial weights
            raise TrainingError(f"training config: lr and weight_decay must be >= 0, grad_clip > 0 (got lr "
                                f"{self.lr}, grad_clip {self.grad_clip}, weight_decay {self.weight_decay})")
        if not 0 < self.duration <= 3600:
            raise TrainingError(f"training config: duration must be in (0, 3600] seconds, got {self.duration}")
        if self.warmup_steps < 0 or self.sample_steps < 1:
            raise TrainingError("training config: warmup_steps must be >= 0 and sample_steps >= 1")
        if self.steps < 1 or self.global_batch < 1 or self.micro_batch < 1:
            raise TrainingError("training config: steps, global_batch and micro_batch must be >= 1")
        if not 0 <= self.null_prob <= 1 or not 0 <= self.ema_decay <= 1 or self.ema_every < 1:
            raise TrainingError("training config: null_prob and ema_decay must be in [0, 1], ema_every >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"training config: precision {self.precision!r}; expected auto, bf16 or fp32")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"training config: lr_schedule {self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        if self.save_every < 1 or self.keep_checkpoints < 1:
            raise TrainingError("training config: save_every and keep_checkpoints must be >= 1")

    # What must agree for a rerun to continue the same run (everything but bookkeeping of length/saving).
    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("out", "steps", "save_every", "keep_checkpoints", "cache_dir", "weights_dir", "sample_steps",
                     "guidance"):
            values.pop(name)
        return values


# ---- data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    path: str
    captions: tuple[str, ...]


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """JSON lines of {"path"|"wav", "caption"|"label", optional "captions": [...]}; relative paths are taken
    from the manifest's folder. The official layout (one JSON list of {"wav", "label"}) is read as well."""
    from fluxbench.inputs import read_text

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such manifest")
    text = read_text(path, "manifest")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            listed = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise TrainingError(f"{path}: invalid JSON ({error})") from None
        if not isinstance(listed, list):
            raise TrainingError(f"{path}: expected a JSON list of {{\"wav\", \"label\"}} objects or JSON lines")
        rows = [(i + 1, row) for i, row in enumerate(listed)]
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise TrainingError(f"{path}:{number}: invalid JSON line ({error.msg})") from None
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
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]

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


def _seed(*parts: int) -> int:
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
            generator = torch.Generator().manual_seed(_seed(self.seed, "epoch", epoch))
            self._permutations[epoch] = torch.randperm(self.size, generator=generator)
        return self._permutations[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        return [int(self._permutation(p // self.size)[p % self.size]) for p in range(start, start + count)]


# ---- model pieces ---------------------------------------------------------------------------------------
class EMA:
    """Exponential moving averages of named modules' state dicts, updated every `every` optimiser steps."""

    def __init__(self, modules: dict[str, nn.Module], decay: float, every: int) -> None:
        self.modules, self.decay, self.every = modules, decay, every
        self.shadow = {name: {k: v.detach().clone() for k, v in module.state_dict().items()}
                       for name, module in modules.items()}

    @torch.no_grad()
    def maybe_update(self, step: int) -> None:
        if step % self.every:
            return
        for name, module in self.modules.items():
            for key, value in module.state_dict().items():
                average = self.shadow[name][key]
                if average.is_floating_point():
                    average.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
                else:
                    average.copy_(value)

    def load(self, shadow: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, state in shadow.items():
            for key, value in state.items():
                self.shadow[name][key].copy_(value)


class TrainingStep(nn.Module):
    """One micro-batch's loss: text conditioning with per-encoder null dropout, then the objective.

    Wrapping this module (transformer + trainable text encoder) in DDP synchronises every trainable weight.
    """

    def __init__(self, transformer: FluxMusicTransformer, objective, null: TextConditioning,
                 null_prob: float, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.transformer = transformer
        self.text_encoder = text_encoder  # trained jointly (vocab encoder); None when embeddings are cached
        self.objective = objective
        self.null_prob = null_prob
        self.register_buffer("null_txt", null.txt.detach(), persistent=False)
        self.register_buffer("null_y", null.y.detach(), persistent=False)

    def forward(self, latents: torch.Tensor, captions: list[str] | None, txt: torch.Tensor | None,
                y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        batch, _, height, width = latents.shape
        if self.text_encoder is not None:
            encoded = self.text_encoder.encode(captions)
            txt, y = encoded.txt, encoded.y
            null = self.text_encoder.null(1)
            null_txt, null_y = null.txt, null.y
        else:
            null_txt, null_y = self.null_txt, self.null_y
        # Each encoder's output is replaced by its null embedding independently (classifier-free guidance).
        drop_txt = torch.rand(batch, generator=generator, device=latents.device) < self.null_prob
        drop_y = torch.rand(batch, generator=generator, device=latents.device) < self.null_prob
        txt = torch.where(drop_txt[:, None, None], null_txt.to(txt.dtype), txt)
        y = torch.where(drop_y[:, None], null_y.to(y.dtype), y)
        cond = {"img_ids": music_ids(batch, height, width, latents.device), "txt": txt,
                "txt_ids": text_ids(batch, txt.shape[1], latents.device), "y": y}
        return self.objective.training_loss(self.transformer, patchify(latents), cond, generator=generator)


def transformer_config(config: TrainConfig, codec, conditioner) -> FluxMusicConfig:
    """The size's config with the widths the codec and text encoder dictate, plus explicit overrides."""
    values = get_config(config.size).to_dict()
    values.update(in_channels=4 * codec.latent_channels, context_in_dim=conditioner.context_dim,
                  vec_in_dim=conditioner.vector_dim)
    values.update(config.transformer)
    return FluxMusicConfig.from_dict(values)


def build_components(config: TrainConfig, records: list[Record], device: torch.device):
    """(codec, text conditioner) for a fresh run; the vocab encoder's vocabulary comes from the captions."""
    from fluxbench.models.fluxmusic.latent import build_codec

    hub = {"weights_dir": config.weights_dir, "device": device}
    codec = build_codec(dict(config.codec), None, **(hub if config.codec.get("kind") != "mel" else {}))
    if config.conditioner.get("kind") == "vocab":
        from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner

        options = {k: v for k, v in config.conditioner.items() if k != "kind"}
        conditioner = VocabConditioner.from_captions((c for r in records for c in r.captions), **options)
    else:
        from fluxbench.models.fluxmusic.conditioner import build_conditioner

        conditioner = build_conditioner(dict(config.conditioner), None, **hub)
    if isinstance(conditioner, nn.Module):
        conditioner = conditioner.to(device)
    return codec, conditioner


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning-rate multiplier after `step` optimiser steps: linear warm-up, then the schedule."""
    warmup = config.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, config.steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


# ---- distributed ----------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.item() / self.world


def setup_distributed(device_choice: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available")
    if world > 1:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
        dist = Dist(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
    else:
        dist = Dist()
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
        return dist, torch.device("cuda", dist.local_rank)
    return dist, torch.device("cpu")


# ---- the loop -------------------------------------------------------------------------------------------
def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINT_DIR).glob("step_*.pt"))


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class LossLog:
    """loss.csv (rank 0), truncated to the resumed step so a resumed run continues one clean curve."""

    def __init__(self, out: Path, resume_step: int) -> None:
        self.path = out / LOSS_FILE
        rows = []
        if self.path.is_file() and resume_step > 0:
            with self.path.open(encoding="utf-8", errors="replace", newline="") as handle:
                rows = [row for row in csv.DictReader(handle)
                        if _whole_row(row) and int(row["step"]) <= resume_step]
        self.seconds_before = float(rows[-1]["seconds"]) if rows else 0.0  # time spent before the resume
        kept = io.StringIO()
        writer = csv.DictWriter(kept, LOSS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, kept.getvalue())  # the resumed curve replaces the old file in one step
        self._handle = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, LOSS_COLUMNS)
        self._board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # TensorBoard is optional
            pass

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._handle.flush()
        if self._board is not None:
            for key in ("loss", "grad_norm", "lr"):
                self._board.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        self._handle.close()
        if self._board is not None:
            self._board.close()


class TrainingProgress:
    """Step, loss, steps/s and time left: a bar on a terminal, otherwise a log line about every 5%."""

    def __init__(self, start: int, last: int, bar: bool) -> None:
        self.start, self.last = start, last
        self.started = time.perf_counter()
        self.every = max(1, (last - start) // 20)
        self.bar = None
        if bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=last, initial=start, desc="training", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        if (step - self.start) % self.every and step != self.last:
            return
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        left = (self.last - step) / rate if rate > 0 else 0.0
        log.info("training step %d/%d  loss %.4f  %.2f steps/s  %s left", step, self.last, loss, rate,
                 _clock(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s"


def _whole_row(row: dict[str, str | None]) -> bool:
    """False for a row cut short (a kill during the append) or otherwise unreadable; it is dropped on resume."""
    try:
        int(row["step"])
        for column in LOSS_COLUMNS[1:]:
            float(row[column])
        return True
    except (TypeError, ValueError, KeyError):
        return False


def read_losses(out: str | os.PathLike) -> list[dict[str, float]]:
    with (Path(out) / LOSS_FILE).open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _check_same_run(out: Path, config: TrainConfig) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    from fluxbench.inputs import read_json

    saved_values = read_json(path, "training config")
    if not isinstance(saved_values, dict):
        raise TrainingError(f"{path}: expected a JSON object of training settings")
    saved = TrainConfig.from_dict(saved_values).identity()
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)  # noqa: E731
    differing = sorted(k for k, v in config.identity().items() if not same(saved.get(k), v))
    if differing:
        raise TrainingError(f"{out}: holds a run with different settings ({', '.join(differing)}); "
                            f"use another --out or remove the folder to start over")


def train(config: TrainConfig, device_choice: str = "auto", progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Run (or resume) training; returns the run folder, which is also a trained-model folder.

    `stop_after` ends the loop after that global step as if interrupted (checkpoint saved), for tests and
    for time-boxed jobs; the next call continues.
    """
    config.check()
    dist, device = setup_distributed(device_choice)
    if config.global_batch % (config.micro_batch * dist.world):
        raise TrainingError(f"global batch {config.global_batch} is not a multiple of micro batch "
                            f"{config.micro_batch} x {dist.world} process(es)")
    accumulation = config.global_batch // (config.micro_batch * dist.world)
    out = Path(config.out)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out, config)
        write_json(out / CONFIG_FILE, asdict(config), sort_keys=True)
    dist.barrier()

    records = read_manifest(config.manifest)
    torch.manual_seed(config.seed)  # identical initial weights on every rank and in every rerun
    codec, conditioner = build_components(config, records, device)
    trainable_text = bool(getattr(conditioner, "trainable", False))
    model_config = transformer_config(config, codec, conditioner)
    cache_root = Path(config.cache_dir) if config.cache_dir else out / "cache"
    cache = LatentCache(cache_root / LatentCache.fingerprint(records, config, not trainable_text), len(records),
                        with_text=not trainable_text)
    cache.folder.mkdir(parents=True, exist_ok=True)
    cache.build(records, codec, conditioner, config, dist.rank, dist.world, device, progress and dist.main)
    dist.barrier()
    with torch.no_grad():
        null = conditioner.null(1)
    spec = {"objective": config.objective, "conditioner": conditioner.spec(), "codec": codec.spec(),
            "sample_rate": codec.sample_rate, "duration": config.duration,
            "sampling": {"steps": config.sample_steps, "guidance": config.guidance}}
    spec["latent_shape"] = list(cache.latent(0).shape[1:])
    text_encoder = conditioner if trainable_text else None
    if text_encoder is None:
        del conditioner  # a frozen encoder (T5-XXL is ~10 GB) is not needed once its outputs are cached
    del codec

    transformer = FluxMusicTransformer(model_config).to(device)
    if config.init:
        transformer.load_state_dict(load_state_dict(config.init, "ema"), strict=True)
    objective = get_objective(config.objective, **(
        {"time_sampling": config.time_sampling} if config.objective == "rectified_flow" else {}))
    spec["objective_options"] = objective.options()
    step_module = TrainingStep(transformer, objective, null, config.null_prob, text_encoder).to(device)
    modules = {"transformer": transformer, **({"conditioner": text_encoder} if text_encoder is not None else {})}
    parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    # one fused kernel per step instead of a dozen small ops per tensor (3x faster on a tiny model's CPU step)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    ema = EMA(modules, config.ema_decay, config.ema_every)

    step = 0
    state = newest_readable_checkpoint(out, device, set_aside=dist.main) if _checkpoints(out) else None
    if state is not None:
        transformer.load_state_dict(state["model"])
        if text_encoder is not None:
            text_encoder.load_state_dict(state["conditioner"])
        ema.load({"transformer": state["ema"], **({"conditioner": state["conditioner_ema"]}
                                                   if text_encoder is not None else {})})
        optimizer.load_state_dict(state["opt"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"], device)
        step = int(state["step"])
        del state
        if dist.main:
            log.info("resuming %s from step %d", out, step)
            if exported_step(out) != step:  # killed between the checkpoint and the export: catch up now
                log.info("%s: the model folder lags the step-%d checkpoint; exporting it again", out, step)
                export_model_folder(out, transformer, ema, text_encoder,
                                    {**spec, "training": {"step": step, "steps": config.steps}})

    model = step_module
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    def save() -> None:
        if not dist.main:
            return
        entries = {"model": transformer.state_dict(), "opt": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "step": step, "rng": _rng_state(device),
                   "config": asdict(config)}
        if text_encoder is not None:
            entries.update(conditioner=text_encoder.state_dict(), conditioner_ema=ema.shadow["conditioner"])
        save_official(out / CHECKPOINT_DIR / f"step_{step:07d}.pt", ema.shadow["transformer"], **entries)
        for old in _checkpoints(out)[:-config.keep_checkpoints]:
            old.unlink()
        seconds = losses.seconds_before + time.perf_counter() - started if losses is not None else None
        export_model_folder(out, transformer, ema, text_encoder,
                            {**spec, "training": {"step": step, "steps": config.steps,
                                                  "seconds": round(seconds, 3)}})

    stream = SampleStream(len(records), config.seed)
    losses = LossLog(out, step) if dist.main else None
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    reporter = TrainingProgress(step, last, bar=progress) if dist.main and step < last else None
    started = time.perf_counter()
    model.train()
    try:
        while step < last:
            positions = step * config.global_batch + dist.rank * config.micro_batch * accumulation
            total = 0.0
            for micro in range(accumulation):
                # Seeded by the micro-batch's place in the global batch: N processes draw exactly what one
                # process accumulating N times as many micro-batches would.
                part = dist.rank * accumulation + micro
                generator = torch.Generator(device).manual_seed(_seed(config.seed, step, part))
                choice = torch.Generator().manual_seed(_seed(config.seed, "caption", step, part))
                indices = stream.indices(positions + micro * config.micro_batch, config.micro_batch)
                latents = torch.cat([cache.latent(i) for i in indices]).to(device)
                picks = [int(torch.randint(len(records[i].captions), (1,), generator=choice)) for i in indices]
                captions = txt = y = None
                if text_encoder is not None:
                    captions = [records[i].captions[c] for i, c in zip(indices, picks)]
                else:
                    pairs = [cache.text(i, c) for i, c in zip(indices, picks)]
                    txt = torch.cat([p[0] for p in pairs]).to(device)
                    y = torch.cat([p[1] for p in pairs]).to(device)
                sync = dist.world == 1 or micro == accumulation - 1
                with nullcontext() if sync else model.no_sync():  # gradients all-reduce on the last one
                    with autocast():
                        loss = model(latents, captions, txt, y, generator)
                    (loss / accumulation).backward()
                total += loss.item() / accumulation
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            ema.maybe_update(step)
            mean_loss = dist.mean(total, device)
            if losses is not None:
                losses.write({"step": step, "loss": mean_loss, "grad_norm": float(grad_norm),
                              "lr": optimizer.param_groups[0]["lr"], "samples": step * config.global_batch,
                              "seconds": round(losses.seconds_before + time.perf_counter() - started, 3)})
            if not math.isfinite(mean_loss):
                raise TrainingError(f"loss is {mean_loss} at step {step}; lower --lr or check the data")
            if reporter is not None:
                reporter.update(step, mean_loss)
            if step % config.save_every == 0 or step == last:
                save()
                dist.barrier()
    finally:
        if reporter is not None:
            reporter.close()
        if losses is not None:
            losses.close()
    return out


_CHECKPOINT_ENTRIES = ("model", "ema", "opt", "scheduler", "rng", "step")


def newest_readable_checkpoint(out: Path, device: torch.device, set_aside: bool = True) -> dict[str, Any]:
    """The newest checkpoint in `out` that loads (weights only) and holds a whole training state.

    Unreadable newer ones (a damaged disk, a copy cut short) are skipped with a warning naming them and, with
    `set_aside`, renamed to *.pt.unreadable so that pruning never keeps them in place of a good one."""
    skipped = []
    for path in reversed(_checkpoints(out)):
        try:
            state = torch.load(path, map_location=device, weights_only=True)
            missing = [k for k in _CHECKPOINT_ENTRIES if not isinstance(state, dict) or k not in state]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
        except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for damage
            reason = load_failure(error)
            log.warning("skipping unreadable checkpoint %s (%s)", path, reason)
            skipped.append(path)
            continue
        if set_aside:
            for bad in skipped:
                os.replace(bad, bad.with_name(bad.name + ".unreadable"))
        if skipped:
            log.warning("resuming from the older %s instead", path.name)
        return state
    raise TrainingError(f"{out / CHECKPOINT_DIR}: none of the {len(skipped)} checkpoint(s) can be read "
                        f"(first: {skipped[0].name}); move them away to start over")


def exported_step(out: Path) -> int | None:
    """The training step whose weights the model folder in `out` holds (None: no complete export)."""
    from fluxbench.models.fluxmusic.checkpoint import SPEC_FILE, WEIGHTS_FILE

    try:
        spec = json.loads((out / SPEC_FILE).read_text(encoding="utf-8"))
        step = spec["training"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) and (out / WEIGHTS_FILE).is_file() else None


def export_model_folder(out: Path, transformer: FluxMusicTransformer, ema: EMA, text_encoder: nn.Module | None,
                        spec: dict[str, Any]) -> None:
    """Write the EMA weights as a trained-model folder (what sampling loads).

    fluxmusic.json, which records the step, is written last: a kill part-way leaves it naming the older step,
    and the next run sees the lag and exports again."""
    if text_encoder is not None:
        encoder = type(text_encoder).from_spec(text_encoder.spec())
        encoder.load_state_dict(ema.shadow["conditioner"])
        encoder.save(out)
    averaged = FluxMusicTransformer(transformer.config)
    averaged.load_state_dict(ema.shadow["transformer"])
    save_model_folder(out, averaged, spec)


# ---- the offline demo ---------------------------------------------------------------------------------
DEMO_OUT = "runs/demo-model"
DEMO_STEPS = 1000


def demo_config(out: str = DEMO_OUT, clips: int = 512, seed: int = 0, **overrides: Any) -> TrainConfig:
    """A small FluxMusic on the synthetic demo corpus, sized for two CPU cores and a few minutes.

    2.56 s clips; the weight-free mel codec without level normalisation, each frame's 64 mel bins folded into
    16 channels x 4 (16 x 256 x 4, so 256 music tokens of 2 frames x 32 bins: pitch sits in a token's channels)
    and the `demo` transformer (width 128); the vocabulary text encoder with a bag-of-words pooled vector,
    which a short run learns to read where a mean-pooled one is ignored. Small batches of 8 for 1,000 steps:
    at this budget, twice the updates on half the batch reach a lower loss for the same clips seen. A higher
    learning rate with a cosine decay and a faster EMA than the paper's, because the run is a thousand steps
    rather than hundreds of thousands; guidance 2.0, where the prompt is followed with less overshoot in
    level than at 3.5.
    """
    from fluxbench.protocols.sets.demo import DemoSet

    if "manifest" not in overrides:  # the demo corpus, rendered on first use
        corpus = DemoSet("train", size=clips, seed=seed)
        overrides = {"manifest": str(corpus.write_manifest()), "duration": corpus.duration, **overrides}
    values: dict[str, Any] = dict(
        out=out, size="demo",
        conditioner={"kind": "vocab", "context_dim": 48, "vector_dim": 32, "max_tokens": 32,
                     "pooling": "bag-of-words"},
        codec={"kind": "mel", "time_fold": 1, "freq_fold": 16, "normalize": False}, normalize=False,
        steps=DEMO_STEPS, global_batch=8, micro_batch=8, lr=1e-3, warmup_steps=40, lr_schedule="cosine",
        ema_decay=0.99, ema_every=1, save_every=250, seed=seed, sample_steps=25, guidance=2.0)
    values.update(overrides)
    return TrainConfig.from_dict(values)
