"""The demo model learns: an overfit run reproduces its training clips; anchors and attributes are sound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fluxbench.audio import mel_spectrogram, read_audio
from fluxbench.models.fluxmusic.pipeline import FluxMusicModel
from fluxbench.models.fluxmusic.train import demo_config, train
from fluxbench.models.fluxmusic.vocab_conditioner import words
from fluxbench.protocols.sets.demo import DemoSet
from fluxbench.protocols.sets.demo_synth import (CHORD_INSTRUMENTS, DYNAMICS, KEYS, MELODY_INSTRUMENTS, MODES,
                                                 REGISTERS, TEMPO_BPM, ClipSpec)

OVERFIT_SECONDS = 0.64


def _log_mel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    mels = mel_spectrogram(torch.from_numpy(np.stack([a, b])).float())
    return float(np.corrcoef(mels[0].flatten(), mels[1].flatten())[0, 1])


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """The demo recipe (codec, width, text encoder, rectified flow, EMA) trained on two short clips only."""
    root = tmp_path_factory.mktemp("overfit")
    corpus = DemoSet("train", size=2, duration=OVERFIT_SECONDS, root=root / "corpus")
    recipe = demo_config(out=str(root / "model"), manifest=str(corpus.write_manifest()), duration=OVERFIT_SECONDS,
                         steps=900, global_batch=2, micro_batch=2, warmup_steps=10, ema_decay=0.9, save_every=900,
                         null_prob=0.0)
    folder = train(recipe, device_choice="cpu", progress=False)
    model = FluxMusicModel.from_folder(folder, device="cpu")
    clips = [(spec.caption(), read_audio(path)[0][0]) for _, spec, path in corpus.specs()]
    return model, clips


@pytest.mark.slow
def test_overfit_model_reproduces_its_training_clips(overfit):
    model, clips = overfit
    captions = [caption for caption, _ in clips]
    references = np.stack([wave for _, wave in clips])
    with torch.inference_mode():
        through_codec = model.codec.decode(model.codec.encode(torch.from_numpy(references))).numpy()
    generated = model.generate(captions, duration=OVERFIT_SECONDS, seed=[5, 6], steps=25, guidance=1.0).waveforms
    for index in range(2):
        own = _log_mel_correlation(generated[index], through_codec[index][: generated.shape[1]])
        other = _log_mel_correlation(generated[index], through_codec[1 - index][: generated.shape[1]])
        assert own >= 0.9, f"clip {index}: log-mel correlation {own:.3f} with its training clip"
        assert own > other + 0.05, f"clip {index}: follows the other caption's clip ({other:.3f} vs {own:.3f})"
    # The same sampling from fresh weights reproduces nothing: the check can fail.
    untrained = model.untrained(seed=0).generate(captions, duration=OVERFIT_SECONDS, seed=[5, 6], steps=25,
                                                 guidance=1.0).waveforms
    assert _log_mel_correlation(untrained[0], through_codec[0][: untrained.shape[1]]) < 0.6
    # A model that learned its two captions loses far more when they are swapped than a fresh one does.
    rate = model.sample_rate
    assert model.caption_reliance(list(references), rate, captions) > 0.5
    assert abs(model.untrained(seed=0).caption_reliance(list(references), rate, captions)) < 0.02


def test_every_demo_caption_reaches_the_demo_text_encoder_uncut():
    """The encoder cuts captions at `max_tokens` words; no caption or paraphrase of any corpus clip is that long."""
    max_tokens = demo_config(manifest="unused.jsonl", duration=2.56).conditioner["max_tokens"]
    longest = 0
    for key, mode, tempo, register, dynamics, melody, chords, drums in itertools.product(
            KEYS, MODES, TEMPO_BPM, REGISTERS, DYNAMICS, MELODY_INSTRUMENTS, CHORD_INSTRUMENTS, (False, True)):
        spec = ClipSpec(key=key, mode=mode, tempo=tempo, bpm=TEMPO_BPM[tempo], register=register,
                        dynamics=dynamics, melody=melody, chords=chords, drums=drums)
        longest = max(longest, *(len(words(caption)) for caption in spec.paraphrases()))
    assert 15 < longest <= max_tokens


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """A demo-recipe model folder trained for two steps (architecture and files as `make demo` writes them)."""
    root = tmp_path_factory.mktemp("small")
    corpus = DemoSet("train", size=4, root=root / "corpus")
    config = demo_config(out=str(root / "model"), manifest=str(corpus.write_manifest()), duration=corpus.duration,
                         steps=2, global_batch=4, micro_batch=4, save_every=2, sample_steps=3, guidance=2.0)
    return train(config, device_choice="cpu", progress=False)


def test_model_folder_sampling_settings_are_the_defaults_and_flags_override(small_folder):
    model = FluxMusicModel.from_folder(small_folder, device="cpu")
    settings = model.settings(duration=0.32)
    assert (settings["steps"], settings["guidance"], settings["preset"]) == (3, 2.0, "model folder")
    assert model.settings(duration=0.32, steps=7)["steps"] == 7
    assert model.settings(duration=0.32, preset="paper")["steps"] == 50
    assert FluxMusicModel.from_folder(small_folder, device="cpu", preset="official").settings(0.32)["guidance"] == 7.0


def test_model_folder_records_parameters_and_training_time(small_folder):
    model = FluxMusicModel.from_folder(small_folder, device="cpu")
    provenance = model.provenance()
    assert provenance["parameters"] == sum(p.numel() for p in model.transformer.parameters())
    assert provenance["training"]["step"] == provenance["training"]["steps"] == 2
    assert provenance["training"]["seconds"] > 0


def test_untrained_twin_has_fresh_weights_and_the_same_shape(small_folder):
    model = FluxMusicModel.from_folder(small_folder, device="cpu")
    twin = model.untrained(seed=0)
    assert twin.transformer.config == model.transformer.config and twin.codec is model.codec
    trained_state, fresh_state = model.transformer.state_dict(), twin.transformer.state_dict()
    assert any(not torch.equal(trained_state[k], fresh_state[k]) for k in trained_state)
    assert any(not torch.equal(a, b) for a, b in zip(model.conditioner.state_dict().values(),
                                                     twin.conditioner.state_dict().values()))
    again = model.untrained(seed=0).transformer.state_dict()
    assert all(torch.equal(fresh_state[k], again[k]) for k in fresh_state)  # seeded


def test_demo_run_scores_anchor_rows_with_attribute_accuracy(small_folder, tmp_path):
    from fluxbench.anchors import anchor_table, verdict_line
    from fluxbench.runner import RunConfig, Runner, summary_table

    config = RunConfig(model=str(small_folder), set="demo", set_options={"size": 6, "root": str(tmp_path / "set")},
                       batch_size=3, generation={"steps": 2}, bootstrap=0, out=str(tmp_path / "runs"),
                       progress=False)
    runner = Runner(config)
    results = runner.run()
    anchors = results["anchors"]
    rows = anchors["rows"]
    assert set(rows) == {"trained", "untrained", "noise", "codec", "references"}
    metric_keys = set(results["metrics"])
    attributes = {"key", "mode", "register", "tempo", "loudness", "drums"}
    signal = {"chroma_match", "level_ratio"}
    for name in ("trained", "untrained", "noise", "codec"):
        reliance = {"caption_reliance"} if name in ("trained", "untrained") else set()
        assert set(rows[name]) == metric_keys | attributes | signal | reliance, name
    assert abs(rows["untrained"]["caption_reliance"]) < 0.02  # fresh weights barely read the caption
    assert set(rows["references"]) == attributes | signal
    assert rows["references"]["level_ratio"] == pytest.approx(1.0) and rows["references"]["chroma_match"] > 0.5
    assert rows["noise"]["level_ratio"] == pytest.approx(1.0, rel=0.05) and abs(rows["noise"]["chroma_match"]) < 0.3
    assert rows["trained"]["descriptor_fd"] == results["metrics"]["descriptor_fd"]["value"]
    # Noise matches each reference's level; the codec row is far closer to the references than noise.
    ids = sorted(results["set"]["captions"])
    for item_id in ids:
        noise, _ = read_audio(runner.run_dir / "anchors" / "noise" / f"{item_id}.wav")
        reference, _ = read_audio(runner.run_dir / "reference" / f"{item_id}.wav")
        assert np.sqrt(np.mean(noise ** 2)) == pytest.approx(np.sqrt(np.mean(reference ** 2)), rel=0.05)
    assert rows["codec"]["descriptor_fd"] < 0.5 * rows["noise"]["descriptor_fd"]
    assert rows["references"]["loudness"] >= 5 / 6 and rows["noise"]["key"] <= 2 / 6
    assert all(0 < anchors["chance"][a] <= 1 for a in attributes)
    assert set(anchors["verdict"]) == metric_keys | attributes | {"chroma_match", "caption_reliance"}
    assert set(anchors["verdict"]["caption_reliance"]) == {"beats_untrained"}
    assert set(anchors["p_values"]) == set(rows) and all(0 <= anchors["p_values"]["trained"][a] <= 1
                                                         for a in attributes)
    assert all("above_chance" in anchors["verdict"][a] for a in attributes)
    table = anchor_table(anchors)
    assert "| chance |" in table and "| p (trained vs chance) |" in table
    assert table.endswith(verdict_line(anchors["verdict"]))
    assert "beats_noise" not in anchors["verdict"]["loudness"]  # the noise row has the references' level
    assert table in summary_table(results) and results["timing"]["anchors_s"] > 0
    # A second run reuses the anchor clips (resumable like the run itself).
    stamp = (runner.run_dir / "anchors" / "untrained" / f"{ids[0]}.wav").stat().st_mtime_ns
    Runner(config).run()
    assert (runner.run_dir / "anchors" / "untrained" / f"{ids[0]}.wav").stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def held_out_references(tmp_path_factory):
    """48 held-out demo clips, their labels and the attribute estimator fitted on the training split."""
    from fluxbench.anchors import fit_estimator

    held_out = DemoSet("heldout", size=48, root=tmp_path_factory.mktemp("demo-corpus"))
    labels = held_out.labels()
    waves = [read_audio(held_out.folder / f"{i}.wav")[0][0] for i in labels]
    return held_out, fit_estimator(held_out), list(labels.values()), waves


def test_attribute_estimators_read_the_references_well_above_chance(held_out_references):
    from fluxbench.protocols.metrics.attributes import PITCH_CLASSES, accuracy, clip_features
    from fluxbench.protocols.sets.demo_synth import KEYS

    assert PITCH_CLASSES == KEYS  # key labels and predictions name pitch classes alike
    _, estimator, labels, waves = held_out_references
    table = accuracy([estimator.predict(clip_features(w)) for w in waves], labels)
    for attribute, entry in table.items():
        assert entry["accuracy"] >= entry["chance"] + 0.2 and entry["p_value"] < 1e-3, (attribute, entry)
    # the caption fixes the tonic triad in both voices: the template reads key and mode of clean clips exactly
    assert table["key"]["accuracy"] >= 0.95 and table["mode"]["accuracy"] >= 0.95, table
    # the melody's height above the tonic, not its absolute pitch, names the register (0.77 without the tonic)
    assert table["register"]["accuracy"] >= 0.85, table
    # the kick band's share of the power tells drums apart (0.83 from the bands' onsets and the hats' share alone)
    assert table["drums"]["accuracy"] >= 0.95, table


def test_attributes_survive_the_demo_codec_so_its_anchor_row_is_a_ceiling(held_out_references):
    from fluxbench.anchors import codec_round_trip
    from fluxbench.models.fluxmusic.latent import build_codec
    from fluxbench.protocols.metrics.attributes import accuracy, clip_features

    held_out, estimator, labels, waves = held_out_references
    codec = build_codec(demo_config(manifest="unused.jsonl", duration=held_out.duration).codec)
    decoded = codec_round_trip(codec, waves, len(waves[0]))  # what the run's codec row holds
    table = accuracy([estimator.predict(clip_features(w)) for w in decoded], labels)
    # decoding blurs onsets: from onsets alone drums read about 0.5 here, under their chance of 0.58
    for attribute, entry in table.items():
        assert entry["accuracy"] >= 0.8 and entry["accuracy"] >= entry["chance"] + 0.2, (attribute, entry)


def test_tempo_feature_keeps_the_kick_apart_from_the_off_beat_hats():
    from fluxbench.protocols.metrics.attributes import ONSET_BANDS_HZ, ONSET_LAGS_BPM, clip_features
    from fluxbench.protocols.sets.demo_synth import _drums

    beat = 60.0 / 70  # kick on every beat, hi-hat on every half beat
    bands = clip_features(_drums(4 * 16000, beat, np.random.default_rng(0), 16000))["tempo"]
    kick, _, hats = bands.reshape(len(ONSET_BANDS_HZ), len(ONSET_LAGS_BPM))
    at = {bpm: int(np.argmin(np.abs(ONSET_LAGS_BPM - bpm))) for bpm in (70, 140)}
    assert kick[at[70]] > 0.3 and kick[at[140]] < 0.5 * kick[at[70]]  # the kick band hears 70 bpm, not 140
    assert hats[at[140]] > 0.3  # the hats alone would say 140


def test_key_estimator_names_the_tonic_triad_and_follows_a_transposition():
    from fluxbench.protocols.metrics.attributes import PITCH_CLASSES, estimate_key
    from fluxbench.protocols.metrics.backbones.descriptor import pitch_class_profile

    t = np.arange(16000) / 16000
    chord = lambda root, third: sum(np.sin(2 * np.pi * 261.63 * 2 ** ((root + k) / 12) * t)  # noqa: E731
                                    for k in (0, third, 7))
    for root in range(12):
        assert estimate_key(pitch_class_profile(chord(root, 4))) == (root, "major"), PITCH_CLASSES[root]
        assert estimate_key(pitch_class_profile(chord(root, 3))) == (root, "minor"), PITCH_CLASSES[root]


def test_accuracy_reports_chance_and_the_binomial_p_value():
    from math import comb

    from fluxbench.protocols.metrics.attributes import ATTRIBUTES, above_chance_p_value, accuracy

    labels = [{a: ("x" if i % 4 else "y") for a in ATTRIBUTES} for i in range(8)]  # 6 x, 2 y
    table = accuracy([{a: "x" for a in ATTRIBUTES}] * 8, labels)
    at_least_six = sum(comb(8, k) * 0.75 ** k * 0.25 ** (8 - k) for k in (6, 7, 8))
    assert table["key"] == {"accuracy": 0.75, "chance": 0.75, "n": 8, "p_value": pytest.approx(at_least_six)}
    assert above_chance_p_value(0, 8, 0.75) == pytest.approx(1.0)
    assert above_chance_p_value(8, 8, 0.5) == pytest.approx(1 / 256)


def test_chroma_match_and_level_ratio_on_known_signals():
    from fluxbench.anchors import chroma_match, level_ratio

    t = np.arange(16000) / 16000
    tones = [np.sin(2 * np.pi * 440 * 2 ** (k / 12) * t) for k in (0, 3, 7)]  # A, C, E: distinct pitch classes
    assert chroma_match(tones, tones) > 0.9
    assert chroma_match(tones, tones[1:] + tones[:1]) < -0.3  # each clip follows another prompt's pitch
    assert level_ratio([0.5 * w for w in tones], tones) == pytest.approx(0.5)


def test_verdict_names_each_column_under_the_check_it_missed():
    from fluxbench.anchors import verdict, verdict_line

    rows = {"trained": {"descriptor_fd": 40.0, "drums": 0.8, "loudness": 0.7, "tempo": 0.3},
            "untrained": {"descriptor_fd": 500.0, "drums": 0.6, "loudness": 0.5, "tempo": 0.4},
            "noise": {"descriptor_fd": 600.0, "drums": 0.4, "loudness": 0.9, "tempo": 0.3},
            "codec": {"descriptor_fd": 20.0, "drums": 0.7, "loudness": 0.8, "tempo": 0.8}}
    checks = verdict(rows, {"drums": 0.001, "loudness": 0.004, "tempo": 0.9})
    assert checks["descriptor_fd"] == {"beats_noise": True, "beats_untrained": True, "within_floor": True}
    assert checks["loudness"] == {"beats_untrained": True, "within_floor": True, "above_chance": True}
    assert checks["drums"]["within_floor"] is False and checks["tempo"]["beats_untrained"] is False
    line = verdict_line(checks)
    assert line == ("trained model misses: not above chance (p < 0.01) on tempo; not better than noise on tempo; "
                    "not better than untrained on tempo; better than the codec floor on drums")
    rows["trained"].update(drums=0.7, tempo=0.5)
    assert verdict_line(verdict(rows, {"drums": 0.001, "loudness": 0.004, "tempo": 0.005})).startswith(
        "trained model sits between noise/untrained and the codec floor on every column")


def test_untrained_twin_leaves_the_callers_random_stream_alone(small_folder):
    model = FluxMusicModel.from_folder(small_folder, device="cpu")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model.untrained(seed=0)
    assert torch.equal(torch.rand(3), expected)
