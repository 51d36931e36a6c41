"""FluxMusic checkpoints: the official release format, safetensors, and trained-model folders.

Official files (`musicflow_{s,b,l,g}.pt`) are pickled dicts {"ema": state_dict, "opt": ..., "args": Namespace}.
They are read with `torch.load(weights_only=True)`, which never runs pickled code; `argparse.Namespace` (the
training arguments) is the one extra class allowed, because it only carries plain values.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from fluxbench import FluxbenchError
from fluxbench.atomic import atomic_path, write_json
from fluxbench.inputs import load_failure
from fluxbench.models.fluxmusic.configs import SIZES, SPEC_FILE, FluxMusicConfig, get_config
from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer

WEIGHTS_FILE = "transformer.safetensors"
# Wrappers that prefix every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(FluxbenchError):
    pass


@dataclass(frozen=True)
class DeferredTransformer:
    """A transformer whose config is known now and whose weights load on first use: generation encodes the
    text first, so the text encoders and the transformer never occupy the device together."""

    config: FluxMusicConfig
    load: Callable[[], FluxMusicTransformer]


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_state_dict(path: str | os.PathLike, entry: str = "ema") -> dict[str, torch.Tensor]:
    """The transformer weights in a checkpoint file: entry `entry` of an official .pt dict, a bare state dict
    (.pt), or a .safetensors file (keys optionally prefixed with "<entry>.")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
        prefix = f"{entry}."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return _strip_wrappers(state)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            blob = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(
            f"{path}: cannot be loaded safely (weights only, no pickled code): {load_failure(error)}") from None
    if not isinstance(blob, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors or an official checkpoint dict, got {type(blob).__name__}")
    if entry in blob and isinstance(blob[entry], Mapping):
        blob = blob[entry]
    elif not all(isinstance(v, torch.Tensor) for v in blob.values()):
        entries = ", ".join(sorted(k for k, v in blob.items() if isinstance(v, Mapping))) or "none"
        raise CheckpointError(f"{path}: no {entry!r} entry (dict entries present: {entries})")
    return _strip_wrappers(blob)


def expected_shapes(config: FluxMusicConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key and shape for a config, from a meta-device instance (allocates nothing)."""
    with torch.device("meta"):
        model = FluxMusicTransformer(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def closest_size(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """The registered size whose keys and shapes agree with most of `state`, and that number of keys."""
    scores = {}
    for size, config in SIZES.items():
        shapes = expected_shapes(config)
        scores[size] = sum(1 for k, v in state.items() if shapes.get(k) == tuple(v.shape))
    best = max(scores, key=scores.get)
    return best, scores[best]


def check_state_dict(state: Mapping[str, torch.Tensor], config: FluxMusicConfig, source: str = "checkpoint",
                     target: str = "the model") -> None:
    """Raise one line naming what does not fit: missing / unexpected keys, shape mismatches, the closest size."""
    shapes = expected_shapes(config)
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    mismatched = [f"{k} {list(state[k].shape)} vs {list(shapes[k])}"
                  for k in shapes if k in state and tuple(state[k].shape) != shapes[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched)):
        if keys:
            parts.append(f"{len(keys)} {label} (first: {', '.join(keys[:3])})")
    size, matched = closest_size(state)
    raise CheckpointError(
        f"{source} does not fit {target}: {'; '.join(parts)}; closest size: fluxmusic-{size.replace('_', '-')} "
        f"({matched}/{len(state)} keys fit)")


def _as_config(config_or_size: FluxMusicConfig | Mapping[str, Any] | str) -> FluxMusicConfig:
    if isinstance(config_or_size, FluxMusicConfig):
        return config_or_size
    if isinstance(config_or_size, str):
        return get_config(config_or_size.removeprefix("fluxmusic-").replace("-", "_"))
    return FluxMusicConfig.from_dict(dict(config_or_size))


def build_transformer(config_or_size: FluxMusicConfig | Mapping[str, Any] | str,
                      state: Mapping[str, torch.Tensor], source: str = "checkpoint",
                      device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> FluxMusicTransformer:
    """A transformer holding `state` (checked first, then loaded strictly without a second allocation)."""
    config = _as_config(config_or_size)
    check_state_dict(state, config, source, f"fluxmusic config (hidden {config.hidden_size}, depth "
                                            f"{config.depth}+{config.depth_single_blocks})")
    with torch.device("meta"):
        model = FluxMusicTransformer(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()


def load_transformer(path: str | os.PathLike, config_or_size: FluxMusicConfig | Mapping[str, Any] | str,
                     entry: str = "ema", device: torch.device | str = "cpu",
                     dtype: torch.dtype | None = None) -> FluxMusicTransformer:
    return build_transformer(config_or_size, load_state_dict(path, entry), str(path), device, dtype)


def save_official(path: str | os.PathLike, ema_state: Mapping[str, torch.Tensor], **entries: Any) -> Path:
    """Write {"ema": ..., **entries} with torch.save (the official layout), atomically."""
    with atomic_path(path) as tmp:
        torch.save({"ema": dict(ema_state), **entries}, tmp)
    return Path(path)


def save_model_folder(folder: str | os.PathLike, transformer: FluxMusicTransformer, spec: Mapping[str, Any]) -> Path:
    """A trained-model folder: fluxmusic.json (spec incl. the transformer config) + transformer.safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in transformer.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    write_json(folder / SPEC_FILE, {**spec, "transformer": transformer.config.to_dict()}, sort_keys=True)
    return folder


def read_spec(folder: str | os.PathLike) -> dict[str, Any]:
    """A model folder's fluxmusic.json, checked to be a JSON object with a 'transformer' config."""
    from fluxbench.inputs import read_json

    folder = Path(folder)
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise CheckpointError(f"{folder}: not a FluxMusic model folder (no {SPEC_FILE})")
    spec = read_json(spec_path, "model spec")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{spec_path}: expected a JSON object (the model spec)")
    if not isinstance(spec.get("transformer"), dict):
        raise CheckpointError(f"{spec_path}: missing field 'transformer' (the transformer config)")
    return spec


def load_model_folder(folder: str | os.PathLike, device: torch.device | str = "cpu",
                      dtype: torch.dtype | None = None) -> tuple[FluxMusicTransformer, dict[str, Any]]:
    folder = Path(folder)
    spec = read_spec(folder)
    model = load_transformer(folder / WEIGHTS_FILE, spec["transformer"], device=device, dtype=dtype)
    return model, spec
