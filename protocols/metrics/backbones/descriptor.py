"""A weight-free descriptor backbone: signal statistics for offline smoke tests and sanity checks.

Its numbers are NOT FAD/FD/KL/IS on learned embeddings and are reported under `descriptor_*` keys:
- frames: per 0.96 s example of the VGGish log-mel front-end, the mean and std of each of the 64 bands (128-d);
- embedding: per clip, the mean and std of every band over the whole clip plus the 12-bin pitch-class
  profile (140-d);
- logits: log of the clip's pitch-class profile (energy of STFT bins between 55 Hz and 5 kHz folded onto the
  12 semitones of the equal-tempered scale, A4 = 440 Hz), so softmax(logits) is that profile and the
  KL / IS machinery compares tonal content.
Same audio front-end as the paper's metrics (audioldm_eval 83d7b13 at 16 kHz).
"""

from __future__ import annotations

import numpy as np

from fluxbench.protocols.metrics.backbones import Backbone
from fluxbench.protocols.metrics.backbones.vggish import log_mel_examples
from fluxbench.protocols.metrics.frontend import FRONTEND

SAMPLE_RATE = 16_000
CHROMA_FFT = 4096
CHROMA_HOP = 2048
CHROMA_LOW_HZ = 55.0
CHROMA_HIGH_HZ = 5000.0
PROFILE_FLOOR = 1e-12


def pitch_class_profile(wave: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """12 non-negative weights summing to 1 (uniform for silence): spectral energy per pitch class, C first."""
    data = np.asarray(wave, dtype=np.float64)
    if data.shape[0] < CHROMA_FFT:
        data = np.pad(data, (0, CHROMA_FFT - data.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(data, CHROMA_FFT)[::CHROMA_HOP]
    power = (np.abs(np.fft.rfft(frames * np.hanning(CHROMA_FFT), axis=1)) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(CHROMA_FFT, 1.0 / rate)
    band = (freqs >= CHROMA_LOW_HZ) & (freqs <= CHROMA_HIGH_HZ)
    classes = (np.round(12.0 * np.log2(freqs[band] / 440.0)).astype(int) + 9) % 12  # A is class 9
    profile = np.bincount(classes, weights=power[band], minlength=12)
    total = profile.sum()
    return profile / total if total > 0 else np.full(12, 1.0 / 12)


class DescriptorBackbone(Backbone):
    def __init__(self):
        super().__init__("descriptor", SAMPLE_RATE, None, None, "cpu", {"version": 1})

    @property
    def frontend(self) -> str:
        return f"{FRONTEND}, VGGish log-mel statistics + pitch-class profile"

    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        results = []
        for wave in waves:
            examples = log_mel_examples(wave).astype(np.float64)  # [examples, 96, 64]
            frames = np.concatenate([examples.mean(axis=1), examples.std(axis=1)], axis=1)
            bands = examples.reshape(-1, examples.shape[-1])
            profile = pitch_class_profile(wave)
            results.append({
                "frames": frames,
                "embedding": np.concatenate([bands.mean(axis=0), bands.std(axis=0), profile]),
                "logits": np.log(profile + PROFILE_FLOOR),
            })
        return results
