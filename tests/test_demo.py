"""The offline demo corpus: deterministic, split, and the audio contains what the caption names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fluxbench import FluxbenchError, registry
from fluxbench.audio import read_audio
from fluxbench.models.fluxmusic.train import read_manifest
from fluxbench.protocols.sets.demo import DemoSet
from fluxbench.protocols.sets.demo_synth import (SAMPLE_RATE, TEMPO_BPM, ClipSpec, _rng, draw_spec, make_clip,
                                                 render)

BASE = ClipSpec(key="c", mode="major", tempo="moderate", bpm=100, register="middle", dynamics="loud",
                melody="piano", chords="organ", drums=False)


def _render(seed: int = 0, **changes) -> np.ndarray:
    return render(dataclasses.replace(BASE, **changes), np.random.default_rng(seed))


def _spectrum(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    power = np.abs(np.fft.rfft(wave)) ** 2
    return np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE), power


def test_clips_are_deterministic_and_splits_differ():
    spec, audio = make_clip(7, "train", 3)
    again_spec, again = make_clip(7, "train", 3)
    assert spec == again_spec and np.array_equal(audio, again)
    assert audio.dtype == np.float32 and audio.shape == (40960,)  # 2.56 s at 16 kHz
    assert not np.array_equal(make_clip(7, "heldout", 3)[1], audio)
    assert not np.array_equal(make_clip(8, "train", 3)[1], audio)


def test_caption_names_every_attribute():
    caption = BASE.caption()
    for word in ("moderate", "piano", "c major", "organ", "middle register", "loudly", "without drums"):
        assert word in caption
    assert "100 bpm" in BASE.paraphrases()[1]


def test_corpus_version_is_read_back_from_the_corpus_folder(tmp_path):
    from fluxbench.protocols.sets.demo import corpus_version
    from fluxbench.protocols.sets.demo_synth import SYNTH_VERSION

    corpus = DemoSet("train", size=1, seed=3, duration=0.32, root=tmp_path)
    assert corpus_version(corpus.write_manifest()) == SYNTH_VERSION
    assert corpus_version(corpus.folder / "demo-train-00000.wav") == SYNTH_VERSION
    assert corpus_version(tmp_path / "v12-seed0-2.56s" / "train-8.jsonl") == 12
    assert corpus_version(tmp_path / "train-8.jsonl") is None


def test_dynamics_set_the_level_with_headroom():
    # loud peaks at -6 dBFS, so a model within 2x the references' level need not clip
    assert np.abs(_render(dynamics="loud")).max() == pytest.approx(0.5, rel=1e-6)
    assert np.abs(_render(dynamics="soft")).max() == pytest.approx(0.18, rel=1e-6)


def test_register_moves_the_melody_by_octaves():
    # Same random stream, melody only differs by octaves: the spectral centroid rises with the register.
    centroids = []
    for register in ("low", "middle", "high"):
        freqs, power = _spectrum(_render(register=register, chords="organ"))
        centroids.append((freqs * power).sum() / power.sum())
    assert centroids[0] < centroids[1] < centroids[2]


def test_key_and_mode_shape_the_pitch_content():
    def chroma(wave):  # power near each equal-tempered pitch class, 60 Hz to 2 kHz
        freqs, power = _spectrum(wave)
        keep = (freqs > 60) & (freqs < 2000)
        semitones = 12 * np.log2(freqs[keep] / 440.0) + 69
        near = np.abs(semitones - np.round(semitones)) < 0.25
        classes = np.round(semitones[near]).astype(int) % 12
        return np.bincount(classes, weights=power[keep][near], minlength=12)

    timbre = {"melody": "organ", "chords": "organ"}  # steady harmonic partials: pitch classes stay the played ones
    major, minor = chroma(_render(mode="major", **timbre)), chroma(_render(mode="minor", **timbre))
    # C major uses E (4) and not E flat (3); C minor the reverse.
    assert major[4] > 20 * major[3] and minor[3] > 20 * minor[4]
    shifted = chroma(_render(key="d", mode="major", **timbre))
    assert shifted[6] > 20 * shifted[5]  # D major has F sharp, not F


def test_drums_add_broadband_transients_and_tempo_sets_note_rate():
    # timbres whose partials stay below 6 kHz (the organ's eighth partial of E5 is 5.3 kHz)
    tonal = dict(register="low", melody="flute", chords="organ")
    without, with_drums = _render(drums=False, **tonal), _render(drums=True, **tonal)
    freqs, quiet = _spectrum(without / np.abs(without).max())
    _, loud = _spectrum(with_drums / np.abs(with_drums).max())
    high = freqs > 6000
    assert loud[high].sum() > 10 * quiet[high].sum()

    def onsets(wave):  # drum strokes: rises of the energy above 5 kHz through a tenth of its peak
        frames = wave[: len(wave) // 160 * 160].reshape(-1, 160)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        high = power[:, np.fft.rfftfreq(160, 1 / SAMPLE_RATE) > 5000].sum(axis=1)
        above = high > 0.1 * high.max()
        return int((above[1:] & ~above[:-1]).sum() + above[0])

    slow = onsets(_render(tempo="slow", bpm=TEMPO_BPM["slow"], drums=True))
    fast = onsets(_render(tempo="fast", bpm=TEMPO_BPM["fast"], drums=True))
    assert fast > 1.5 * slow


def test_attributes_are_balanced():
    specs = [draw_spec(_rng(0, "train", i)) for i in range(600)]
    for field, count in (("mode", 2), ("tempo", 3), ("register", 3), ("dynamics", 2), ("melody", 3),
                         ("chords", 2), ("drums", 2)):
        values = [getattr(s, field) for s in specs]
        shares = np.array([values.count(v) for v in set(values)]) / len(values)
        assert len(shares) == count and shares.min() > 0.5 / count, field
    # The tempo word names one bpm, so the caption fixes every onset.
    assert {(s.tempo, s.bpm) for s in specs} == set(TEMPO_BPM.items())


def test_demo_set_items_manifest_and_registry(tmp_path):
    held_out = registry.get("set", "demo").create(size=3, root=tmp_path)
    items = list(held_out.items())
    assert [i.id for i in items] == ["demo-heldout-00000", "demo-heldout-00001", "demo-heldout-00002"]
    audio, rate = read_audio(items[0].reference)
    assert rate == 16000 and audio.shape == (1, 40960)
    spec, clean = make_clip(0, "heldout", 0)
    assert items[0].caption == spec.caption()
    assert np.abs(audio[0] - clean).max() < 1 / 32767 + 1e-6  # 16-bit PCM of the same clip
    # Second pass reads the cache instead of re-rendering.
    stamp = items[0].reference.stat().st_mtime_ns
    assert [i.caption for i in held_out.items()] == [i.caption for i in items]
    assert items[0].reference.stat().st_mtime_ns == stamp

    train = DemoSet("train", size=4, root=tmp_path)
    records = read_manifest(train.write_manifest(tmp_path / "train.jsonl"))
    assert len(records) == 4 and records[0].captions[0] == make_clip(0, "train", 0)[0].caption()
    assert not set(r.path for r in records) & set(str(i.reference) for i in items)


def test_demo_set_errors():
    with pytest.raises(FluxbenchError, match="unknown split 'test'"):
        DemoSet("test")
    with pytest.raises(FluxbenchError, match="size must be >= 1"):
        DemoSet(size=0)


def test_parallel_rendering_writes_the_same_clips_as_one_process(tmp_path):
    one, two = DemoSet("train", size=5, root=tmp_path / "one"), DemoSet("train", size=5, root=tmp_path / "two")
    assert one.render_missing(workers=1) == 5 and two.render_missing(workers=2) == 5
    for index in range(5):
        for first, second in zip(one._paths(index), two._paths(index)):
            assert first.read_bytes() == second.read_bytes()
    assert two.render_missing(workers=2) == 0  # everything on disk: nothing rendered again
    (two.folder / "demo-train-00003.json").unlink()  # a clip whose description is missing is rendered anew
    assert two.render_missing(workers=2) == 1 and two.labels()["demo-train-00003"] == one.labels()["demo-train-00003"]
