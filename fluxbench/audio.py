"""Audio I/O and the shared front-ends.

One place for: reading (any format soundfile knows), channel handling, writing, and (added beside these)
resampling and the AudioLDM 2 mel front-end (16 kHz, 64 mel bins, hop 160, window 1024).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from fluxbench import FluxbenchError


class AudioError(FluxbenchError):
    pass


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a file as float32 [channels, samples] and its sample rate; one-line errors for bad files."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for corrupt or unknown formats
        raise AudioError(f"{path}: unreadable audio ({error}); expected a WAV/FLAC/OGG/MP3 file") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(data.T), int(rate)


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


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> Path:
    """Write float audio ([samples] or [channels, samples]) as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(wave, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.clip(data, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
