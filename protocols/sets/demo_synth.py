"""Procedural captioned music clips for the offline demo corpus (numpy only, deterministic from a seed).

Each clip is a melody over a chord accompaniment (optionally with a drum beat). What the caption names is
what the audio contains, note for note (the melody is a fixed arpeggio figure on the scale, so a model that
follows the caption can reproduce every pitch): the instruments (additive-synthesis timbres with their own
envelopes), the tempo (one bpm per tempo word), key and mode (the scale and the chord progression), the melody's
register (octave) and the dynamics (level and brightness). Clip k of a split is a pure function of (seed, split, k).

Clips are 2.56 s at 16 kHz by default: a quarter of the paper's 10.24 s, so that a tiny model trains on two
CPU cores in minutes while a clip still holds a chord change or more (3.1 to 5.8 beats across the tempi).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SYNTH_VERSION = 5  # bump when rendering changes, so cached clips are not mixed across versions
SAMPLE_RATE = 16_000
DURATION = 2.56
SPLITS = {"train": 1, "heldout": 2}  # separate random streams: held-out clips are never training clips

KEYS = ["c", "c sharp", "d", "e flat", "e", "f", "f sharp", "g", "a flat", "a", "b flat", "b"]
MODES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
# Scale-degree roots of a progression per mode (I-V-vi-IV and i-VI-III-VII).
PROGRESSIONS = {"major": [0, 4, 5, 3], "minor": [0, 5, 2, 6]}
# One bpm per tempo word, so that the caption fixes when every note starts. With a range per word (66-80, 92-112,
# 126-144) the onsets after the first beat were not determined by the caption, a model averaged over them and
# tempo accuracy stayed at chance (0.33 on 64 held-out clips even after 6,000 steps; one bpm each: 0.50-0.52
# after 2,400 steps, 0.77-0.80 after 6,000, two runs each).
TEMPO_BPM = {"slow": 72, "moderate": 100, "fast": 136}
# MIDI note of the melody's tonic. Notes start at middle C because the codec's 64-bin mel spreads each bin over
# ~47 Hz below 1 kHz: a semitone is 8 Hz at C3 and 16 Hz at C4, so an octave lower the latent barely holds
# which notes sound (an octave lower, a demo model's chroma match was 0.22 against 0.31 here).
REGISTERS = {"low": 60, "middle": 72, "high": 84}
CHORD_ROOT = 60  # the chords' register (C4 plus the key), under every melody register but the low one
# Peak level per dynamic. Loud clips peak at -6 dBFS: a model may render 2x the references' level and still not
# clip (at a 0.85 peak, demo models 1.2-1.5x too loud clipped 0.2% of their samples; at 0.5 none did).
DYNAMICS = {"soft": 0.18, "loud": 0.5}
# Three melody and two chord timbres. With six and four, a demo model spent its few minutes on timbre: on 64
# held-out clips key accuracy rose from 0.50 to 0.55 with fewer, register from 0.52 to 0.56, loudness from 0.70
# to 0.78 and mode from 0.53 to 0.59, the chroma match from 0.40 to 0.47 (two training seeds agreed).
MELODY_INSTRUMENTS = ["piano", "organ", "flute"]
CHORD_INSTRUMENTS = ["piano", "organ"]
MELODY_FIGURE = [0, 2, 4, 7, 4, 2]  # scale degrees, one per beat: tonic triad up to the octave and back


@dataclass(frozen=True)
class ClipSpec:
    key: str
    mode: str
    tempo: str
    bpm: int
    register: str
    dynamics: str
    melody: str
    chords: str
    drums: bool

    def caption(self) -> str:
        drums = "with a drum beat" if self.drums else "without drums"
        return (f"a {self.tempo} {self.melody} melody in {self.key} {self.mode} over {self.chords} chords, "
                f"{self.register} register, played {'softly' if self.dynamics == 'soft' else 'loudly'}, {drums}")

    def paraphrases(self) -> list[str]:
        drums = "drums" if self.drums else "no drums"
        return [
            self.caption(),
            f"{self.dynamics} {self.register} {self.melody} tune in the key of {self.key} {self.mode}, "
            f"{self.tempo} tempo at {self.bpm} bpm, {self.chords} chord accompaniment, {drums}",
            f"{self.chords} chords in {self.key} {self.mode} under a {self.register} {self.melody} line, "
            f"{self.tempo} and {self.dynamics}, {drums}",
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    def labels(self) -> dict[str, str]:
        """What a listener can check in the audio: the key (its tonic), mode, register, tempo, loudness and
        drums."""
        return {"key": self.key, "mode": self.mode, "register": self.register, "tempo": self.tempo,
                "loudness": self.dynamics, "drums": "drums" if self.drums else "no drums"}


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown demo split {split!r}; expected one of {list(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def draw_spec(rng: np.random.Generator) -> ClipSpec:
    tempo = str(rng.choice(list(TEMPO_BPM)))
    return ClipSpec(
        key=str(rng.choice(KEYS)), mode=str(rng.choice(list(MODES))), tempo=tempo,
        bpm=TEMPO_BPM[tempo], register=str(rng.choice(list(REGISTERS))),
        dynamics=str(rng.choice(list(DYNAMICS))), melody=str(rng.choice(MELODY_INSTRUMENTS)),
        chords=str(rng.choice(CHORD_INSTRUMENTS)), drums=bool(rng.random() < 0.5),
    )


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _envelope(n: int, attack: float, decay_rate: float, release: float, rate: int) -> np.ndarray:
    """Linear attack, exponential decay (decay_rate per second; 0 = sustained), linear release at the end."""
    t = np.arange(n) / rate
    env = np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-decay_rate * t)
    tail = int(min(release * rate, n))
    if tail:
        env[n - tail:] *= np.linspace(1.0, 0.0, tail)
    return env


def _note(instrument: str, midi: float, n: int, brightness: float, rng: np.random.Generator,
          rate: int) -> np.ndarray:
    """`n` samples of one note: partials (ratio, amplitude, decay per second) shaped by an envelope."""
    t = np.arange(n) / rate
    f0 = _hz(midi)
    vibrato = 0.0
    if instrument == "piano":
        partials = [(k, k ** -1.6, 2.0 + 1.5 * k) for k in range(1, 13)]
        env = _envelope(n, 0.004, 1.2, 0.03, rate)
    elif instrument == "organ":
        partials = [(1, 1.0, 0), (2, 0.7, 0), (3, 0.45, 0), (4, 0.35, 0), (6, 0.2, 0), (8, 0.15, 0)]
        env = _envelope(n, 0.02, 0.0, 0.03, rate)
    elif instrument == "flute":
        partials = [(1, 1.0, 0), (2, 0.25, 0), (3, 0.08, 0)]
        env = _envelope(n, 0.08, 0.3, 0.06, rate)
        vibrato = 0.006
    else:
        raise ValueError(f"unknown instrument {instrument!r}")
    phase_mod = 1.0 + vibrato * np.sin(2 * np.pi * 5.5 * t) if vibrato else 1.0
    wave = np.zeros(n)
    for ratio, amplitude, decay in partials:
        freq = f0 * ratio
        if freq >= 0.45 * rate:
            continue
        # Brightness tilts energy towards higher partials (loud playing is brighter).
        gain = amplitude * (ratio ** (brightness - 1.0)) * np.exp(-decay * t)
        wave += gain * np.sin(2 * np.pi * freq * t * phase_mod + rng.uniform(0, 2 * np.pi))
    if instrument == "flute":  # breath noise, low-passed by a moving average
        breath = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
        wave += 0.05 * breath
    return wave * env


def _drums(samples: int, beat: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    out = np.zeros(samples)
    kick_n = int(0.18 * rate)
    tk = np.arange(kick_n) / rate
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk * 30)) / 30)) * np.exp(-tk * 18)
    hat_n = int(0.05 * rate)
    hat = np.diff(rng.standard_normal(hat_n + 1)) * np.exp(-np.arange(hat_n) / rate * 70) * 0.25
    step = 0
    while step * beat / 2 < samples / rate:
        start = int(step * beat / 2 * rate)
        if step % 2 == 0:
            end = min(samples, start + kick_n)
            out[start:end] += kick[: end - start]
        end = min(samples, start + hat_n)
        out[start:end] += hat[: end - start]
        step += 1
    return out


def render(spec: ClipSpec, rng: np.random.Generator, duration: float = DURATION,
           sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio named by `spec`: float32 mono in [-1, 1], exactly round(duration * sample_rate) samples."""
    samples = int(round(duration * sample_rate))
    beat = 60.0 / spec.bpm
    scale = MODES[spec.mode]
    tonic = REGISTERS[spec.register] + KEYS.index(spec.key)
    brightness = 1.6 if spec.dynamics == "loud" else 0.6
    mix = np.zeros(samples)

    # Chords: triads on the progression's degrees, two beats each.
    chord_root = CHORD_ROOT + KEYS.index(spec.key)
    chords = np.zeros(samples)
    for index, start_beat in enumerate(np.arange(0, samples / sample_rate / beat, 2.0)):
        degree = PROGRESSIONS[spec.mode][index % 4]
        start = int(start_beat * beat * sample_rate)
        length = min(samples - start, int(2 * beat * sample_rate))
        for third in (0, 2, 4):
            step = degree + third
            midi = chord_root + scale[step % 7] + 12 * (step // 7)
            chords[start:start + length] += _note(spec.chords, midi, length, brightness, rng, sample_rate)
    mix += 0.35 * chords / 3

    # Melody: the arpeggio figure on the scale, one note per beat, so the caption determines every note.
    melody = np.zeros(samples)
    for index, start_beat in enumerate(np.arange(0, samples / sample_rate / beat, 1.0)):
        degree = MELODY_FIGURE[index % len(MELODY_FIGURE)]
        start = int(start_beat * beat * sample_rate)
        length = min(samples - start, int(beat * sample_rate))
        midi = tonic + scale[degree % 7] + 12 * (degree // 7)
        melody[start:start + length] += _note(spec.melody, midi, length, brightness, rng, sample_rate)
    mix += 0.6 * melody
    if spec.drums:
        mix += 0.5 * _drums(samples, beat, rng, sample_rate)

    peak = np.abs(mix).max()
    return (mix / max(peak, 1e-9) * DYNAMICS[spec.dynamics]).astype(np.float32)


def make_clip(seed: int, split: str, index: int, duration: float = DURATION,
              sample_rate: int = SAMPLE_RATE) -> tuple[ClipSpec, np.ndarray]:
    rng = _rng(seed, split, index)
    spec = draw_spec(rng)
    return spec, render(spec, rng, duration, sample_rate)
