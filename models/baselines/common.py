"""What every baseline adapter shares: weights resolution, settings, per-prompt seeds, batching, and turning a
model's native audio into the protocol's mono waveforms.

Native audio -> protocol audio, in this order:
1. channels: the mean of all channels (a mid downmix; stereo models are otherwise untouched);
2. length: cropped or zero-padded to the requested duration at the native rate;
3. rate: `fluxbench.audio.resample`, polyphase FIR resampling with the exact rational ratio (scipy
   `resample_poly`, Kaiser-windowed low-pass), e.g. 32 kHz -> 16 kHz is 1/2 and 44.1 kHz -> 16 kHz is 160/441;
4. the result is cropped or padded to round(duration x rate) samples and clipped to [-1, 1].

Seeds: clip i is drawn with its own CPU generator seeded with seed i (an int seed s gives prompt i the seed
s + i), so a clip depends on its prompt, seed and settings, not on the rest of its batch (up to floating-point
effects of batched padding).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fluxbench import FluxbenchError, weights
from fluxbench.audio import fit_length, resample, to_mono
from fluxbench.models.base import DEFAULT_DURATION, GeneratedAudio, GenerationSettings, TextToMusicModel
from fluxbench.models.baselines.specs import SPECS, BaselineSpec
from fluxbench.runtime import content_hash, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

PROTOCOL_RATE = 16_000
RESAMPLING = "polyphase FIR (scipy resample_poly, Kaiser window), exact rational ratio"
DOWNMIX = "mean of channels"


class BaselineError(FluxbenchError):
    pass


def weight_source(spec: BaselineSpec) -> weights.WeightSource:
    """The hub repo of a checkpoint as one component: $FLUXBENCH_<NAME>, or <weights dir>/<repo name>."""
    env_var = "FLUXBENCH_" + re.sub(r"[^A-Z0-9]+", "_", spec.name.upper())
    return weights.WeightSource(f"{spec.title} ({spec.name})", env_var, spec.hub_repo.split("/")[-1],
                                hub_repo=spec.hub_repo, allow_patterns=spec.allow_patterns, required=spec.required)


def cpu_generators(seeds: Sequence[int]):
    """One CPU generator per clip: the same noise whatever the device and whatever else is in the batch."""
    import torch

    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


class BaselineModel(TextToMusicModel):
    """A hub checkpoint behind the zoo interface. Subclasses set `family` and implement `_build` and `_generate`."""

    family: str

    def __init__(self, spec: BaselineSpec, folder: str | os.PathLike, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 4, sample_rate: int = PROTOCOL_RATE,
                 **defaults: Any) -> None:
        if spec.family != self.family:
            raise BaselineError(f"{spec.name} is a {spec.family} checkpoint, not {self.family}")
        if int(batch_size) < 1 or int(sample_rate) < 1:
            raise BaselineError(f"batch_size and sample_rate must be positive, got {batch_size} and {sample_rate}")
        self.spec, self.name, self.folder = spec, spec.name, Path(folder)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size, self.sample_rate = int(batch_size), int(sample_rate)
        self.defaults = self._checked({**spec.defaults, **defaults})
        self._checksum = weights.checksum(self.folder)
        try:
            self._build(self.folder)
        except (OSError, ValueError, KeyError) as error:  # a folder that is not a copy of the repo
            raise BaselineError(f"{spec.name}: cannot load {self.folder} as a copy of hf://{spec.hub_repo} "
                                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
                                ) from error

    @classmethod
    def load(cls, name: str, checkpoint: str | os.PathLike | None = None,
             weights_dir: str | os.PathLike | None = None, **options: Any) -> "BaselineModel":
        """The named checkpoint (see `specs.SPECS`), resolved through `fluxbench.weights`: `checkpoint` (a local
        copy of the hub repo), $FLUXBENCH_<NAME>, `<weights_dir>/<repo name>`, the HF cache, then a download.
        `options`: device, dtype, batch_size, sample_rate (the output rate), and generation defaults."""
        [(source, explicit)] = cls.weight_requests(name, checkpoint)
        return cls(SPECS[name], weights.resolve(source, explicit, weights_dir), **options)

    @classmethod
    def weight_requests(cls, name: str, checkpoint: str | os.PathLike | None = None, **_: Any
                        ) -> list[tuple[weights.WeightSource, str | None]]:
        """The hub repo `load` resolves (a local copy when `checkpoint` names one), without loading."""
        spec = SPECS.get(name)
        if spec is None:
            raise BaselineError(f"unknown baseline {name!r}; known: {', '.join(sorted(SPECS))}")
        return [(weight_source(spec), str(checkpoint) if checkpoint else None)]

    # ---- to implement -----------------------------------------------------------------------------------------
    def _build(self, folder: Path) -> None:
        """Load the model from a local copy of its hub repo onto self.device in self.dtype."""
        raise NotImplementedError

    def _generate(self, prompts: list[str], seeds: list[int], duration: float, settings: dict[str, Any],
                  progress: bool) -> np.ndarray:
        """Float audio [batch, samples] or [batch, channels, samples] at the native rate."""
        raise NotImplementedError

    # ---- settings -----------------------------------------------------------------------------------------------
    def _checked(self, settings: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - set(self.spec.defaults))
        if unknown:
            raise BaselineError(f"{self.spec.name}: unknown generation setting(s) {unknown}; "
                                f"expected some of {sorted(self.spec.defaults)}")
        checked = {}
        for key, value in settings.items():
            default = self.spec.defaults[key]
            try:
                checked[key] = type(default)(value) if value is not None else default
            except (TypeError, ValueError):
                raise BaselineError(f"{self.spec.name}: setting {key}={value!r} is not a {type(default).__name__}"
                                    ) from None
        if checked.get("steps", 1) < 1:
            raise BaselineError(f"{self.spec.name}: steps must be >= 1, got {checked['steps']}")
        return checked

    def resolve_settings(self, duration: float = DEFAULT_DURATION, **overrides: Any) -> GenerationSettings:
        """The generation settings in force: explicit values over this instance's defaults over the published
        ones."""
        if not duration or duration <= 0:
            raise BaselineError(f"duration must be positive, got {duration}")
        if self.spec.max_duration and duration > self.spec.max_duration:
            raise BaselineError(f"{self.spec.name} produces at most {self.spec.max_duration} s per clip, "
                                f"got duration {duration}")
        return GenerationSettings(duration, self._checked(
            {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}))

    def settings(self, duration: float = DEFAULT_DURATION, **overrides: Any) -> dict[str, Any]:
        """The options of `resolve_settings` as a plain dict, accepted back by `generate` as keyword arguments."""
        return dict(self.resolve_settings(duration, **overrides).options)

    # ---- identity -----------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """name + a hash of the weights' checksum, the hub id and the output format."""
        identity = {"name": self.name, "hub_repo": self.spec.hub_repo, "weights": self._checksum,
                    "sample_rate": self.sample_rate, "downmix": DOWNMIX, "resampling": RESAMPLING}
        return f"{self.name}@{content_hash(identity, 16)}"

    # ---- generation ---------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], duration: float = DEFAULT_DURATION, seed: int | Sequence[int] = 0,
                 settings: GenerationSettings | None = None, progress: bool = False,
                 **overrides: Any) -> GeneratedAudio:
        from fluxbench.models.fluxmusic.pipeline import item_seeds

        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise BaselineError("generate needs a non-empty list of prompt strings")
        resolved = self.settings_for(duration, settings, overrides)
        duration, settings = resolved.duration, dict(resolved.options)
        seeds = item_seeds(seed, len(prompts))
        native_samples = int(round(duration * self.spec.sample_rate))
        samples = int(round(duration * self.sample_rate))
        clips = []
        for start in range(0, len(prompts), self.batch_size):
            rows = slice(start, start + self.batch_size)
            native = np.asarray(self._generate(prompts[rows], seeds[rows], float(duration), settings, progress),
                                dtype=np.float32)
            if native.ndim == 3:
                native = np.stack([to_mono(clip) for clip in native])
            native = fit_length(native, native_samples)
            clips.append(fit_length(resample(native, self.spec.sample_rate, self.sample_rate), samples))
            log.info("%s: %d/%d clips", self.name, min(start + self.batch_size, len(prompts)), len(prompts))
        waveforms = np.concatenate(clips).astype(np.float32)
        if not np.isfinite(waveforms).all():
            raise BaselineError(f"{self.name}: generation produced NaN or infinite samples "
                                f"(dtype {str(self.dtype).removeprefix('torch.')}); try --dtype float32")
        record = {**settings, "duration": float(duration), "seeds": seeds, "native_sample_rate": self.spec.sample_rate,
                  "native_channels": self.spec.channels, "downmix": DOWNMIX, "resampling": RESAMPLING,
                  "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                  "fingerprint": self.fingerprint()}
        return GeneratedAudio(np.clip(waveforms, -1.0, 1.0), self.sample_rate, record)


class DiffusersModel(BaselineModel):
    """A diffusers text-to-audio pipeline: prompts, negative prompt, steps, guidance, one generator per clip."""

    pipeline_class: str  # the diffusers class name
    length_argument = "audio_length_in_s"

    def _build(self, folder: Path) -> None:
        import diffusers

        pipeline_class = getattr(diffusers, self.pipeline_class)
        self.pipeline = pipeline_class.from_pretrained(folder, dtype=self.dtype).to(self.device)
        rate = self.native_rate()
        if rate != self.spec.sample_rate:
            raise BaselineError(f"{self.name}: {folder} produces {rate} Hz audio but hf://{self.spec.hub_repo} is "
                                f"{self.spec.sample_rate} Hz; the folder is another model")

    def native_rate(self) -> int:
        return int(self.pipeline.vocoder.config.sampling_rate)

    def _generate(self, prompts: list[str], seeds: list[int], duration: float, settings: dict[str, Any],
                  progress: bool) -> np.ndarray:
        import torch

        self.pipeline.set_progress_bar_config(disable=not progress)
        with torch.inference_mode():
            output = self.pipeline(**self._text_arguments(prompts, settings["negative_prompt"]),
                                   num_inference_steps=settings["steps"], guidance_scale=settings["guidance"],
                                   generator=cpu_generators(seeds), output_type="np",
                                   **{self.length_argument: duration})
        return np.asarray(output.audios, dtype=np.float32)

    def _text_arguments(self, prompts: list[str], negative_prompt: str) -> dict[str, Any]:
        """The pipeline's text inputs; an empty negative prompt means the pipeline's own unconditional input."""
        return {"prompt": prompts, "negative_prompt": [negative_prompt] * len(prompts) if negative_prompt else None}
