"""Audio I/O and the shared front-ends.

One place for: reading (any format soundfile knows), channel handling, writing, and (added beside these)
resampling and the AudioLDM 2 mel front-end (16 kHz, 64 mel bins, hop 160, window 1024).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fluxbench import FluxbenchError

if TYPE_CHECKING:
    import torch


# The one list of audio file suffixes the project reads (what `read_audio`, through libsndfile, decodes): sets
# look up references with it, scoring lists folders with it, reports and listening tests pick clips with it.
# Anything else (.m4a, .aac, .webm, ...) is reported as an unsupported format, never silently dropped.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aif", ".aiff")


class AudioError(FluxbenchError):
    pass


class AudioFolderError(AudioError):
    pass


def list_audio(folder: str | os.PathLike, role: str = "audio", *, recursive: bool = False,
               unique_stems: bool = False, required: bool = True) -> list[Path]:
    """The audio files (by `AUDIO_SUFFIXES`) in `folder`, sorted by path; hidden files and folders are skipped.

    `recursive`: in subfolders too. `unique_stems`: two files with the same stem (e.g. a.wav and a.flac, which
    would stand for the same id) are refused. `required`: a folder without audio files is refused. Errors are one
    line naming the `role` ("reference", "generated", ...) and the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioFolderError(f"{role} folder {folder} does not exist or is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in candidates if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if required and not files:
        raise AudioFolderError(f"{role} folder {folder} has no audio files (looked for {', '.join(AUDIO_SUFFIXES)})")
    if unique_stems:
        seen: dict[str, Path] = {}
        for path in files:
            if path.stem in seen:
                raise AudioFolderError(f"{role} folder {folder}: {seen[path.stem].relative_to(folder)} and "
                                       f"{path.relative_to(folder)} have the same id {path.stem!r} (the name "
                                       f"without its suffix); keep one of them")
            seen[path.stem] = path
    return files


def unsupported_format(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read by its suffix ("unsupported format .m4a; ..."), or None for a known suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return None
    return (f"unsupported format {suffix or '(no suffix)'}; convert it to one of {', '.join(AUDIO_SUFFIXES)} "
            f"(e.g. ffmpeg -i in{suffix} out.flac)")


def audio_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as audio, judged from its header only (cheap enough for thousands of files
    before a long run): unsupported format, truncated WAV, unreadable header, no samples. None when it looks
    readable; decoding problems further in are found when it is read."""
    import soundfile as sf

    path = Path(path)
    if unsupported_format(path):
        return unsupported_format(path)
    truncated = wav_truncation(path)
    if truncated:
        return f"truncated WAV ({truncated})"
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        return f"unreadable audio ({' '.join(str(error).split())[:200]})"
    if info.frames == 0:
        return "empty audio (0 samples)"
    return None


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a file as float32 [channels, samples] and its sample rate; one-line errors for bad files."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    if unsupported_format(path):
        raise AudioError(f"{path}: {unsupported_format(path)}")
    truncated = wav_truncation(path)
    if truncated:
        raise AudioError(f"{path}: truncated WAV ({truncated}); the file was cut short, e.g. by a full disk or "
                         f"an interrupted copy")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioError(f"{path}: unreadable audio ({error}); expected a WAV/FLAC/OGG/MP3/AIFF file") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(rate)


def wav_truncation(path: str | os.PathLike) -> str | None:
    """For a RIFF/WAVE file whose data chunk is shorter than its header declares: how much is missing.

    soundfile reads such files without complaint (the samples present), which would score half a clip as if
    it were whole. Streams written without a known length (size 0 or 0xFFFFFFFF) are not judged."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            size = os.fstat(handle.fileno()).st_size
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    available = size - handle.tell()
                    if length in (0, 0xFFFFFFFF) or length <= available:
                        return None
                    return f"header declares {length} bytes of samples, {available} present"
                handle.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


def to_mono(audio: np.ndarray, mode: str = "mean") -> np.ndarray:
    """[channels, samples] -> [samples]; 'mean' averages channels, 'first' keeps channel 0."""
    if audio.ndim == 1:
        return audio
    if mode == "mean":
        return audio.mean(axis=0)
    if mode == "first":
        return audio[0]
    raise ValueError(f"unknown mono mode {mode!r}; expected 'mean' or 'first'")


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Crop or zero-pad the last axis to exactly `samples`."""
    if wave.shape[-1] >= samples:
        return wave[..., :samples]
    pad = [(0, 0)] * (wave.ndim - 1) + [(0, samples - wave.shape[-1])]
    return np.pad(wave, pad)


def resample(wave: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """Polyphase resampling along the last axis (exact rational ratio, Kaiser-windowed anti-aliasing)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate_from == rate_to:
        return wave
    common = gcd(int(rate_from), int(rate_to))
    return resample_poly(wave, rate_to // common, rate_from // common, axis=-1).astype(wave.dtype, copy=False)


def integrated_loudness(wave: np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS of [samples] or [channels, samples]; -inf for silence."""
    import pyloudnorm

    data = np.asarray(wave, dtype=np.float64)
    data = data.T if data.ndim == 2 else data
    if data.shape[0] < int(0.4 * sample_rate):
        raise AudioError(f"loudness needs at least 0.4 s of audio, got {data.shape[0] / sample_rate:.3f} s")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


# ---- the AudioLDM 2 mel front-end ----------------------------------------------------------------------
# AudioLDM 2's TacotronSTFT at 16 kHz (also what its VAE and HiFi-GAN vocoder were trained on): STFT with a
# periodic Hann window and reflect padding of n_fft/2 at both ends, magnitude (not power), a slaney-scale and
# slaney-normalised mel filterbank, and the natural log of the mel magnitude clamped below at 1e-5.
MEL_SAMPLE_RATE = 16_000
MEL_N_FFT = 1024
MEL_HOP = 160
MEL_WINDOW = 1024
MEL_BINS = 64
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
MEL_LOG_FLOOR = 1e-5


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    # Linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(sample_rate: int = MEL_SAMPLE_RATE, n_fft: int = MEL_N_FFT, n_mels: int = MEL_BINS,
                   fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1] on the slaney mel scale, each scaled to unit area in Hz."""
    edges = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (upper - lower))).astype(np.float32)


def audioldm2_normalize(waves: torch.Tensor) -> torch.Tensor:
    """AudioLDM 2's input convention for [batch, samples]: remove the mean, then scale the peak to 0.5."""
    centred = waves - waves.mean(dim=-1, keepdim=True)
    return 0.5 * centred / (centred.abs().amax(dim=-1, keepdim=True) + 1e-8)


def mel_spectrogram(waves: torch.Tensor, frames: int | None = None) -> torch.Tensor:
    """[batch, samples] at 16 kHz in [-1, 1] -> AudioLDM 2 log-mel [batch, frames, 64].

    Without `frames` there are samples // 160 + 1 frames; with it the wave is zero-padded or cropped first,
    as AudioLDM 2 does (10.24 s -> 1024 frames).
    """
    import torch

    if waves.ndim != 2:
        raise AudioError(f"mel_spectrogram expects [batch, samples], got shape {tuple(waves.shape)}")
    waves = waves.float().clamp(-1.0, 1.0)
    if frames is not None:
        samples = frames * MEL_HOP
        waves = torch.nn.functional.pad(waves, (0, max(0, samples - waves.shape[-1])))[:, :samples]
    window = torch.hann_window(MEL_WINDOW, periodic=True, device=waves.device)
    spectrum = torch.stft(waves, MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WINDOW, window=window,
                          center=True, pad_mode="reflect", return_complex=True).abs()
    basis = torch.from_numpy(mel_filterbank()).to(waves.device)
    mel = torch.log(torch.clamp(basis @ spectrum, min=MEL_LOG_FLOOR)).transpose(1, 2)
    return mel[:, :frames] if frames is not None else mel


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> Path:
    """Write float audio ([samples] or [channels, samples]) as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    from fluxbench.atomic import atomic_path

    data = np.asarray(wave, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(data, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)
