"""What a training run holds and keeps: the networks and their EMA, the step's loss, the learning-rate
schedule, and the checkpoints and trained-model folder it writes and resumes from."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fluxbench.inputs import load_failure
from fluxbench.models.fluxmusic.checkpoint import save_model_folder
from fluxbench.models.fluxmusic.conditioner import TextConditioning
from fluxbench.models.fluxmusic.configs import FluxMusicConfig, get_config
from fluxbench.models.fluxmusic.train_config import TrainConfig, TrainingError
from fluxbench.models.fluxmusic.train_data import Record
from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer, music_ids, patchify, text_ids

log = logging.getLogger("fluxbench.train")

CHECKPOINT_DIR = "checkpoints"


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


def checkpoint_files(out: Path) -> list[Path]:
    return sorted((out / CHECKPOINT_DIR).glob("step_*.pt"))


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


_CHECKPOINT_ENTRIES = ("model", "ema", "opt", "scheduler", "rng", "step")


def newest_readable_checkpoint(out: Path, device: torch.device, set_aside: bool = True) -> dict[str, Any]:
    """The newest checkpoint in `out` that loads (weights only) and holds a whole training state.

    Unreadable newer ones (a damaged disk, a copy cut short) are skipped with a warning naming them and, with
    `set_aside`, renamed to *.pt.unreadable so that pruning never keeps them in place of a good one."""
    skipped = []
    for path in reversed(checkpoint_files(out)):
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
