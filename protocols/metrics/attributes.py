"""Musical attributes read back from audio, to check that generated clips follow their prompts.

For a corpus whose captions come from known labels (the demo corpus), each clip's attributes are estimated
from its waveform and compared with the labels of its prompt:
- scale: which of the 12 diatonic pitch-class sets the clip uses (a key up to its relative major/minor, which
  share every note), by matching the pitch-class profile against binary scale templates; no training;
- mode, register, tempo, loudness, drums: nearest class centroid on standardised features, the centroids fitted
  on labelled reference clips (the training corpus), so the estimators are calibrated on real examples and the
  held-out references show how accurate they are.
Chance is the accuracy of always answering the most frequent class of the evaluated labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from fluxbench.protocols.metrics.backbones.descriptor import pitch_class_profile

SAMPLE_RATE = 16_000
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
PITCH_CLASSES = ["c", "c sharp", "d", "e flat", "e", "f", "f sharp", "g", "a flat", "a", "b flat", "b"]  # C first
FRAME = 1024
HOP = 256
FIRST_MIDI, LAST_MIDI = 36, 100  # predominant-pitch search range
ONSET_LAGS_BPM = np.arange(50, 241, 5)  # tempo feature: onset autocorrelation at these beat rates
CENTROID_ATTRIBUTES = ("mode", "register", "tempo", "loudness", "drums")
ATTRIBUTES = ("scale", *CENTROID_ATTRIBUTES)


def _scale_templates() -> np.ndarray:
    base = np.zeros(12)
    base[list(MAJOR_SCALE)] = 1.0
    templates = np.stack([np.roll(base, shift) for shift in range(12)])
    templates -= templates.mean(axis=1, keepdims=True)
    return templates / np.linalg.norm(templates, axis=1, keepdims=True)


def _spectrogram(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(wave, dtype=np.float64)
    if data.shape[0] < FRAME:
        data = np.pad(data, (0, FRAME - data.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(data, FRAME)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1))
    return magnitude, np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)


def _predominant_midi(magnitude: np.ndarray, freqs: np.ndarray) -> float:
    """Median over loud frames of the pitch with the largest harmonic sum (five harmonics, weights 1/h)."""
    midis = np.arange(FIRST_MIDI, LAST_MIDI + 1)
    f0 = 440.0 * 2.0 ** ((midis - 69) / 12)
    salience = np.zeros((magnitude.shape[0], len(midis)))
    for harmonic in range(1, 6):
        bins = np.clip(np.round(f0 * harmonic / freqs[1]).astype(int), 0, len(freqs) - 1)
        salience += magnitude[:, bins] / harmonic
    energy = magnitude.sum(axis=1)
    loud = energy >= 0.25 * energy.max() if energy.max() > 0 else np.ones_like(energy, dtype=bool)
    return float(np.median(midis[salience[loud].argmax(axis=1)]))


def _onset_autocorrelation(magnitude: np.ndarray) -> np.ndarray:
    """Autocorrelation of the spectral-flux onset envelope at the beat periods of ONSET_LAGS_BPM (unit norm)."""
    log_magnitude = np.log1p(100.0 * magnitude)
    flux = np.maximum(0.0, np.diff(log_magnitude, axis=0)).sum(axis=1)
    flux = flux - flux.mean()
    frame_rate = SAMPLE_RATE / HOP
    values = []
    for bpm in ONSET_LAGS_BPM:
        lag = 60.0 / bpm * frame_rate
        low, frac = int(lag), lag - int(lag)
        pairs = [float(np.dot(flux[:-k], flux[k:]) / (len(flux) - k)) if 0 < k < len(flux) else 0.0
                 for k in (low, low + 1)]
        values.append((1 - frac) * pairs[0] + frac * pairs[1])
    vector = np.asarray(values)
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def clip_features(wave: np.ndarray) -> dict[str, np.ndarray]:
    """Per-attribute feature vectors of one 16 kHz mono clip."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    profile = pitch_class_profile(wave, SAMPLE_RATE)
    magnitude, freqs = _spectrogram(wave)
    scale = int(np.argmax(_scale_templates() @ (profile - profile.mean())))
    # Mode: the profile and the first second's profile, turned so that the detected scale's major tonic is 0.
    opening = pitch_class_profile(wave[:SAMPLE_RATE], SAMPLE_RATE)
    rms = float(np.sqrt(np.mean(wave ** 2)))
    power = magnitude ** 2
    high = power[:, freqs >= 5000].sum(axis=1)
    low = power[:, (freqs >= 30) & (freqs <= 120)].sum(axis=1)
    total = power.sum(axis=1) + 1e-12
    high_flux = np.maximum(0.0, np.diff(np.log(high + 1e-10))).mean() if len(high) > 1 else 0.0
    low_flux = np.maximum(0.0, np.diff(np.log(low + 1e-10))).mean() if len(low) > 1 else 0.0
    return {
        "scale": np.array([scale]),
        "mode": np.concatenate([np.roll(profile, -scale), np.roll(opening, -scale)]),
        "register": np.array([_predominant_midi(magnitude, freqs)]),
        "tempo": _onset_autocorrelation(magnitude),
        "loudness": np.array([20.0 * np.log10(max(rms, 1e-6))]),
        "drums": np.array([np.log10(np.mean(high / total) + 1e-8), high_flux, low_flux]),
    }


@dataclass
class AttributeEstimator:
    """Nearest class centroid per attribute on standardised features, fitted on labelled clips."""

    centroids: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    scales: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, features: Sequence[Mapping[str, np.ndarray]], labels: Sequence[Mapping[str, Any]]
            ) -> "AttributeEstimator":
        if len(features) != len(labels) or not features:
            raise ValueError(f"fit needs one label set per clip, got {len(features)} clips, {len(labels)} labels")
        estimator = cls()
        for attribute in CENTROID_ATTRIBUTES:
            matrix = np.stack([f[attribute] for f in features])
            mean, std = matrix.mean(axis=0), matrix.std(axis=0) + 1e-9
            standard = (matrix - mean) / std
            classes = sorted({str(label[attribute]) for label in labels})
            estimator.scales[attribute] = (mean, std)
            estimator.centroids[attribute] = {
                c: standard[[str(label[attribute]) == c for label in labels]].mean(axis=0) for c in classes}
        return estimator

    def predict(self, features: Mapping[str, np.ndarray]) -> dict[str, str]:
        predicted = {"scale": PITCH_CLASSES[int(features["scale"][0])]}
        for attribute, centroids in self.centroids.items():
            mean, std = self.scales[attribute]
            point = (features[attribute] - mean) / std
            predicted[attribute] = min(centroids, key=lambda c: float(np.sum((centroids[c] - point) ** 2)))
        return predicted


def accuracy(predicted: Sequence[Mapping[str, str]], labels: Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """Per attribute: accuracy, the majority-class chance level, and n."""
    table = {}
    for attribute in ATTRIBUTES:
        truth = [str(label[attribute]) for label in labels]
        hits = [p[attribute] == t for p, t in zip(predicted, truth)]
        counts = np.unique(truth, return_counts=True)[1]
        table[attribute] = {"accuracy": float(np.mean(hits)), "chance": float(counts.max() / len(truth)),
                            "n": len(truth)}
    return table
