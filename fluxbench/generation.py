"""The one generation path behind `fluxbench run` and `fluxbench generate`: model loading, per-clip seeds and
identities, and batch-by-batch generation into the clip store.

Both commands go through here, so the same prompt id, caption, seed and settings give the same audio through
either. A clip's seed is derived from the run seed and its prompt's id (`fluxbench.runtime.derive_seed`), its
store key is the hash of everything that shapes it (`clip_identity`), and batches are fixed chunks of the prompt
list: a resumed or sharded run generates exactly what a plain run does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fluxbench import FluxbenchError, registry
from fluxbench.models.base import GenerationSettings, TextToMusicModel, as_model, check_output
from fluxbench.runtime import derive_seed
from fluxbench.store import ClipStore, content_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    id: str  # seeds the clip: the same id and run seed give the same clip seed in every command
    caption: str


def loading_options(entry: registry.Entry, options: dict[str, Any], batch_size: int,
                    progress: bool) -> dict[str, Any]:
    """What the model's factory receives: the caller's options, the caller's batch size (so the model splits
    no batch it is given), and whether to show progress when the model is trained on first use."""
    options = {**options, "batch_size": batch_size}
    if "folder" in entry.bound:
        options.pop("checkpoint", None)  # a model folder holds its own weights
    if entry.facts.get("trained_on_first_use"):
        options.setdefault("progress", progress)
    return options


IMPLICIT_OPTIONS = ("batch_size", "progress")  # what fluxbench passes on its own; a factory may not take them


def load_model(name: str, options: dict[str, Any], batch_size: int,
               progress: bool) -> tuple[registry.Entry, TextToMusicModel]:
    """A registered model, a model folder or an outside factory (`registry.model_entry`), loaded with
    `loading_options` and checked against the interface."""
    entry = registry.model_entry(name)
    options = loading_options(entry, options, batch_size, progress)
    if not entry.facts.get("external"):
        return entry, as_model(entry.create(**options), f"--model {name}")
    factory = entry.load()
    options = factory_options(factory, {**entry.bound, **options}, f"--model {name}")
    try:
        made = factory(**options)
    except FluxbenchError:
        raise
    except Exception as error:  # outside code may fail in any way; the user needs the one line that says why
        text = " ".join(str(error).split())[:300]
        raise FluxbenchError(f"--model {name}: the factory raised {type(error).__name__}: {text}") from None
    return entry, as_model(made, f"--model {name}")


def factory_options(factory: Callable[..., Any], options: dict[str, Any], where: str) -> dict[str, Any]:
    """The options an outside factory accepts: fluxbench's own (batch size, progress) only where its signature
    takes them, and a one-line error for an option the user gave that it does not take."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: pass only what the user gave
        return {k: v for k, v in options.items() if k not in IMPLICIT_OPTIONS}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    options = {k: v for k, v in options.items() if not (k not in parameters and v in (None, "auto"))}
    refused = [k for k in options if k not in parameters and k not in IMPLICIT_OPTIONS]
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        taken = ", ".join(parameters) or "no options"
        raise FluxbenchError(f"{where}: {flags} given, but the factory takes {taken}")
    return {k: v for k, v in options.items() if k in parameters}


def clip_identity(fingerprint: str, caption: str, seed: int, settings: GenerationSettings,
                  batch_size: int) -> dict[str, Any]:
    """Everything that determines a clip; its hash is the clip's key in the store. The batch size is part of
    it because batched kernels may round differently."""
    return {"model": fingerprint, "prompt": caption, "seed": seed, "duration": settings.duration,
            "settings": settings.record(), "batch_size": batch_size}


def clip_identities(model: TextToMusicModel, prompts: Sequence[Prompt], seed: int, settings: GenerationSettings,
                    batch_size: int) -> dict[str, dict[str, Any]]:
    """Prompt id -> the identity of its clip, whose "seed" is the clip's own seed."""
    fingerprint = model.fingerprint()
    return {prompt.id: clip_identity(fingerprint, prompt.caption, derive_seed(seed, prompt.id), settings, batch_size)
            for prompt in prompts}


def generate_clips(model: TextToMusicModel, store: ClipStore, prompts: Sequence[Prompt], seed: int,
                   settings: GenerationSettings, batch_size: int, shard: tuple[int, int] = (0, 1),
                   progress: bool = False, on_batch: Callable[[float], None] | None = None) -> dict[str, str]:
    """Make sure every prompt of this shard's batches has a stored clip; returns prompt id -> clip key.

    Shard (i, K) takes every K-th batch from the i-th; a batch whose clips are all stored is skipped whole.
    `on_batch` receives the seconds each generated batch took."""
    prompts = list(prompts)
    identities = clip_identities(model, prompts, seed, settings, batch_size)
    keys = {prompt_id: content_key(identity) for prompt_id, identity in identities.items()}
    batches = [prompts[start:start + batch_size] for start in range(0, len(prompts), batch_size)]
    index, count = shard
    mine = [batch for number, batch in enumerate(batches) if number % count == index]
    todo = [batch for batch in mine if not all(store.has(keys[prompt.id]) for prompt in batch)]
    if len(todo) < len(mine):
        log.info("resuming: %d of %d batches already generated", len(mine) - len(todo), len(mine))
    if todo:
        model.prepare([prompt.caption for batch in todo for prompt in batch], settings)
    for batch in _progress(todo, "generate", progress):
        started = time.perf_counter()
        audio = check_output(model.generate([prompt.caption for prompt in batch], settings=settings,
                                            seed=[identities[prompt.id]["seed"] for prompt in batch]),
                             model, len(batch), settings.duration)
        for row, prompt in enumerate(batch):
            store.put(keys[prompt.id], audio.waveforms[row], audio.sample_rate, identities[prompt.id])
        if on_batch is not None:
            on_batch(time.perf_counter() - started)
    return keys


def _progress(batches: list, label: str, enabled: bool):
    if not enabled:
        return batches
    from tqdm import tqdm

    return tqdm(batches, total=len(batches), desc=label, unit="batch", dynamic_ncols=True)
