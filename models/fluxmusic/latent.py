"""Latent codecs: waveform <-> the 2-D latent the transformer denoises.

`LatentCodec` is the contract; implementations: the AudioLDM 2 VAE + HiFi-GAN vocoder pair (the paper's
system) and a weight-free mel codec (offline use and tests). Both work on the AudioLDM 2 log-mel of
`fluxbench.audio` (16 kHz, hop 160, 64 bins), time along the latent's height and frequency along its width.
Every codec describes itself with `spec()` (JSON, with a "kind") and is rebuilt by `build_codec(spec, folder)`.
"""

from __future__ import annotations

import abc
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from fluxbench import FluxbenchError, weights
from fluxbench.audio import MEL_BINS, MEL_HOP, MEL_N_FFT, MEL_SAMPLE_RATE, MEL_WINDOW, audioldm2_normalize, \
    mel_filterbank, mel_spectrogram
from fluxbench.models.fluxmusic import weight_sources
from fluxbench.models.fluxmusic.transformer import patchify

PATCH = 2  # the transformer's 2x2 patches: latent height and width must be even


class CodecError(FluxbenchError):
    pass


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

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description with a "kind" key; `build_codec(spec, folder)` rebuilds the codec."""

    def to(self, device: torch.device | str) -> "LatentCodec":
        return self


@dataclass(frozen=True)
class LatentBounds:
    """The range the training latents spanned, per latent channel and frequency position (min and max over
    clips and time): [C, W] each. Training records it in the model folder; sampling clamps its clean-sample
    estimates to it (static thresholding)."""

    low: torch.Tensor
    high: torch.Tensor

    @classmethod
    def of(cls, latents: Iterable[torch.Tensor]) -> "LatentBounds":
        """The range of latents [B, C, H, W] (one batch or many)."""
        low = high = None
        for batch in latents:
            batch_low, batch_high = batch.float().amin(dim=(0, 2)), batch.float().amax(dim=(0, 2))
            low = batch_low if low is None else torch.minimum(low, batch_low)
            high = batch_high if high is None else torch.maximum(high, batch_high)
        if low is None:
            raise CodecError("latent bounds need at least one latent")
        return cls(low.cpu(), high.cpu())

    @classmethod
    def from_spec(cls, spec: Any, channels: int, where: str) -> "LatentBounds":
        """From {"low": [C][W], "high": [C][W]}, checked; `where` names the field in errors."""
        try:
            low, high = (torch.tensor(spec[key], dtype=torch.float32) for key in ("low", "high"))
        except (KeyError, TypeError, ValueError) as error:
            raise CodecError(f"{where}: expected 'low' and 'high' as [channels][width] lists of numbers "
                             f"({error})") from None
        if low.ndim != 2 or low.shape != high.shape or low.shape[0] != channels:
            raise CodecError(f"{where}: shapes {list(low.shape)} and {list(high.shape)}; expected [{channels}, "
                             f"width] for both")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (low <= high).all()):
            raise CodecError(f"{where}: values must be finite with low <= high everywhere")
        return cls(low, high)

    def spec(self) -> dict[str, list]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    def tokens(self, height: int, width: int, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) in the transformer's token layout [1, N, 4C] for a [C, height, width] latent."""
        if self.low.shape[1] != width:
            raise CodecError(f"the recorded latent range is {self.low.shape[1]} wide; this latent is {width}")
        return tuple(patchify(plane[None, :, None, :].expand(1, -1, height, -1).contiguous()).to(device)
                     for plane in (self.low, self.high))


def mel_frames(samples: int, multiple: int) -> int:
    """Mel frames covering `samples` (AudioLDM 2: 10.24 s -> 1024), rounded up to a multiple of `multiple`."""
    if samples <= 0:
        raise CodecError(f"a clip needs at least one sample, got {samples}")
    return multiple * math.ceil(math.ceil(samples / MEL_HOP) / multiple)


