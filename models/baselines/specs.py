"""Facts about every baseline checkpoint: hub id, native audio format, license, published generation defaults.

Pure data (no torch, transformers or diffusers), so the catalog and `fluxbench models` can list them instantly.
Sources: the hub model cards (license, sizes, training hours) and the libraries' own generation defaults
(transformers' MusicGen generation config, the diffusers pipelines' `__call__` defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Diffusers repos: the pipeline index and the component folders; skips any root-level checkpoint of another
# library (stable-audio-open-1.0 also ships a multi-GB stable-audio-tools `model.ckpt` at its root).
DIFFUSERS_FILES = ("model_index.json", "*/*")
# Transformers repos: configs, tokenizer and safetensors weights.
TRANSFORMERS_FILES = ("*.json", "*.model", "*.txt", "*.safetensors")


@dataclass(frozen=True)
class BaselineSpec:
    name: str  # registry name
    title: str  # human name
    family: str  # adapter module: musicgen, audioldm2, musicldm, stable_audio
    hub_repo: str
    sample_rate: int  # native output rate
    channels: int  # native output channels
    license: str
    parameters: int | None  # nominal total from the model card; None where the card gives none
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)  # the model's own generation settings
    max_duration: float | None = None  # seconds per clip the model can produce
    training_hours: int | None = None
    gated: bool = False  # the hub repo asks users to accept its license before download
    library: str = ""

    @property
    def allow_patterns(self) -> tuple[str, ...]:
        return DIFFUSERS_FILES if self.library.startswith("diffusers") else TRANSFORMERS_FILES

    @property
    def required(self) -> tuple[str, ...]:
        """What a local copy must contain to count as this checkpoint."""
        return ("model_index.json",) if self.library.startswith("diffusers") else ("config.json",)

    def facts(self) -> dict[str, Any]:
        """Registry facts, shown by `fluxbench models`."""
        return {"family": self.family, "parameters": self.parameters, "sample_rate": self.sample_rate,
                "weights": f"hf://{self.hub_repo}", "channels": self.channels, "license": self.license,
                "library": self.library, "training_hours": self.training_hours, "gated": self.gated,
                "max_duration": self.max_duration,
                **{f"default_{key}": value for key, value in self.defaults.items()}}


# MusicGen (Copet et al. 2023): 32 kHz EnCodec at 50 frames/s, 4 codebooks (8 for stereo), 20K hours of licensed
# music; weights CC-BY-NC 4.0. Defaults: top-k 250 sampling at temperature 1 with classifier-free guidance 3.
_MUSICGEN_DEFAULTS = {"guidance": 3.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0}
_MUSICGEN = dict(family="musicgen", sample_rate=32_000, license="CC-BY-NC-4.0", defaults=_MUSICGEN_DEFAULTS,
                 max_duration=30.0, training_hours=20_000,
                 library="transformers MusicgenForConditionalGeneration")
# AudioLDM 2 (Liu et al. 2024): 16 kHz mel VAE + HiFi-GAN; CC-BY-NC-SA 4.0. Pipeline defaults: 200 DDIM steps,
# guidance 3.5.
_AUDIOLDM2 = dict(family="audioldm2", sample_rate=16_000, channels=1, license="CC-BY-NC-SA-4.0",
                  defaults={"steps": 200, "guidance": 3.5, "negative_prompt": ""},
                  library="diffusers AudioLDM2Pipeline")

SPECS: dict[str, BaselineSpec] = {spec.name: spec for spec in (
    BaselineSpec("musicgen-small", "MusicGen small", hub_repo="facebook/musicgen-small", channels=1,
                 parameters=300_000_000, summary="MusicGen 300M text-to-music LM over 32 kHz EnCodec tokens",
                 **_MUSICGEN),
    BaselineSpec("musicgen-medium", "MusicGen medium", hub_repo="facebook/musicgen-medium", channels=1,
                 parameters=1_500_000_000, summary="MusicGen 1.5B (the paper's Table 3/4 MusicGen size)",
                 **_MUSICGEN),
    BaselineSpec("musicgen-large", "MusicGen large", hub_repo="facebook/musicgen-large", channels=1,
                 parameters=3_300_000_000, summary="MusicGen 3.3B text-to-music LM", **_MUSICGEN),
    BaselineSpec("musicgen-stereo-small", "MusicGen stereo small", hub_repo="facebook/musicgen-stereo-small",
                 channels=2, parameters=300_000_000, summary="MusicGen 300M, stereo fine-tune (downmixed to mono)",
                 **_MUSICGEN),
    BaselineSpec("musicgen-stereo-medium", "MusicGen stereo medium", hub_repo="facebook/musicgen-stereo-medium",
                 channels=2, parameters=1_500_000_000, summary="MusicGen 1.5B, stereo fine-tune (downmixed to mono)",
                 **_MUSICGEN),
    BaselineSpec("musicgen-stereo-large", "MusicGen stereo large", hub_repo="facebook/musicgen-stereo-large",
                 channels=2, parameters=3_300_000_000, summary="MusicGen 3.3B, stereo fine-tune (downmixed to mono)",
                 **_MUSICGEN),
    BaselineSpec("audioldm2", "AudioLDM 2", hub_repo="cvssp/audioldm2", parameters=1_100_000_000,
                 training_hours=1_150_000, summary="AudioLDM 2 base (audioldm2-full): general text-to-audio, 350M UNet",
                 **_AUDIOLDM2),
    BaselineSpec("audioldm2-large", "AudioLDM 2 large", hub_repo="cvssp/audioldm2-large", parameters=1_500_000_000,
                 training_hours=1_150_000, summary="AudioLDM 2 large: general text-to-audio, 750M UNet", **_AUDIOLDM2),
    BaselineSpec("audioldm2-music", "AudioLDM 2 music", hub_repo="cvssp/audioldm2-music", parameters=1_100_000_000,
                 training_hours=665_000, summary="AudioLDM 2 trained for text-to-music only, 350M UNet", **_AUDIOLDM2),
    # MusicLDM (Chen et al. 2024): AudioLDM-style latent diffusion with a music CLAP; pipeline defaults 200 steps,
    # guidance 2.0.
    BaselineSpec("musicldm", "MusicLDM", family="musicldm", hub_repo="ucsd-reach/musicldm", sample_rate=16_000,
                 channels=1, license="CC-BY-NC-SA-4.0", parameters=None,
                 summary="MusicLDM: latent diffusion with beat-synchronous mixup, CLAP text conditioning",
                 defaults={"steps": 200, "guidance": 2.0, "negative_prompt": ""},
                 library="diffusers MusicLDMPipeline"),
    # Stable Audio Open 1.0 (Evans et al. 2024): 44.1 kHz stereo, up to 47 s, T5 text + DiT over an Oobleck VAE;
    # Stability AI Community License, gated. Pipeline defaults 100 steps, guidance 7.0.
    BaselineSpec("stable-audio-open", "Stable Audio Open 1.0", family="stable_audio",
                 hub_repo="stabilityai/stable-audio-open-1.0", sample_rate=44_100, channels=2,
                 license="Stability-AI-Community", parameters=None, gated=True, max_duration=47.0,
                 summary="Stable Audio Open 1.0: 44.1 kHz stereo DiT (downmixed to mono); gated repo",
                 defaults={"steps": 100, "guidance": 7.0, "negative_prompt": ""},
                 library="diffusers StableAudioPipeline"),
)}


# The adapter class of each family, in the module named after the family.
FAMILY_CLASSES = {"musicgen": "MusicGenModel", "audioldm2": "AudioLDM2Model", "musicldm": "MusicLDMModel",
                  "stable_audio": "StableAudioModel"}


def factory_target(spec: BaselineSpec) -> str:
    """The registry target of a checkpoint: its family adapter's `load`, which the registry entry calls with the
    checkpoint's name bound (`name=spec.name`)."""
    return f"fluxbench.models.baselines.{spec.family}:{FAMILY_CLASSES[spec.family]}.load"
