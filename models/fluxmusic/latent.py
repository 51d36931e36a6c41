"""Latent codecs: waveform <-> the 2-D latent the transformer denoises.

`LatentCodec` is the contract; implementations: the AudioLDM 2 VAE + HiFi-GAN vocoder pair (the paper's
system) and a weight-free mel codec (offline use and tests).
"""

from __future__ import annotations

import abc

import torch


class LatentCodec(abc.ABC):
    sample_rate: int
    latent_channels: int

    @abc.abstractmethod
    def latent_shape(self, samples: int) -> tuple[int, int, int]:
        """(channels, height = time, width = frequency) of the latent of a clip of `samples` samples."""

    @abc.abstractmethod
    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        """[batch, samples] at `sample_rate` -> scaled latent [batch, C, H, W] as the transformer sees it."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latent [batch, C, H, W] -> [batch, samples] waveforms at `sample_rate`."""
