"""fadtk's backbones (tiny random models in the hub layouts), fadtk-format reference statistics, KAD and FAD
through `score_folders` and the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxbench import FluxbenchError
from fluxbench.audio import write_wav
from fluxbench.protocols.metrics import frechet_distance, frechet_distance_from_stats
from fluxbench.protocols.metrics.backbones import BackboneError, load_backbone
from fluxbench.protocols.metrics.backbones import fadtk as fadtk_module
from fluxbench.protocols.metrics.backbones.fadtk import fadtk_waveform, pcm16, pool_seconds
from fluxbench.protocols.metrics.frechet import GaussianStats
from fluxbench.protocols.metrics.kad import kernel_audio_distance
from fluxbench.protocols.metrics.reference_stats import (ReferenceStatsError, available_keys, fadtk_stats_folder,
                                                         load_reference_stats, parse_ref_stats)
from fluxbench.protocols.metrics.scoring import score_folders

sys.path.insert(0, str(Path(__file__).parent))
from test_metrics_backbones import save_tiny_clap  # noqa: E402
from tiny_hub import build_encodec, build_mert  # noqa: E402


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("fadtk_hub")
    build_mert(root)
    build_encodec(root)
    save_tiny_clap(root / "larger_clap_music")
    return root


def _noise(rng, seconds, rate, level=0.2):
    return np.clip(level * rng.standard_normal(int(seconds * rate)), -1, 1)


# ---- front end ------------------------------------------------------------------------------------------
def test_pcm16_is_a_16_bit_wav_round_trip(tmp_path):
    import soundfile as sf

    wave = np.array([0.0, 0.5, -0.5, 1.2, -1.3, 1e-5, 0.99999, -1.0])
    sf.write(tmp_path / "x.wav", wave, 16000, subtype="PCM_16")
    written, _ = sf.read(tmp_path / "x.wav", dtype="int16")
    np.testing.assert_array_equal(pcm16(wave), written / 32768.0)


def test_kaiser_resampler_is_the_windowed_sinc_formula():
    # Evaluate torchaudio's sinc_interp_kaiser kernel directly at each output time (44.1 kHz -> 48 kHz).
    from fluxbench.protocols.metrics.frontend import sinc_resample

    rng = np.random.default_rng(1)
    wave = rng.standard_normal(441).astype(np.float64)
    out = sinc_resample(wave, 44100, 48000, 64, fadtk_module.RESAMPLE_ROLLOFF, fadtk_module.RESAMPLE_BETA)
    orig, new = 147, 160  # 44100 / 300, 48000 / 300
    cutoff = min(orig, new) * fadtk_module.RESAMPLE_ROLLOFF
    beta = fadtk_module.RESAMPLE_BETA
    for j in (0, 7, 100, 479):
        u = (np.arange(wave.size) / orig - j / new) * cutoff
        inside = np.abs(u) < 64
        window = np.zeros_like(u)
        window[inside] = np.i0(beta * np.sqrt(1 - (u[inside] / 64) ** 2)) / np.i0(beta)
        kernel = np.where(u == 0, 1.0, np.sin(np.pi * u) / np.where(u == 0, 1.0, np.pi * u)) * window * cutoff / orig
        assert out[j] == pytest.approx(float(kernel @ wave), abs=1e-9)
    assert out.size == math.ceil(441 * new / orig)


def test_fadtk_waveform_mixes_down_resamples_and_quantises(tmp_path):
    rng = np.random.default_rng(2)
    stereo = np.stack([_noise(rng, 0.5, 44100), _noise(rng, 0.5, 44100)])
    write_wav(tmp_path / "s.wav", stereo, 44100)
    wave = fadtk_waveform(tmp_path / "s.wav", 48000)
    assert wave.size == math.ceil(stereo.shape[1] * 48000 / 44100)
    np.testing.assert_array_equal(wave * 32768, np.rint(wave * 32768))  # on the 16-bit grid
    from fluxbench.audio import read_audio
    from fluxbench.protocols.metrics.frontend import sinc_resample

    audio, _ = read_audio(tmp_path / "s.wav")
    expected = pcm16(sinc_resample(audio.mean(axis=0), 44100, 48000, 64, fadtk_module.RESAMPLE_ROLLOFF,
                                   fadtk_module.RESAMPLE_BETA))
    np.testing.assert_array_equal(wave, expected)


def test_pool_seconds_follows_kadtk_unfold_rule():
    import torch

    frames = np.random.default_rng(3).standard_normal((749, 4)).astype(np.float32)
    stride = int(749 / (60000 / 24000))  # kadtk: int(frames / seconds)
    expected = torch.from_numpy(frames).unfold(0, stride, stride).mean(-1).numpy()
    np.testing.assert_allclose(pool_seconds(frames, 60000, 24000), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(BackboneError, match="cannot be pooled"):
        pool_seconds(frames[:0], 60000, 24000)


# ---- backbones ------------------------------------------------------------------------------------------
def test_mert_takes_the_last_hidden_state_of_the_normalised_input(hub):
    import torch
    from transformers import HubertModel

    backbone = load_backbone("MERT-v1-95M", hub / "MERT-v1-95M", "cpu")
    assert backbone.details == {"layer": 2} and backbone.sample_rate == 24000
    wave = pcm16(_noise(np.random.default_rng(4), 1.5, 24000))
    out = backbone.embed([wave])[0]
    model = HubertModel.from_pretrained(str(hub / "MERT-v1-95M")).eval()  # independent path: config as saved
    normalised = (wave - wave.mean()) / np.sqrt(wave.astype(np.float32).var() + 1e-7)
    with torch.no_grad():
        hidden = model(torch.from_numpy(normalised.astype(np.float32))[None], output_hidden_states=True).hidden_states
    expected = hidden[2][0].numpy()
    np.testing.assert_allclose(out["frames"], expected, rtol=2e-3, atol=2e-3)  # float16 storage
    np.testing.assert_array_equal(out["frames"], out["frames"].astype(np.float16).astype(np.float32))
    assert out["kad_frames"].shape == (1, 32)  # int(449 / 1.5) = 299 frames per row
    first_layer = fadtk_module.MertBackbone.from_pretrained(hub / "MERT-v1-95M", layer=1).embed([wave])[0]["frames"]
    np.testing.assert_allclose(first_layer, hidden[1][0].numpy(), rtol=2e-3, atol=2e-3)


def test_mert_refuses_other_variants(hub, tmp_path):
    import shutil

    copy = tmp_path / "MERT-v1-330M"
    shutil.copytree(hub / "MERT-v1-95M", copy)
    settings = json.loads((copy / "config.json").read_text())
    settings["feature_extractor_cqt"] = True
    (copy / "config.json").write_text(json.dumps(settings))
    with pytest.raises(BackboneError, match="CQT"):
        load_backbone("MERT-v1-95M", copy, "cpu")
    with pytest.raises(BackboneError, match="layer 9"):
        fadtk_module.MertBackbone.from_pretrained(hub / "MERT-v1-95M", layer=9)


def test_encodec_frames_are_the_encoder_output(hub):
    import torch
    from transformers import EncodecModel

    backbone = load_backbone("encodec-emb", hub / "encodec_24khz", "cpu")
    wave = pcm16(_noise(np.random.default_rng(5), 0.5, 24000))
    out = backbone.embed([wave])[0]
    model = EncodecModel.from_pretrained(str(hub / "encodec_24khz")).eval()
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(wave.astype(np.float32))[None, None])[0].T.numpy()
    np.testing.assert_allclose(out["frames"], expected, rtol=2e-3, atol=1e-3)
    assert out["frames"].shape == (1500, 16)
    # kadtk pools int(1500 / 0.5 s) = 3000 frames per row, more than the clip has: one row, the mean of all
    assert out["kad_frames"].shape == (1, 16)
    np.testing.assert_allclose(out["kad_frames"][0], expected.mean(axis=0), rtol=2e-3, atol=1e-3)


def test_clap_frames_are_one_zero_padded_10s_window_per_second(hub):
    import torch
    from transformers import ClapFeatureExtractor, ClapModel

    backbone = load_backbone("clap-laion-music", hub / "larger_clap_music", "cpu")
    wave = pcm16(_noise(np.random.default_rng(6), 2.5, 48000))
    out = backbone.embed([wave])[0]
    assert out["frames"].shape == (3, 8)  # windows starting at 0, 1 and 2 s
    np.testing.assert_array_equal(out["frames"], out["kad_frames"])
    model = ClapModel.from_pretrained(str(hub / "larger_clap_music")).eval()
    extractor = ClapFeatureExtractor.from_pretrained(str(hub / "larger_clap_music"))
    quantised = (np.clip(wave, -1, 1) * 32767).astype(np.int16) / 32767
    window = np.zeros(480000)
    window[:wave.size - 48000] = quantised[48000:]  # the window starting at 1 s
    features = extractor([window.astype(np.float32)], sampling_rate=48000, truncation="rand_trunc",
                         return_tensors="pt")["input_features"]
    with torch.no_grad():
        projected = model.get_audio_features(input_features=features)
    projected = projected if hasattr(projected, "norm") else projected.pooler_output
    expected = (projected / projected.norm(dim=-1, keepdim=True))[0].numpy()
    np.testing.assert_allclose(out["frames"][1], expected, rtol=2e-3, atol=1e-3)


def test_missing_weights_name_the_hub_id(tmp_path, monkeypatch):
    from fluxbench.protocols.metrics.scoring import score_folders as score

    monkeypatch.setenv("FLUXBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    rng = np.random.default_rng(7)
    for side in ("gen", "ref"):
        for i in range(2):
            write_wav(tmp_path / side / f"c{i}.wav", _noise(rng, 0.5, 24000), 24000)
    with pytest.raises(FluxbenchError, match=r"hf://m-a-p/MERT-v1-95M.*FLUXBENCH_MERT"):
        score(tmp_path / "gen", tmp_path / "ref", backbone="MERT-v1-95M", weights_dir=tmp_path / "none")


# ---- scoring --------------------------------------------------------------------------------------------
@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(8)
    for i in range(6):
        write_wav(tmp_path / "gen" / f"clip{i}.wav", _noise(rng, 1.2 + 0.1 * i, 24000, 0.2), 24000)
        write_wav(tmp_path / "ref" / f"clip{i}.wav", _noise(rng, 1.3, 44100, 0.3), 44100)
    return tmp_path / "gen", tmp_path / "ref"


def _embed_folder(backbone, folder):
    names = sorted(p.name for p in Path(folder).iterdir())
    return [backbone.embed([backbone.load_wave(Path(folder) / n)])[0] for n in names]


def test_score_encodec_fad_and_kad_match_the_metric_functions(hub, folders, tmp_path):
    gen, ref = folders
    results = score_folders(gen, ref, backbone="encodec-emb", weights_dir=hub, bootstrap=20, seed=1,
                            cache_dir=tmp_path / "cache")
    json.dumps(results, allow_nan=False)
    assert set(results["metrics"]) == {"encodec-emb_fad", "encodec-emb_kad"}
    backbone = load_backbone("encodec-emb", hub / "encodec_24khz", "cpu")
    gen_out, ref_out = _embed_folder(backbone, gen), _embed_folder(backbone, ref)
    fad = frechet_distance(np.concatenate([o["frames"] for o in gen_out]),
                           np.concatenate([o["frames"] for o in ref_out]))
    kad = kernel_audio_distance(np.concatenate([o["kad_frames"] for o in gen_out]),
                                np.concatenate([o["kad_frames"] for o in ref_out]))
    fad_entry, kad_entry = results["metrics"]["encodec-emb_fad"], results["metrics"]["encodec-emb_kad"]
    assert fad_entry["value"] == pytest.approx(fad, rel=1e-9)
    assert kad_entry["value"] == pytest.approx(kad.value, rel=1e-9)
    assert kad_entry["bandwidth"] == pytest.approx(kad.bandwidth) and kad_entry["bandwidth_from"] == "generated"
    for entry in (fad_entry, kad_entry):
        assert entry["ci95"][0] <= entry["ci95"][1] and entry["backbone"] == "encodec-emb"
    assert results["settings"]["kad_bandwidth"] == "generated"
    assert "encodec-emb_fad" in results["per_clip"]["clip0.wav"]
    by_reference = score_folders(gen, ref, metrics="kad", backbone="encodec-emb", weights_dir=hub,
                                 kad_bandwidth="reference", cache_dir=tmp_path / "cache")
    assert by_reference["metrics"]["encodec-emb_kad"]["bandwidth_from"] == "reference"
    assert by_reference["metrics"]["encodec-emb_kad"]["value"] != pytest.approx(kad.value, rel=1e-6)


def test_kad_on_the_descriptor_backbone_with_per_clip_values(folders, tmp_path):
    from fluxbench.protocols.metrics.backbones.descriptor import DescriptorBackbone

    gen, ref = folders
    results = score_folders(gen, ref, metrics="kad,fad", backbone="descriptor", bootstrap=10)
    backbone = DescriptorBackbone()
    gen_out, ref_out = _embed_folder(backbone, gen), _embed_folder(backbone, ref)
    ref_rows = np.concatenate([o["frames"] for o in ref_out])
    kad = kernel_audio_distance(np.concatenate([o["frames"] for o in gen_out]), ref_rows)
    assert results["metrics"]["descriptor_kad"]["value"] == pytest.approx(kad.value, rel=1e-9)
    # A clip's value: its frames against the whole reference at the set-level bandwidth.
    clip0 = kernel_audio_distance(gen_out[0]["frames"], ref_rows, bandwidth=kad.bandwidth).value
    assert results["per_clip"]["clip0.wav"]["descriptor_kad"] == pytest.approx(clip0, rel=1e-9)


def _write_fadtk_stats(path, key, rows):
    # fadtk's format: np.mean / np.cov(rowvar=False) under "<key>.mu" / "<key>.cov", written by np.savez.
    np.savez(path, **{f"{key}.mu": rows.mean(axis=0), f"{key}.cov": np.cov(rows, rowvar=False),
                      "other.mu": np.zeros(3), "other.cov": np.eye(3)})


def test_ref_stats_in_fadtk_format_replace_the_reference_folder(hub, folders, tmp_path):
    gen, ref = folders
    backbone = load_backbone("encodec-emb", hub / "encodec_24khz", "cpu")
    ref_rows = np.concatenate([o["frames"] for o in _embed_folder(backbone, ref)]).astype(np.float64)
    gen_rows = np.concatenate([o["frames"] for o in _embed_folder(backbone, gen)]).astype(np.float64)
    stats_file = tmp_path / "my_set.npz"
    _write_fadtk_stats(stats_file, "encodec-emb", ref_rows)
    assert available_keys(stats_file) == ["encodec-emb", "other"]
    results = score_folders(gen, None, metrics="fad", backbone="encodec-emb", weights_dir=hub, bootstrap=10,
                            ref_stats=str(stats_file))  # the key defaults to the backbone's name
    entry = results["metrics"]["encodec-emb_fad"]
    fadtk_stats = GaussianStats(ref_rows.mean(0), np.cov(ref_rows, rowvar=False), len(ref_rows))
    expected = frechet_distance_from_stats(GaussianStats.of(gen_rows), fadtk_stats)
    assert entry["value"] == pytest.approx(expected, rel=1e-9)
    assert entry["reference_stats"] == f"{stats_file}:encodec-emb" and entry["ci95"][0] <= entry["ci95"][1]
    assert results["settings"]["ref_stats"] == f"{stats_file}:encodec-emb"
    # KAD needs reference embeddings, which statistics do not have
    with pytest.raises(FluxbenchError, match="kad: needs a reference folder"):
        score_folders(gen, None, metrics="kad", backbone="encodec-emb", weights_dir=hub, ref_stats=str(stats_file))
    with pytest.raises(FluxbenchError, match="3-d statistics"):
        score_folders(gen, None, metrics="fad", backbone="encodec-emb", weights_dir=hub,
                      ref_stats=f"{stats_file}:other")


def test_ref_stats_errors_are_one_line(tmp_path):
    stats_file = tmp_path / "s.npz"
    _write_fadtk_stats(stats_file, "vggish", np.random.default_rng(9).standard_normal((20, 4)))
    with pytest.raises(ReferenceStatsError, match=r"no statistics for 'MERT-v1-95M'.*the file has: other, vggish"):
        load_reference_stats(stats_file, "MERT-v1-95M")
    with pytest.raises(ReferenceStatsError, match="no such file"):
        parse_ref_stats(str(tmp_path / "missing.npz:vggish"))
    with pytest.raises(ReferenceStatsError, match="expected FILE:BACKBONE"):
        parse_ref_stats(str(stats_file))
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ReferenceStatsError, match="not a numpy .npz"):
        load_reference_stats(tmp_path / "bad.npz", "vggish")
    np.savez(tmp_path / "shape.npz", **{"x.mu": np.zeros(3), "x.cov": np.zeros((2, 2))})
    with pytest.raises(ReferenceStatsError, match=r"expected \(d,\) and \(d, d\)"):
        load_reference_stats(tmp_path / "shape.npz", "x")
    assert parse_ref_stats(f"{stats_file}:vggish") == (stats_file, "vggish")


@pytest.mark.skipif(fadtk_stats_folder() is None, reason="fadtk (whose wheel ships fma_pop.npz) is not installed")
def test_fadtk_shipped_fma_pop_loads():
    path, key = parse_ref_stats("fma_pop:clap-laion-music")
    stats = load_reference_stats(path, key)
    assert stats.mean.shape == (512,) and stats.cov.shape == (512, 512)
    assert {"MERT-v1-95M", "encodec-emb", "clap-laion-music"} <= set(available_keys(path))


def test_cli_scores_kad_with_a_fadtk_backbone(hub, folders, tmp_path, capsys):
    from fluxbench.cli import main as cli

    gen, ref = folders
    out = tmp_path / "scores.json"
    code = cli(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "kad,fad", "--backbone", "MERT-v1-95M",
                "--weights-dir", str(hub), "--out", str(out), "--no-cache", "-q"])
    printed, errors = capsys.readouterr()
    assert code == 0, errors
    assert "MERT-v1-95M_kad" in printed and "MERT-v1-95M_fad" in printed
    saved = json.loads(out.read_text())
    assert saved["backbone"] == "MERT-v1-95M" and saved["backbones"]["MERT-v1-95M"]["layer"] == 2
    code = cli(["score", "--gen", str(gen), "--metrics", "fad", "--backbone", "MERT-v1-95M", "--weights-dir",
                str(hub), "--ref-stats", "nowhere.npz:x"])
    assert code == 2 and "nowhere.npz: no such file" in capsys.readouterr().err
    code = cli(["score", "--gen", str(gen), "--ref", str(ref), "--metrics", "kad", "--backbone", "descriptor",
                "--kad-bandwidth", "wide"])
    assert code == 2 and "--kad-bandwidth 'wide'" in capsys.readouterr().err
    code = cli(["score", "--gen", str(gen), "--ref", str(ref), "--backbone", "descriptor", "--backbone-weights", "x"])
    assert code == 2 and "--backbone-weights is for" in capsys.readouterr().err
