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
LENGTH_TOLERANCE = 0.02  # a clip may differ from the asked duration by this fraction (codec frame rounding)


class ModelOutputError(FluxbenchError, ValueError):
    """A model produced something other than the clips the interface promises."""


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
        if not isinstance(self.waveforms, np.ndarray):
            raise ModelOutputError(f"GeneratedAudio.waveforms must be a numpy array [batch, samples], got "
                                   f"{type(self.waveforms).__name__}")
        if self.waveforms.ndim != 2:
            raise ModelOutputError(f"GeneratedAudio.waveforms must be [batch, samples], got shape "
                                   f"{tuple(self.waveforms.shape)}")


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


def check_output(audio: Any, model: "TextToMusicModel", prompts: int, duration: float) -> GeneratedAudio:
    """`audio` if it is what `generate` promises for `prompts` prompts of `duration` seconds: float samples,
    one row per prompt, at the model's rate, the asked length (within LENGTH_TOLERANCE), all finite. Else one
    line naming the model and what was wrong."""
    name = getattr(model, "name", type(model).__name__)
    where = f"model {name}: generate"
    if not isinstance(audio, GeneratedAudio):
        raise ModelOutputError(f"{where} returned {type(audio).__name__}, expected "
                               f"fluxbench.models.base.GeneratedAudio")
    waves = audio.waveforms
    if not np.issubdtype(waves.dtype, np.floating):
        raise ModelOutputError(f"{where} returned {waves.dtype} samples, expected floats in [-1, 1]")
    if waves.shape[0] != prompts:
        raise ModelOutputError(f"{where} returned {waves.shape[0]} clip(s) for {prompts} prompt(s)")
    rate = audio.sample_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ModelOutputError(f"{where} returned sample_rate {rate!r}, expected a positive integer")
    declared = getattr(model, "sample_rate", None)
    if declared is not None and int(rate) != int(declared):
        raise ModelOutputError(f"{where} returned audio at {rate} Hz, but the model declares sample_rate "
                               f"{declared}")
    expected = duration * rate
    if abs(waves.shape[1] - expected) > max(1.0, LENGTH_TOLERANCE * expected):
        raise ModelOutputError(f"{where} returned {waves.shape[1]} samples ({waves.shape[1] / rate:.3f} s) per "
                               f"clip, expected {duration:g} s ({round(expected)} samples at {rate} Hz)")
    finite = np.isfinite(waves)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise ModelOutputError(f"{where} returned NaN or infinite samples (clip {row} of the batch)")
    return audio


def as_model(made: Any, where: str) -> "TextToMusicModel":
    """`made` if it meets the interface; else one line saying what was returned instead."""
    if not isinstance(made, TextToMusicModel):
        raise ModelOutputError(f"{where}: the factory returned {type(made).__name__}, expected a "
                               f"fluxbench.models.base.TextToMusicModel")
    for attribute in ("name", "sample_rate"):
        if not hasattr(made, attribute):
            raise ModelOutputError(f"{where}: the model has no {attribute!r} attribute")
    return made


def factory_weight_requests(factory: Callable[..., Any], **options: Any) -> list[WeightRequest]:
    """What a registered factory would resolve: the `weight_requests` of the model class whose classmethod it is
    (a "module:Class.method" target); none for any other callable (e.g. a model trained on first use)."""
    owner = factory if isinstance(factory, type) else getattr(factory, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, TextToMusicModel):
        return owner.weight_requests(**options)
    return []
