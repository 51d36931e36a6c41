"""`fluxbench verify-backbones`: its arithmetic with tiny random backbones against an independent computation,
and its report when weights or the fadtk samples are missing."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from fluxbench.audio import write_wav
from fluxbench.cli import main as cli
from fluxbench.protocols.metrics.backbones import load_backbone

sys.path.insert(0, str(Path(__file__).parent))
from tiny_hub import build_encodec, build_mert  # noqa: E402

BACKBONES = {"encodec-emb": "encodec_24khz", "MERT-v1-95M": "MERT-v1-95M"}


def _fadtk_fad(frames16, mean_ref, cov_ref):
    """fadtk's per-song FAD written out: float16 mean, np.cov, scipy's sqrtm of the product."""
    mean = np.mean(frames16, axis=0)  # float16, as numpy returns it
    cov = np.cov(frames16, rowvar=False)
    root = linalg.sqrtm(cov @ cov_ref).real
    diff = mean.astype(np.float64) - mean_ref
    return float(diff @ diff + np.trace(cov) + np.trace(cov_ref) - 2 * np.trace(root))


def _pooled_fad(all_frames16, mean_ref, cov_ref):
    """Set statistics in closed form: the clips' rounded means weighted by rows, within-clip scatter about each
    clip's exact mean plus the between-clip scatter of the rounded means."""
    rows = np.array([f.shape[0] for f in all_frames16], dtype=np.float64)
    means = np.stack([np.mean(f, axis=0).astype(np.float64) for f in all_frames16])
    pooled = rows @ means / rows.sum()
    within = sum(np.cov(f, rowvar=False) * (f.shape[0] - 1) for f in all_frames16)
    between = (means - pooled).T @ ((means - pooled) * rows[:, None])
    cov = (within + between) / (rows.sum() - 1)
    root = linalg.sqrtm(cov @ cov_ref).real
    diff = pooled - mean_ref
    return float(diff @ diff + np.trace(cov) + np.trace(cov_ref) - 2 * np.trace(root))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    hub = root / "hub"
    build_mert(hub)
    build_encodec(hub)
    rng = np.random.default_rng(0)
    clips = root / "test" / "samples"
    for name, seconds in (("mg-1", 1.5), ("mlm-2", 1.2), ("mubert-3", 1.7)):
        write_wav(clips / f"{name}.wav", np.clip(0.2 * rng.standard_normal(int(seconds * 48000)), -1, 1), 48000)
    stats, expected = {}, {}
    for name, folder in BACKBONES.items():
        backbone = load_backbone(name, hub / folder, "cpu")
        frames = {p.stem: backbone.embed([backbone.load_wave(p)])[0]["frames"].astype(np.float16)
                  for p in sorted(clips.iterdir())}
        dims = next(iter(frames.values())).shape[1]
        mixing = rng.standard_normal((dims, dims)) / np.sqrt(dims)
        mean_ref, cov_ref = 0.1 * rng.standard_normal(dims), mixing @ mixing.T + 0.1 * np.eye(dims)
        stats[f"{name}.mu"], stats[f"{name}.cov"] = mean_ref, cov_ref
        expected[name] = {stem: _fadtk_fad(f, mean_ref, cov_ref) for stem, f in frames.items()}
        expected[name]["all"] = _pooled_fad(list(frames.values()), mean_ref, cov_ref)
    np.savez(root / "stats.npz", **stats)
    return root, hub, expected


def _write_table(path, expected, factors):
    songs = ["all", "mg-1", "mlm-2", "mubert-3"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "dataset"] + [f"FAD_{name.replace('-', '_')}_fma_pop" for name in BACKBONES])
        for song in songs:
            writer.writerow([f"samples/{song}", song.split("-")[0]]
                            + [repr(expected[name][song] * factors.get(song, 1.0)) for name in BACKBONES])


def _run(capsys, *args):
    code = cli(["verify-backbones", "-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _worst(stdout, backbone):
    line = next(l for l in stdout.splitlines() if l.startswith(backbone + " "))
    percent, clip = re.search(r"([\d.]+) %\s+(\S+)", line).groups()
    return float(percent), clip, line


def test_reproduces_an_independent_fadtk_computation(setup, capsys):
    root, hub, expected = setup
    _write_table(root / "test" / "samples_FAD_scores.csv", expected, {})
    code, out, err = _run(capsys, "--samples", str(root / "test" / "samples"), "--stats", str(root / "stats.npz"),
                          "--weights-dir", str(hub), "--backbones", "encodec-emb,MERT-v1-95M")
    assert code == 0, err + out
    for name in BACKBONES:
        percent, _, line = _worst(out, name)
        assert percent < 1e-3 and "pass" in line  # float16 frames and eigen vs sqrtm round-off only


def test_reports_the_worst_relative_difference_and_fails_past_tolerance(setup, capsys):
    root, hub, expected = setup
    _write_table(root / "test" / "samples_FAD_scores.csv", expected, {"mg-1": 1.02, "mubert-3": 0.9})
    code, out, err = _run(capsys, "--samples", str(root / "test"), "--stats", str(root / "stats.npz"),
                          "--weights", f"encodec-emb={hub / 'encodec_24khz'}", "--backbones", "encodec-emb")
    assert code == 1, err + out
    percent, clip, line = _worst(out, "encodec-emb")
    assert clip == "mubert-3" and percent == pytest.approx(100 * 0.1 / 0.9, abs=1e-3)
    assert "FAIL" in line and "3 " in line  # three clips scored


def test_names_missing_weights_and_samples(setup, tmp_path, monkeypatch, capsys):
    root, _, expected = setup
    _write_table(root / "test" / "samples_FAD_scores.csv", expected, {})
    monkeypatch.setenv("FLUXBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    for variable in ("FLUXBENCH_MERT", "FLUXBENCH_ENCODEC", "FLUXBENCH_CLAP_LAION_MUSIC", "FLUXBENCH_WEIGHTS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    code, out, err = _run(capsys, "--samples", str(root / "test" / "samples"), "--stats", str(root / "stats.npz"),
                          "--weights-dir", str(tmp_path / "empty"))
    assert code == 2
    for name, hub_id in (("clap-laion-music", "laion/larger_clap_music"), ("MERT-v1-95M", "m-a-p/MERT-v1-95M"),
                         ("encodec-emb", "facebook/encodec_24khz")):
        assert re.search(rf"^{re.escape(name)}: not checked: .*hf://{re.escape(hub_id)}", out, re.M)
    code, out, err = _run(capsys, "--samples", str(tmp_path / "nothing"))
    assert code == 2 and "--samples" in err and "no such folder" in err
