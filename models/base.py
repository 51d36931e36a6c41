"""The one interface every text-to-music model in the zoo meets."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass
class GeneratedAudio:
    """Mono clips, one row per prompt, float32 in [-1, 1] at `sample_rate`."""

    waveforms: np.ndarray  # [batch, samples]
    sample_rate: int
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.waveforms.ndim != 2:
            raise ValueError(f"waveforms must be [batch, samples], got shape {self.waveforms.shape}")


class TextToMusicModel(abc.ABC):
    """prompts, duration, seed -> waveforms at a stated rate.

    `fingerprint()` identifies weights + code-relevant settings, so stored clips can be keyed by it.
    """

    name: str
    sample_rate: int

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], duration: float = 10.24, seed: int | Sequence[int] = 0,
                 **settings: Any) -> GeneratedAudio:
        """Generate one clip per prompt; the same seed and settings give the same audio on the same device.

        `seed` may be one seed per prompt: clip i then depends only on (prompt i, seed i, settings), not on
        the other prompts of the batch, which is what lets a resumed or sharded benchmark equal a plain run.
        """

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A short stable string naming the weights (checksums) and fixed generation settings."""

    def untrained(self, seed: int = 0) -> "TextToMusicModel | None":
        """The same architecture with freshly initialised trainable weights (an anchor for judging training);
        None for models that only exist pretrained."""
        return None

    def caption_reliance(self, waveforms: Sequence[np.ndarray], sample_rate: int, captions: Sequence[str],
                         seed: int = 0) -> float | None:
        """How much the model's own training loss on these clips rises when each clip is given another clip's
        caption: about 0 for a model that ignores its prompt. None for models without a tractable loss."""
        return None

    def provenance(self) -> dict[str, Any]:
        """Facts about how the weights were made, for results files (e.g. a trained folder's "training" record:
        steps and training seconds, and its "parameters"); empty when nothing is known."""
        return {}
