"""AudioLDM 2 (diffusers `AudioLDM2Pipeline`): CLAP + Flan-T5 text, a GPT-2 that turns them into an "audio
language of thought", a latent diffusion UNet over the 16 kHz mel VAE, and a HiFi-GAN vocoder."""

from __future__ import annotations

from typing import Any

from fluxbench.models.baselines.common import DiffusersModel


class AudioLDM2Model(DiffusersModel):
    family = "audioldm2"
    pipeline_class = "AudioLDM2Pipeline"


def audioldm2(**options: Any) -> AudioLDM2Model:
    return AudioLDM2Model.load("audioldm2", **options)


def audioldm2_large(**options: Any) -> AudioLDM2Model:
    return AudioLDM2Model.load("audioldm2-large", **options)


def audioldm2_music(**options: Any) -> AudioLDM2Model:
    return AudioLDM2Model.load("audioldm2-music", **options)