# ---- weight-free mel codec --------------------------------------------------------------------------------
class MelCodec(LatentCodec):
    """The normalised log-mel itself, folded into channels by space-to-depth; Griffin-Lim to invert.

    A (frames x 64) log-mel becomes channels = time_fold x freq_fold planes of (frames / time_fold) x
    (64 / freq_fold). The default 2 x 4 fold gives 8 channels and width 16, like the AudioLDM 2 VAE latent, so
    the same transformer configs apply. The log-mel is mapped to about unit scale by (log_mel - offset) / scale.
    With `normalize` (AudioLDM 2's convention) every clip is brought to peak 0.5 first; without it the latent
    keeps the clip's level, so loudness can be learned and is reproduced by decoding. `floor` raises the log-mel
    floor (AudioLDM 2's is log 1e-5 = -11.5), so that a model need not learn how deep inaudible silence is.
    `frame_pool` averages that many consecutive log-mel frames into one before folding (decoding interpolates
    them back): n divides the latent's height and the transformer's music tokens by n, at n x 10 ms time
    resolution (the demo averages 4, as its shortest note lasts 0.44 s).
    """

    kind = "mel"

    def __init__(self, time_fold: int = 2, freq_fold: int = 4, offset: float = -5.0, scale: float = 2.5,
                 griffin_lim_iters: int = 32, normalize: bool = True, floor: float | None = None,
                 frame_pool: int = 1) -> None:
        if MEL_BINS % freq_fold or (MEL_BINS // freq_fold) % PATCH:
            raise CodecError(f"mel codec: freq_fold {freq_fold} must split {MEL_BINS} mel bins into an even width")
        if time_fold < 1 or scale <= 0 or griffin_lim_iters < 1 or frame_pool < 1:
            raise CodecError("mel codec: time_fold, frame_pool and griffin_lim_iters must be >= 1 and scale > 0")
        self.frame_pool = int(frame_pool)
        self.time_fold, self.freq_fold = int(time_fold), int(freq_fold)
        self.offset, self.scale, self.griffin_lim_iters = float(offset), float(scale), int(griffin_lim_iters)
        self.normalize = bool(normalize)
        if floor is not None and not (isinstance(floor, (int, float)) and math.isfinite(floor)):
            raise CodecError(f"mel codec: floor must be a finite log-mel value, got {floor!r}")
        self.floor = None if floor is None else float(floor)
        self.sample_rate = MEL_SAMPLE_RATE
        self.latent_channels = self.time_fold * self.freq_fold

    def spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "time_fold": self.time_fold, "freq_fold": self.freq_fold, "offset": self.offset,
                "scale": self.scale, "griffin_lim_iters": self.griffin_lim_iters, "normalize": self.normalize}
        # options at their defaults stay out, so older folders keep their spec
        if self.floor is not None:
            spec["floor"] = self.floor
        if self.frame_pool != 1:
            spec["frame_pool"] = self.frame_pool
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], folder: str | os.PathLike | None = None) -> "MelCodec":
        return cls(**{k: v for k, v in spec.items() if k != "kind"})

    def latent_shape(self, samples: int) -> tuple[int, int, int]:
        frames = mel_frames(samples, self.frame_pool * self.time_fold * PATCH)
        return self.latent_channels, frames // (self.frame_pool * self.time_fold), MEL_BINS // self.freq_fold

    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        _, height, width = self.latent_shape(waves.shape[-1])
        waves = audioldm2_normalize(waves.float()) if self.normalize else waves.float()
        mel = mel_spectrogram(waves, frames=height * self.time_fold * self.frame_pool)
        if self.floor is not None:
            mel = mel.clamp(min=self.floor)
        if self.frame_pool > 1:
            mel = mel.unflatten(1, (-1, self.frame_pool)).mean(2)
        normalised = (mel - self.offset) / self.scale  # [B, frames, bins]
        batch = normalised.shape[0]
        folded = normalised.reshape(batch, height, self.time_fold, width, self.freq_fold)
        return folded.permute(0, 2, 4, 1, 3).reshape(batch, self.latent_channels, height, width)

    def log_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latent [B, C, H, W] -> log-mel [B, frames / frame_pool, 64] (the inverse of the fold and
        normalisation)."""
        batch, channels, height, width = latents.shape
        if channels != self.latent_channels or width * self.freq_fold != MEL_BINS:
            raise CodecError(f"mel codec: latent of shape {list(latents.shape[1:])} does not unfold; expected "
                             f"[{self.latent_channels}, H, {MEL_BINS // self.freq_fold}]")
        planes = latents.float().reshape(batch, self.time_fold, self.freq_fold, height, width)
        mel = planes.permute(0, 3, 1, 4, 2).reshape(batch, height * self.time_fold, MEL_BINS)
        return mel * self.scale + self.offset

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        log_mel = self.log_mel(latents).transpose(1, 2)  # [B, 64, frames / frame_pool]
        if self.frame_pool > 1:  # each pooled value back at its frames' centre, linear in between
            log_mel = torch.nn.functional.interpolate(log_mel, scale_factor=self.frame_pool, mode="linear",
                                                      align_corners=False)
        mel_magnitude = log_mel.exp()  # [B, 64, frames]
        basis = torch.from_numpy(mel_filterbank()).to(latents.device)
        # Least-squares linear magnitude under the filterbank, kept non-negative.
        linear = (torch.linalg.pinv(basis) @ mel_magnitude).clamp(min=0.0)
        return griffin_lim(linear, self.griffin_lim_iters, samples=mel_magnitude.shape[-1] * MEL_HOP)


def griffin_lim(magnitude: torch.Tensor, iterations: int, samples: int, momentum: float = 0.99) -> torch.Tensor:
    """Phase for a magnitude STFT [B, 513, frames] by fast Griffin-Lim (Perraudin et al. 2013).

    The starting phase comes from a fixed seed, so decoding is deterministic.
    """
    window = torch.hann_window(MEL_WINDOW, periodic=True, device=magnitude.device)
    stft = lambda wave: torch.stft(wave, MEL_N_FFT, MEL_HOP, MEL_WINDOW, window, center=True,  # noqa: E731
                                   pad_mode="reflect", return_complex=True)
    istft = lambda spec, length: torch.istft(spec, MEL_N_FFT, MEL_HOP, MEL_WINDOW, window,  # noqa: E731
                                             center=True, length=length)
    inner = (magnitude.shape[-1] - 1) * MEL_HOP  # the length whose STFT has exactly `frames` frames
    generator = torch.Generator().manual_seed(0)
    phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=generator, dtype=torch.float64))
    phase = phase.to(torch.complex64).to(magnitude.device)
    previous = torch.zeros_like(phase)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitude * phase, inner))
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        phase = accelerated / accelerated.abs().clamp(min=1e-8)
        previous = rebuilt
    return istft(magnitude * phase, samples)


# ---- AudioLDM 2 VAE + HiFi-GAN vocoder --------------------------------------------------------------------
class AudioLDM2Codec(LatentCodec):
    """The paper's codec: the AudioLDM 2 mel VAE (diffusers AutoencoderKL) and its HiFi-GAN vocoder
    (transformers SpeechT5HifiGan), both from one AudioLDM 2 hub repo (subfolders vae/ and vocoder/).

    10.24 s -> 1024 mel frames -> latent 8 x 256 x 16 (the VAE halves time and frequency twice). Encoding uses
    the posterior mean times the VAE scaling factor; decoding divides by it, decodes the mel, and vocodes it.
    """

    kind = "audioldm2"

    def __init__(self, vae: Any, vocoder: Any, repo: str = weight_sources.DEFAULT_AUDIOLDM2,
                 paths: dict[str, str] | None = None) -> None:
        self.vae, self.vocoder = vae.eval().requires_grad_(False), vocoder.eval().requires_grad_(False)
        self.repo = repo
        self.paths = dict(paths or {})  # explicit local folders, kept in the spec
        self.sources: dict[str, Path] = {}  # where the weights were found (for checksums)
        self.sample_rate = int(vocoder.config.sampling_rate)
        self.latent_channels = int(vae.config.latent_channels)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)
        if int(vocoder.config.model_in_dim) != MEL_BINS or self.sample_rate != MEL_SAMPLE_RATE:
            raise CodecError(f"vocoder expects {vocoder.config.model_in_dim} mel bins at {self.sample_rate} Hz; "
                             f"the AudioLDM 2 front-end gives {MEL_BINS} bins at {MEL_SAMPLE_RATE} Hz")

    @staticmethod
    def weight_requests(repo: str = weight_sources.DEFAULT_AUDIOLDM2, vae: str | None = None,
                        vocoder: str | None = None) -> list[tuple[weights.WeightSource, str | None]]:
        return [(weight_sources.audioldm2_part("vae", repo), vae),
                (weight_sources.audioldm2_part("vocoder", repo), vocoder)]

    @classmethod
    def load(cls, repo: str = weight_sources.DEFAULT_AUDIOLDM2, vae: str | os.PathLike | None = None,
             vocoder: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None,
             device: torch.device | str = "cpu") -> "AudioLDM2Codec":
        """Resolve (explicit path, env, weights dir, HF cache, hub) and load both parts."""
        try:
            from diffusers import AutoencoderKL
            from transformers import SpeechT5HifiGan
        except ImportError as error:
            raise CodecError(f"the AudioLDM 2 codec needs the hub extra ({error.name} missing): "
                             f"pip install 'fluxbench[hub]'") from None
        paths = {k: str(v) for k, v in (("vae", vae), ("vocoder", vocoder)) if v}
        vae_dir, vocoder_dir = weights.resolve_all(cls.weight_requests(repo, paths.get("vae"), paths.get("vocoder")),
                                                   weights_dir)
        try:
            vae_model = AutoencoderKL.from_pretrained(str(vae_dir))
            vocoder_model = SpeechT5HifiGan.from_pretrained(str(vocoder_dir))
        except (OSError, ValueError) as error:
            raise CodecError(f"cannot load the AudioLDM 2 VAE/vocoder from {vae_dir} / {vocoder_dir}: "
                             f"{str(error).splitlines()[0]}") from None
        codec = cls(vae_model, vocoder_model, repo, paths)
        codec.sources = {"vae": vae_dir, "vocoder": vocoder_dir}
        return codec.to(device)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo": self.repo, **self.paths}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], folder: str | os.PathLike | None = None,
                  weights_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> "AudioLDM2Codec":
        local = {part: _relative_to(spec[part], folder) for part in ("vae", "vocoder") if spec.get(part)}
        return cls.load(spec.get("repo", weight_sources.DEFAULT_AUDIOLDM2), weights_dir=weights_dir, device=device,
                        **local)

    def to(self, device: torch.device | str) -> "AudioLDM2Codec":
        self.vae.to(device)
        self.vocoder.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def latent_shape(self, samples: int) -> tuple[int, int, int]:
        frames = mel_frames(samples, self.downsample * PATCH)
        return self.latent_channels, frames // self.downsample, MEL_BINS // self.downsample

    @torch.no_grad()
    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        _, height, _ = self.latent_shape(waves.shape[-1])
        mel = mel_spectrogram(audioldm2_normalize(waves.float().to(self.device)), frames=height * self.downsample)
        posterior = self.vae.encode(mel.unsqueeze(1)).latent_dist
        return posterior.mode() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        mel = self.vae.decode(latents.float().to(self.device) / self.scaling_factor).sample  # [B, 1, frames, 64]
        return self.vocoder(mel.squeeze(1)).float()


def _relative_to(path: str, folder: str | os.PathLike | None) -> str:
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() or folder is None else Path(folder) / candidate)


CODECS = {"mel": MelCodec, "audioldm2": AudioLDM2Codec}


def build_codec(spec: dict[str, Any], folder: str | os.PathLike | None = None, **options: Any) -> LatentCodec:
    """The codec a spec describes; `options` (weights_dir, device) go to codecs that load weights."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in CODECS:
        raise CodecError(f"codec spec: unknown kind {kind!r}; expected one of {sorted(CODECS)}")
    if kind == "mel":
        return MelCodec.from_spec(spec, folder)
    return AudioLDM2Codec.from_spec(spec, folder, **options)


def codec_weight_requests(spec: dict[str, Any], folder: str | os.PathLike | None = None
                          ) -> list[tuple[weights.WeightSource, str | None]]:
    """The downloadable components a codec spec needs (none for the mel codec)."""
    if spec.get("kind") != "audioldm2":
        return []
    return AudioLDM2Codec.weight_requests(
        spec.get("repo", weight_sources.DEFAULT_AUDIOLDM2),
        *(_relative_to(spec[part], folder) if spec.get(part) else None for part in ("vae", "vocoder")))
