"""The training loop: prepare a run, resume it from its newest checkpoint, take optimiser steps, save.

Exact resume: every random draw of step k (data order, caption choice, null-condition dropout, t and the
noise) comes from generators seeded by (seed, step, micro-batch) and by (seed, epoch) for the data
permutation, so restoring the step restores the random streams; the model, EMA, optimiser, scheduler and
the global torch RNG state are restored from the checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from fluxbench.atomic import write_json
from fluxbench.models.fluxmusic.checkpoint import load_state_dict, save_official
from fluxbench.models.fluxmusic.flow import get_objective
from fluxbench.models.fluxmusic.latent import LatentBounds
from fluxbench.models.fluxmusic.train_config import TrainConfig, TrainingError
from fluxbench.models.fluxmusic.train_data import LatentCache, Record, SampleStream, read_manifest, seed_of
from fluxbench.models.fluxmusic.train_runtime import Dist, LossLog, TrainingProgress, setup_distributed
from fluxbench.models.fluxmusic.train_state import (CHECKPOINT_DIR, EMA, TrainingStep, build_components,
                                                    checkpoint_files, export_model_folder, exported_step, lr_factor,
                                                    newest_readable_checkpoint, restore_rng, rng_state,
                                                    transformer_config)
from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer
from fluxbench.runtime import canonical_json

log = logging.getLogger("fluxbench.train")

CONFIG_FILE = "train.json"


@dataclass
class Run:
    """A prepared run: its data, networks, optimiser and the step it has reached."""

    config: TrainConfig
    dist: Dist
    device: torch.device
    out: Path
    records: list[Record]
    cache: LatentCache
    spec: dict[str, Any]  # the model folder's description (codec, conditioner, objective, sampling)
    transformer: FluxMusicTransformer
    text_encoder: nn.Module | None  # trained jointly; None when its embeddings are cached
    step_module: TrainingStep
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: EMA
    accumulation: int  # micro-batches per process and optimiser step
    step: int = 0


def train(config: TrainConfig, device_choice: str = "auto", progress: bool = True,
          stop_after: int | None = None) -> Path:
    """Run (or resume) training; returns the run folder, which is also a trained-model folder.

    `stop_after` ends the loop after that global step as if interrupted (checkpoint saved), for tests and
    for time-boxed jobs; the next call continues.
    """
    run = prepare(config, device_choice, progress)
    resume(run)
    model = run.step_module
    if run.dist.world > 1:
        model = nn.parallel.DistributedDataParallel(
            run.step_module, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and run.device.type == "cuda")
    autocast = (lambda: torch.autocast(run.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    stream = SampleStream(len(run.records), config.seed)
    losses = LossLog(run.out, run.step) if run.dist.main else None
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    reporter = TrainingProgress(run.step, last, bar=progress) if run.dist.main and run.step < last else None
    started = time.perf_counter()
    model.train()
    try:
        while run.step < last:
            mean_loss, grad_norm = optimiser_step(run, model, stream, autocast)
            if losses is not None:
                losses.write({"step": run.step, "loss": mean_loss, "grad_norm": grad_norm,
                              "lr": run.optimizer.param_groups[0]["lr"], "samples": run.step * config.global_batch,
                              "seconds": round(losses.seconds_before + time.perf_counter() - started, 3)})
            if not math.isfinite(mean_loss):
                raise TrainingError(f"loss is {mean_loss} at step {run.step}; lower --lr or check the data")
            if reporter is not None:
                reporter.update(run.step, mean_loss)
            if run.step % config.save_every == 0 or run.step == last:
                if run.dist.main:
                    save(run, lambda: losses.seconds_before + time.perf_counter() - started)
                run.dist.barrier()
    finally:
        if reporter is not None:
            reporter.close()
        if losses is not None:
            losses.close()
    return run.out


def prepare(config: TrainConfig, device_choice: str, progress: bool) -> Run:
    """Check the settings, claim the run folder, cache the data and build the networks and optimiser."""
    config.check()
    dist, device = setup_distributed(device_choice)
    if config.global_batch % (config.micro_batch * dist.world):
        raise TrainingError(f"global batch {config.global_batch} is not a multiple of micro batch "
                            f"{config.micro_batch} x {dist.world} process(es)")
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
    # what sampling clamps its clean-sample estimates to
    spec["latent_bounds"] = LatentBounds.of(cache.latent(i) for i in range(len(records))).spec()
    text_encoder = conditioner if trainable_text else None
    if text_encoder is None:
        del conditioner  # a frozen encoder (T5-XXL is ~10 GB) is not needed once its outputs are cached
    del codec

    transformer = FluxMusicTransformer(model_config).to(device)
    if config.init:
        transformer.load_state_dict(load_state_dict(config.init, "ema"), strict=True)
    objective = get_objective(config.objective, **(
        {"time_sampling": config.time_sampling, "time_location": config.time_location,
         "prediction": config.prediction}
        if config.objective == "rectified_flow" else {}))
    spec["objective_options"] = objective.options()
    step_module = TrainingStep(transformer, objective, null, config.null_prob, text_encoder).to(device)
    modules = {"transformer": transformer, **({"conditioner": text_encoder} if text_encoder is not None else {})}
    parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    # one fused kernel per step instead of a dozen small ops per tensor (3x faster on a tiny model's CPU step)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    ema = EMA(modules, config.ema_decay, config.ema_every)
    return Run(config, dist, device, out, records, cache, spec, transformer, text_encoder, step_module, parameters,
               optimizer, scheduler, ema, config.global_batch // (config.micro_batch * dist.world))


def resume(run: Run) -> None:
    """Continue from the newest readable checkpoint, if any; re-export a model folder that lags it."""
    if not checkpoint_files(run.out):
        return
    state = newest_readable_checkpoint(run.out, run.device, set_aside=run.dist.main)
    run.transformer.load_state_dict(state["model"])
    if run.text_encoder is not None:
        run.text_encoder.load_state_dict(state["conditioner"])
    run.ema.load({"transformer": state["ema"], **({"conditioner": state["conditioner_ema"]}
                                                   if run.text_encoder is not None else {})})
    run.optimizer.load_state_dict(state["opt"])
    run.scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"], run.device)
    run.step = int(state["step"])
    del state
    if run.dist.main:
        log.info("resuming %s from step %d", run.out, run.step)
        if exported_step(run.out) != run.step:  # killed between the checkpoint and the export: catch up now
            log.info("%s: the model folder lags the step-%d checkpoint; exporting it again", run.out, run.step)
            export_model_folder(run.out, run.transformer, run.ema, run.text_encoder,
                                {**run.spec, "training": {"step": run.step, "steps": run.config.steps}})


def optimiser_step(run: Run, model: nn.Module, stream: SampleStream,
                   autocast: Callable[[], Any]) -> tuple[float, float]:
    """One optimiser step over this process's micro-batches; (loss averaged over processes, gradient norm)."""
    config, dist, device, cache, records = run.config, run.dist, run.device, run.cache, run.records
    positions = run.step * config.global_batch + dist.rank * config.micro_batch * run.accumulation
    total = 0.0
    for micro in range(run.accumulation):
        # Seeded by the micro-batch's place in the global batch: N processes draw exactly what one
        # process accumulating N times as many micro-batches would.
        part = dist.rank * run.accumulation + micro
        generator = torch.Generator(device).manual_seed(seed_of(config.seed, run.step, part))
        choice = torch.Generator().manual_seed(seed_of(config.seed, "caption", run.step, part))
        indices = stream.indices(positions + micro * config.micro_batch, config.micro_batch)
        latents = torch.cat([cache.latent(i) for i in indices]).to(device)
        picks = [int(torch.randint(len(records[i].captions), (1,), generator=choice)) for i in indices]
        captions = txt = y = None
        if run.text_encoder is not None:
            captions = [records[i].captions[c] for i, c in zip(indices, picks)]
        else:
            pairs = [cache.text(i, c) for i, c in zip(indices, picks)]
            txt = torch.cat([p[0] for p in pairs]).to(device)
            y = torch.cat([p[1] for p in pairs]).to(device)
        sync = dist.world == 1 or micro == run.accumulation - 1
        with nullcontext() if sync else model.no_sync():  # gradients all-reduce on the last one
            with autocast():
                loss = model(latents, captions, txt, y, generator)
            (loss / run.accumulation).backward()
        total += loss.item() / run.accumulation
    grad_norm = torch.nn.utils.clip_grad_norm_(run.parameters, config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.ema.maybe_update(run.step)
    return dist.mean(total, device), float(grad_norm)


def save(run: Run, seconds: Callable[[], float]) -> None:
    """The checkpoint of this step (official layout, the oldest beyond `keep_checkpoints` pruned), then the
    trained-model folder with the EMA weights and the `seconds()` of training so far, resumed runs included."""
    entries = {"model": run.transformer.state_dict(), "opt": run.optimizer.state_dict(),
               "scheduler": run.scheduler.state_dict(), "step": run.step, "rng": rng_state(run.device),
               "config": asdict(run.config)}
    if run.text_encoder is not None:
        entries.update(conditioner=run.text_encoder.state_dict(), conditioner_ema=run.ema.shadow["conditioner"])
    save_official(run.out / CHECKPOINT_DIR / f"step_{run.step:07d}.pt", run.ema.shadow["transformer"], **entries)
    for old in checkpoint_files(run.out)[:-run.config.keep_checkpoints]:
        old.unlink()
    export_model_folder(run.out, run.transformer, run.ema, run.text_encoder,
                        {**run.spec, "training": {"step": run.step, "steps": run.config.steps,
                                                  "seconds": round(seconds(), 3)}})


def settings_differences(saved_values: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings that define a run (`TrainConfig.identity`) in which `config` differs from saved ones."""
    saved = TrainConfig.from_dict(saved_values).identity()
    return sorted(k for k, v in config.identity().items() if canonical_json(saved.get(k)) != canonical_json(v))


def _check_same_run(out: Path, config: TrainConfig) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    from fluxbench.inputs import read_json

    saved_values = read_json(path, "training config")
    if not isinstance(saved_values, dict):
        raise TrainingError(f"{path}: expected a JSON object of training settings")
    differing = settings_differences(saved_values, config)
    if differing:
        raise TrainingError(f"{out}: holds a run with different settings ({', '.join(differing)}); "
                            f"use another --out or remove the folder to start over")
