"""The one interface every text-to-music model in the zoo meets."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from fluxbench import FluxbenchError

if TYPE_CHECKING:
    from fluxbench.weights import WeightSource

WeightRequest = tuple["WeightSource", "str | None"]  # a component to resolve, and an explicit local path or None

DEFAULT_DURATION = 10.24  # seconds: the paper's clip length


@dataclass(frozen=True)
class GenerationSettings:
    """Every setting that shapes a clip, resolved once by the model (`resolve_settings`).

    The clip store keys a clip by `record()` and the model generates from the same object, so what a clip is
    stored under is exactly what made it. `options` are the choices (`steps`, `guidance`, ...), accepted back
    by `resolve_settings` as keywords; `facts` follow from them and the model (e.g. samples, device, dtype).
    """

    duration: float
    options: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def __getitem__(self, name: str) -> Any:
        return self.options[name] if name in self.options else self.facts[name]

    def record(self) -> dict[str, Any]:
        """The options and facts as one plain dict (duration aside): clip identities, sidecars, results."""
        return {**self.options, **self.facts}


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

    `fingerprint()` identifies weights + code-relevant settings, so stored clips can be keyed by it. What the
    benchmark needs beyond `generate` has a default here, so a model overrides only what it has.
    """

    name: str
    sample_rate: int

    @classmethod
    def weight_requests(cls, **options: Any) -> list[WeightRequest]:
        """The downloadable components that building this model with `options` (its factory's keyword arguments)
        resolves through `fluxbench.weights`, found without loading anything: what a run checks before it
        starts. None by default (models without downloadable weights)."""
        return []

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], duration: float = DEFAULT_DURATION, seed: int | Sequence[int] = 0,
                 settings: GenerationSettings | None = None, progress: bool = False,
                 **options: Any) -> GeneratedAudio:
        """Generate one clip per prompt; the same seed and settings give the same audio on the same device.

        Either `settings` (from `resolve_settings`, used as given; `duration` is then its duration) or the
        options to resolve. `seed` may be one seed per prompt: clip i then depends only on (prompt i, seed i,
        settings), not on the other prompts of the batch, which is what lets a resumed or sharded benchmark
        equal a plain run.
        """

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A short stable string naming the weights (checksums) and fixed generation settings."""

    def resolve_settings(self, duration: float = DEFAULT_DURATION, **options: Any) -> GenerationSettings:
        """Every generation setting in force for `options`; a model without presets or checks keeps them as given."""
        return GenerationSettings(duration, options)

    def settings_for(self, duration: float, settings: GenerationSettings | None,
                     options: dict[str, Any]) -> GenerationSettings:
        """What `generate` uses: `settings` as given, else `options` resolved (never both)."""
        if settings is None:
            return self.resolve_settings(duration, **options)
        if options:
            raise FluxbenchError(f"generate got resolved settings and also options {sorted(options)}; pass one or "
                                 f"the other")
        return settings

    def prepare(self, prompts: Sequence[str], settings: GenerationSettings) -> None:
        """Called once before `prompts` are generated batch by batch with `settings` (e.g. to encode every
        prompt in one pass); nothing to do by default."""

    def checksums(self) -> dict[str, str]:
        """sha256 of every weight file or folder in use; empty when the model does not track them."""
        return {}

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


def factory_weight_requests(factory: Callable[..., Any], **options: Any) -> list[WeightRequest]:
    """What a registered factory would resolve: the `weight_requests` of the model class whose classmethod it is
    (a "module:Class.method" target); none for any other callable (e.g. a model trained on first use)."""
    owner = getattr(factory, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, TextToMusicModel):
        return owner.weight_requests(**options)
    return []
