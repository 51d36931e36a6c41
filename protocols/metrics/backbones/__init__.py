"""Embedding backbones for the metrics: what each produces and how to build one by name.

| name       | rate   | outputs                                   | used for        | weights                          |
|------------|--------|-------------------------------------------|-----------------|----------------------------------|
| vggish     | 16 kHz | frames: one 128-d vector per 0.96 s       | FAD             | vggish-10086976.pth (torchvggish)|
| panns-16k  | 16 kHz | embedding: 2048-d per clip; logits: 527   | FD, KL, IS      | Cnn14_16k_mAP=0.438.pth (Zenodo) |
| panns-32k  | 32 kHz | same                                      | FD, KL, IS      | Cnn14_mAP=0.431.pth (Zenodo)     |
| clap       | 48 kHz | audio: joint embedding; text via embed_text | CLAP score    | laion/larger_clap_music (hub)    |
| descriptor | 16 kHz | frames, embedding, logits (pitch classes) | descriptor_*    | none (signal statistics)         |

fadtk's FAD backbones (`clap-laion-music`, `MERT-v1-95M`, `encodec-emb`; frames and kadtk's 1 s kad_frames)
live in `backbones/fadtk.py`.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluxbench import FluxbenchError

BACKBONES = ("vggish", "panns-16k", "panns-32k", "clap", "descriptor", "clap-laion-music", "MERT-v1-95M",
             "encodec-emb")


class BackboneError(FluxbenchError):
    pass


@dataclass
class Backbone(abc.ABC):
    """Turns waveforms (float32 mono at `sample_rate`) into named arrays, one dict per clip."""

    name: str
    sample_rate: int
    weights_path: str | None = None
    weights_sha256: str | None = None
    device: str = "cpu"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Everything that changes the output for the same audio: the cache key's backbone part."""
        weights = self.weights_sha256 or "no-weights"
        facts = ",".join(f"{key}={value}" for key, value in sorted(self.details.items()))
        return f"{self.name}|{weights}|{self.frontend}|{facts}"

    @property
    @abc.abstractmethod
    def frontend(self) -> str:
        ...

    def load_wave(self, path: str | os.PathLike) -> np.ndarray:
        """The reference front-end (`frontend.reference_waveform`) at this backbone's rate, unless overridden."""
        from fluxbench.protocols.metrics.frontend import reference_waveform

        return reference_waveform(path, self.sample_rate)

    @property
    def wave_source(self) -> tuple:
        """Equal for backbones whose `load_wave` is the same function at the same rate: a scorer decodes and
        resamples each file once for all of them."""
        return (type(self).load_wave.__qualname__, self.sample_rate)

    @abc.abstractmethod
    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        ...

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "sample_rate": self.sample_rate, "frontend": self.frontend,
                "weights": self.weights_path, "weights_sha256": self.weights_sha256, **self.details}


def weight_sources(name: str, clap_model: str | None = None) -> list:
    """The WeightSource(s) a backbone needs (empty for the descriptor)."""
    if name == "vggish":
        from fluxbench.protocols.metrics.backbones.vggish import VGGISH_WEIGHTS

        return [VGGISH_WEIGHTS]
    if name in ("panns-16k", "panns-32k"):
        from fluxbench.protocols.metrics.backbones.panns import PANNS_WEIGHTS

        return [PANNS_WEIGHTS[name]]
    if name == "clap":
        from fluxbench.protocols.metrics.backbones.clap import clap_source

        return [clap_source(clap_model)]
    if name == "descriptor":
        return []
    if name in BACKBONES:
        from fluxbench.protocols.metrics.backbones.fadtk import SOURCES

        return [SOURCES[name]]
    raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


def load_backbone(name: str, weights: str | os.PathLike | None = None, device: str | None = None,
                  clap_long_clips: str = "first") -> Backbone:
    """Build a backbone from resolved weights (a file, or a save_pretrained folder for CLAP)."""
    device = device or _default_device()
    if name == "vggish":
        from fluxbench.protocols.metrics.backbones.vggish import VGGishBackbone

        return VGGishBackbone.from_weights(_required(name, weights), device=device)
    if name in ("panns-16k", "panns-32k"):
        from fluxbench.protocols.metrics.backbones.panns import Cnn14Backbone

        return Cnn14Backbone.from_weights(name, _required(name, weights), device=device)
    if name == "clap":
        from fluxbench.protocols.metrics.backbones.clap import ClapBackbone

        return ClapBackbone.from_pretrained(_required(name, weights), device=device, long_clips=clap_long_clips)
    if name == "descriptor":
        from fluxbench.protocols.metrics.backbones.descriptor import DescriptorBackbone

        return DescriptorBackbone()
    if name in BACKBONES:
        from fluxbench.protocols.metrics.backbones.fadtk import load_fadtk_backbone

        return load_fadtk_backbone(name, _required(name, weights), device=device)
    raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


def read_state_dict(path: str | os.PathLike, what: str) -> dict:
    """A state dict from .safetensors or a torch file, never executing pickled code; unwraps {"model": ...}."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        from fluxbench.inputs import load_failure

        raise BackboneError(f"{path}: cannot read {what} weights ({load_failure(error)}); expected a "
                            ".pth/.pt state dict or a .safetensors file") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path}: not a {what} state dict (expected a mapping of parameter names to tensors)")
    return state


def load_strict(module, state: dict, path: str | os.PathLike, what: str) -> None:
    """load_state_dict(strict) with a one-line error naming the first offending keys."""
    missing, unexpected = _key_mismatch(module.state_dict(), state)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
        raise BackboneError(f"{path}: not {what} weights ({'; '.join(parts)})")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise BackboneError(f"{path}: {what} weights do not fit the architecture ({first})") from None


def placed_for_inference(net, device: str):
    """`net` on `device`; on the CPU its 2-D convolution weights in channels-last layout, which oneDNN runs
    1.1-1.5x faster for CNN14 and VGGish (outputs differ by float rounding only, as between devices)."""
    import torch

    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else net


def _key_mismatch(expected: dict, given: dict) -> tuple[list[str], list[str]]:
    return sorted(set(expected) - set(given)), sorted(set(given) - set(expected))


def _required(name: str, weights) -> Path:
    if weights is None:
        raise BackboneError(f"backbone {name!r} needs weights; resolve them with weight_sources({name!r})")
    return Path(weights)


def _default_device() -> str:
    from fluxbench.runtime import resolve_device

    return str(resolve_device("auto"))
