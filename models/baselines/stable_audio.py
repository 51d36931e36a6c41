"""Stable Audio Open (diffusers `StableAudioPipeline`): T5 text and timing conditioning of a DiT over the latent
of a 44.1 kHz stereo Oobleck autoencoder. The pipeline always denoises the model's full window (about 47 s)
and crops it to the requested end time."""

from __future__ import annotations

from typing import Any

import numpy as np

from fluxbench.models.base import DEFAULT_DURATION, GenerationSettings
from fluxbench.models.baselines.common import BaselineError, DiffusersModel


class StableAudioModel(DiffusersModel):
    family = "stable_audio"
    pipeline_class = "StableAudioPipeline"
    length_argument = "audio_end_in_s"

    def native_rate(self) -> int:
        return int(self.pipeline.vae.config.sampling_rate)

    def window(self) -> float:
        """Seconds of audio in the model's latent window: the longest clip it can produce."""
        hop = int(np.prod(self.pipeline.vae.config.downsampling_ratios))
        return self.pipeline.transformer.config.sample_size * hop / self.native_rate()

    def resolve_settings(self, duration: float = DEFAULT_DURATION, **overrides: Any) -> GenerationSettings:
        if duration and duration > self.window():
            raise BaselineError(f"{self.name} produces at most {self.window():.2f} s per clip, got duration "
                                f"{duration}")
        return super().resolve_settings(duration, **overrides)
