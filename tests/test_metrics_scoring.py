"""Folder-vs-folder scoring end to end: descriptor and tiny paper backbones, cache, bad inputs, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fluxbench import FluxbenchError
from fluxbench.audio import write_wav
from fluxbench.protocols.metrics import frechet_distance, inception_score, kl_divergence
from fluxbench.protocols.metrics.backbones.descriptor import DescriptorBackbone
from fluxbench.protocols.metrics.frechet import UnreliableEstimateWarning
from fluxbench.protocols.metrics.scoring import score_folders

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_metrics_backbones import save_tiny_clap, save_tiny_cnn14, save_tiny_vggish  # noqa: E402


def _tone(rng, pitch, seconds=2.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(t.size)


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(12):
        write_wav(tmp_path / "gen" / f"clip{i:02d}.wav", _tone(rng, 220 * (1 + i % 5)), 16000)
        write_wav(tmp_path / "ref" / f"clip{i:02d}.wav", _tone(rng, 233 * (1 + i % 4), 2.5, 22050), 22050)
    return tmp_path / "gen", tmp_path / "ref"


def test_descriptor_scores_match_the_metric_functions_on_its_embeddings(folders, tmp_path):
    gen, ref = folders
    results = score_folders(gen, ref, backbone="descriptor", bootstrap=30, seed=3, cache_dir=tmp_path / "cache")
    json.dumps(results, allow_nan=False)
    metrics = results["metrics"]
    assert set(metrics) == {"descriptor_fad", "descriptor_fd", "descriptor_kl_softmax", "descriptor_kl_sigmoid",
                            "descriptor_is"}
    assert results["skipped_metrics"] == {"clap": "the descriptor backbone has no CLAP; use --backbone paper"}
    # recompute from the backbone's own outputs with the public metric functions
    backbone = DescriptorBackbone()
    names = sorted(p.name for p in gen.iterdir())
    gen_out = dict(zip(names, backbone.embed([backbone.load_wave(gen / n) for n in names])))
    ref_out = dict(zip(names, backbone.embed([backbone.load_wave(ref / n) for n in names])))
    with pytest.warns(UnreliableEstimateWarning, match="24 rows in 128 dimensions"):  # 2 frames x 12 clips
        fad = frechet_distance(np.concatenate([gen_out[n]["frames"] for n in names]),
                               np.concatenate([ref_out[n]["frames"] for n in names]))
    assert metrics["descriptor_fad"]["value"] == pytest.approx(fad, rel=1e-9)
    kl = kl_divergence({n: o["logits"] for n, o in gen_out.items()}, {n: o["logits"] for n, o in ref_out.items()})
    assert metrics["descriptor_kl_softmax"]["value"] == pytest.approx(kl.softmax, rel=1e-9)
    assert results["per_clip"]["clip03.wav"]["descriptor_kl_softmax"] == pytest.approx(
        kl.per_item_softmax["clip03.wav"], rel=1e-9)
    mean, std = inception_score(np.stack([gen_out[n]["logits"] for n in names]))
    assert metrics["descriptor_is"]["value"] == pytest.approx(mean) and metrics["descriptor_is"]["std"] == pytest.approx(std)
    for entry in metrics.values():
        low, high = entry["ci95"]
        assert low <= high and entry["n"] == 12
    assert results["pairing"]["paired"] is True and results["reference"]["scored"] == 12
    again = score_folders(gen, ref, backbone="descriptor", bootstrap=30, seed=3, cache_dir=tmp_path / "cache")
    assert again["metrics"] == metrics  # seeded intervals, cached embeddings: identical


def test_cache_is_keyed_by_content_not_path(folders, tmp_path, monkeypatch):
    gen, ref = folders
    score_folders(gen, ref, metrics="fad", backbone="descriptor", cache_dir=tmp_path / "cache")
    calls = []
    original = DescriptorBackbone.embed
    monkeypatch.setattr(DescriptorBackbone, "embed", lambda self, waves: calls.append(len(waves)) or original(self, waves))
    score_folders(gen, ref, metrics="fad", backbone="descriptor", cache_dir=tmp_path / "cache")
    assert calls == []  # everything came from the cache
    write_wav(gen / "clip05.wav", _tone(np.random.default_rng(9), 555.0), 16000)  # regenerated in place
    score_folders(gen, ref, metrics="fad", backbone="descriptor", cache_dir=tmp_path / "cache")
    assert calls == [1]


@pytest.mark.slow
def test_paper_backbones_end_to_end_with_tiny_weights(folders, tmp_path, monkeypatch):
    gen, ref = folders
    monkeypatch.setenv("FLUXBENCH_OFFLINE", "1")
    save_tiny_vggish(tmp_path / "vggish.pth")
    save_tiny_cnn14(tmp_path / "cnn14.pth")
    save_tiny_clap(tmp_path / "clap")
    captions = tmp_path / "captions.csv"
    captions.write_text("file,caption\n" + "".join(f"clip{i:02d}.wav,calm piano song {i}\n" for i in range(12)))
    results = score_folders(gen, ref, captions=captions, bootstrap=10, fad_inf=True, cache_dir=None,
                            weights={"vggish": tmp_path / "vggish.pth", "panns-16k": tmp_path / "cnn14.pth",
                                     "clap": tmp_path / "clap"})
    assert set(results["metrics"]) == {"fad", "fd", "kl_softmax", "kl_sigmoid", "is", "clap", "fad_inf", "fd_inf"}
    assert results["metrics"]["fad"]["reference_name"] == "frechet_audio_distance"
    assert results["metrics"]["fad"]["rows"] == 24  # two 0.96 s frames per 2 s clip, pooled
    assert results["metrics"]["fd"]["dims"] == 16
    assert -1.0 <= results["metrics"]["clap"]["value"] <= 1.0
    clip = results["per_clip"]["clip00.wav"]
    assert {"fad", "kl_softmax", "kl_sigmoid", "is_kl", "clap"} <= set(clip)
    assert results["backbones"]["vggish"]["weights_sha256"] and results["backbones"]["clap"]["long_clips"] == "first"


def test_missing_weights_name_every_file_in_one_line(folders, monkeypatch, tmp_path):
    gen, ref = folders
    monkeypatch.setenv("FLUXBENCH_OFFLINE", "1")
    monkeypatch.delenv("FLUXBENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FluxbenchError) as error:
        score_folders(gen, ref, metrics="fad,fd")
    message = str(error.value)
    assert "\n" not in message and "vggish-10086976.pth" in message and "Cnn14_16k_mAP=0.438.pth" in message


def test_bad_files_are_skipped_and_counted(folders, tmp_path):
    gen, ref = folders
    (gen / "broken.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(gen / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    write_wav(gen / "short.wav", np.ones(800) * 0.1, 16000)  # 0.05 s
    write_wav(gen / "silent.wav", np.zeros(32000), 16000)
    results = score_folders(gen, ref, metrics="fad,is", backbone="descriptor")
    reasons = {s["file"]: s["reason"] for s in results["skipped"]}
    assert set(reasons) == {"broken.wav", "nan.wav", "short.wav"}
    assert "NaN" in reasons["nan.wav"] and "too short" in reasons["short.wav"]
    assert results["generated"]["silent"] == ["silent.wav"] and results["generated"]["scored"] == 13
    assert any("digital silence" in w for w in results["warnings"])


def test_input_errors_are_one_line(folders, tmp_path):
    gen, ref = folders
    (tmp_path / "one").mkdir()
    write_wav(tmp_path / "one" / "a.wav", np.ones(16000) * 0.1, 16000)
    cases = [
        (dict(gen_dir=tmp_path / "one", ref_dir=ref, backbone="descriptor"), "1 usable clip"),
        (dict(gen_dir=tmp_path / "nowhere", ref_dir=ref, backbone="descriptor"), "does not exist"),
        (dict(gen_dir=gen, ref_dir=ref, metrics="fad,bleu", backbone="descriptor"), "unknown metric"),
        (dict(gen_dir=gen, ref_dir=ref, metrics="clap"), "needs captions"),
        (dict(gen_dir=gen, ref_dir=None, metrics="fd", backbone="descriptor"), "needs a reference folder"),
    ]
    for kwargs, message in cases:
        with pytest.raises(FluxbenchError, match=message) as error:
            score_folders(**kwargs)
        assert "\n" not in str(error.value)


def test_unpaired_folders_skip_kl_and_keep_the_rest(folders):
    gen, ref = folders
    (ref / "clip00.wav").rename(ref / "other.wav")  # 11/12 shared names: not > 99 %
    results = score_folders(gen, ref, metrics="fad,kl", backbone="descriptor")
    assert "descriptor_fad" in results["metrics"] and "descriptor_kl_softmax" not in results["metrics"]
    assert results["skipped_metrics"]["kl"].startswith("folders are unpaired (unpaired: 11 file names shared")


def test_ids_pair_by_stem_across_extensions(folders):
    gen, ref = folders
    for path in sorted(ref.glob("*.wav"))[:3]:
        data, rate = sf.read(path)
        sf.write(path.with_suffix(".flac"), data, rate)
        path.unlink()
    ids = [f"clip{i:02d}" for i in range(12)]
    results = score_folders(gen, ref, metrics="kl", backbone="descriptor", ids=ids)
    assert results["metrics"]["descriptor_kl_softmax"]["n"] == 12
    assert set(results["per_clip"]) == set(ids)


@pytest.mark.slow
def test_cli_prints_a_table_and_writes_json(folders, tmp_path):
    gen, ref = folders
    out = tmp_path / "scores.json"
    run = subprocess.run([sys.executable, "-m", "fluxbench.cli", "score", "--gen", str(gen), "--ref", str(ref),
                          "--backbone", "descriptor", "--metrics", "fad,kl", "--bootstrap", "20", "--out", str(out),
                          "--no-cache", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "descriptor_fad" in run.stdout and "95% CI" in run.stdout
    stored = json.loads(out.read_text())
    assert stored["metrics"]["descriptor_fad"]["ci95"] and stored["per_clip"]["clip01.wav"]
    failed = subprocess.run([sys.executable, "-m", "fluxbench.cli", "score", "--gen", str(gen), "--ref", str(ref),
                             "--metrics", "fad", "--no-cache", "--quiet"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "FLUXBENCH_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("fluxbench score: error: missing weights (offline mode)")


def test_clipping_is_measured_per_clip_and_heavily_clipped_clips_are_named(folders, tmp_path, caplog):
    gen, ref = folders
    t = np.arange(32000) / 16000
    loud = np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1.0, 1.0)  # full scale over most of each cycle
    expected = float(np.mean(np.abs(loud) >= 1.0))
    write_wav(gen / "clip04.wav", loud, 16000)
    barely = 0.3 * np.sin(2 * np.pi * 220 * t)
    barely[:8] = 1.0  # 8 of 32000 samples: 0.025 %, under the warning threshold
    write_wav(gen / "clip05.wav", barely, 16000)
    with caplog.at_level("WARNING"):
        results = score_folders(gen, ref, backbone="descriptor", metrics="fad")
    assert results["per_clip"]["clip04.wav"]["clipped_fraction"] == pytest.approx(expected, abs=1e-3)
    assert results["per_clip"]["clip05.wav"]["clipped_fraction"] == pytest.approx(8 / 32000)
    assert results["per_clip"]["clip00.wav"]["clipped_fraction"] == 0.0
    assert set(results["generated"]["clipped"]) == {"clip04.wav"}
    warning = next(w for w in results["warnings"] if "clipped" in w)
    assert "clip04.wav" in warning and "clip05.wav" not in warning
    assert "clip04.wav" in caplog.text


def test_backbones_on_one_front_end_decode_each_file_once_with_unchanged_results(folders, tmp_path, monkeypatch):
    from fluxbench.protocols.metrics import frontend
    from fluxbench.protocols.metrics.backbones import Backbone

    gen, ref = folders
    save_tiny_vggish(tmp_path / "vggish.pth")
    save_tiny_cnn14(tmp_path / "cnn14.pth")
    weights = {"vggish": tmp_path / "vggish.pth", "panns-16k": tmp_path / "cnn14.pth"}
    reads = []
    original = frontend.reference_waveform
    monkeypatch.setattr(frontend, "reference_waveform", lambda path, rate: reads.append(Path(path).name)
                        or original(path, rate))
    shared = score_folders(gen, ref, metrics="fad,fd,kl", bootstrap=5, weights=weights, cache_dir=None, device="cpu")
    assert len(reads) == 24 and len(set(reads)) == 12  # 12 generated + 12 reference files, each read once
    reads.clear()
    # every backbone reading on its own, as before: the same numbers
    monkeypatch.setattr(Backbone, "wave_source", property(lambda self: (self.name, self.sample_rate)))
    separate = score_folders(gen, ref, metrics="fad,fd,kl", bootstrap=5, weights=weights, cache_dir=None,
                             device="cpu")
    assert len(reads) == 48
    assert separate["metrics"] == shared["metrics"] and separate["per_clip"] == shared["per_clip"]
