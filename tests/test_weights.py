"""Weights resolution: explicit path > env var > weights dir > HF cache > download; one error for all missing."""

from __future__ import annotations

import json

import pytest

from fluxbench import weights
from fluxbench.models.fluxmusic import weight_sources
from fluxbench.weights import MissingWeightsError, WeightSource

VAE = weight_sources.audioldm2_part("vae")
VOCODER = weight_sources.audioldm2_part("vocoder")
CHECKPOINT = weight_sources.fluxmusic_checkpoint("small")
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("FLUXBENCH_WEIGHTS_DIR", "FLUXBENCH_AUDIOLDM2_VAE", "FLUXBENCH_AUDIOLDM2_VOCODER",
                 "FLUXBENCH_FLUXMUSIC_SMALL", "FLUXBENCH_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)


def _folder(path, content="{}"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(content)
    return path


def _hf_snapshot(cache, repo, files):
    """A hub cache entry as huggingface_hub lays it out: refs/main -> snapshots/<revision>/..."""
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(REVISION)
    (base / "blobs").mkdir()
    for name, text in files.items():
        target = base / "snapshots" / REVISION / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return base / "snapshots" / REVISION


def test_component_facts():
    assert VAE.where == "hf://cvssp/audioldm2/vae" and VOCODER.where == "hf://cvssp/audioldm2/vocoder"
    assert weight_sources.audioldm2_part("vae", "cvssp/audioldm2-music").local_name == "audioldm2-music/vae"
    assert CHECKPOINT.where == "hf://feizhengcong/FluxMusic/musicflow_s.pt"
    assert weight_sources.fluxmusic_checkpoint("giant_full").filename == "musicflow_g_full.pt"
    assert weight_sources.T5_SD3.hub_repo == "stabilityai/stable-diffusion-3-medium-diffusers"
    assert weight_sources.DEFAULT_CLAP == "laion/larger_clap_music"


def test_resolution_order(monkeypatch, tmp_path):
    explicit = _folder(tmp_path / "explicit")
    from_env = _folder(tmp_path / "env")
    root = tmp_path / "weights"
    in_dir = _folder(root / "audioldm2" / "vae")
    cached = _hf_snapshot(tmp_path / "hf-cache", "cvssp/audioldm2", {"vae/config.json": "{}"}) / "vae"
    assert weights.resolve(VAE) == cached
    assert weights.resolve(VAE, weights_root=root) == in_dir
    monkeypatch.setenv("FLUXBENCH_WEIGHTS_DIR", str(root))
    assert weights.resolve(VAE) == in_dir
    monkeypatch.setenv("FLUXBENCH_AUDIOLDM2_VAE", str(from_env))
    assert weights.resolve(VAE) == from_env
    assert weights.resolve(VAE, explicit) == explicit


def test_hf_cache_single_file_and_incomplete_snapshot(tmp_path):
    snapshot = _hf_snapshot(tmp_path / "hf-cache", "feizhengcong/FluxMusic", {"musicflow_s.pt": "x"})
    assert weights.resolve(CHECKPOINT) == snapshot / "musicflow_s.pt"
    # A snapshot holding only vocoder/ does not count as the VAE.
    _hf_snapshot(tmp_path / "hf-cache", "cvssp/audioldm2", {"vocoder/config.json": "{}"})
    with pytest.raises(MissingWeightsError, match="AudioLDM 2 VAE"):
        weights.resolve(VAE)
    assert weights.resolve(VOCODER).name == "vocoder"


def test_missing_weights_error_lists_every_component_at_once(tmp_path):
    root = tmp_path / "weights"
    with pytest.raises(MissingWeightsError) as error:
        weights.resolve_all([(CHECKPOINT, None), (weight_sources.T5_SD3, None), (weight_sources.CLAP_MUSIC, None),
                             (VAE, None), (VOCODER, None)], root)
    message = str(error.value)
    assert "\n" not in message and message.startswith("missing weights (offline mode)")
    for expected in ("hf://feizhengcong/FluxMusic/musicflow_s.pt", "FLUXBENCH_FLUXMUSIC_SMALL",
                     "hf://stabilityai/stable-diffusion-3-medium-diffusers", "FLUXBENCH_T5",
                     "hf://laion/larger_clap_music", "hf://cvssp/audioldm2/vae", "hf://cvssp/audioldm2/vocoder",
                     f"{root}/audioldm2/vocoder", f"{root}/FluxMusic/musicflow_s.pt"):
        assert expected in message, expected


def test_local_copy_missing_required_parts_is_named(tmp_path):
    sd3 = tmp_path / "weights" / "stable-diffusion-3-medium-diffusers"
    _folder(sd3 / "text_encoder_3")
    with pytest.raises(MissingWeightsError, match="lacks tokenizer_3"):
        weights.resolve(weight_sources.T5_SD3, weights_root=tmp_path / "weights")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        weights.resolve(VAE, tmp_path / "nowhere")


def test_hub_source_accepts_ids_and_local_paths(tmp_path):
    assert weight_sources.hub_source("t5", "google/t5-v1_1-xxl") == (weight_sources.T5_GOOGLE, None)
    source, explicit = weight_sources.hub_source("clap", str(tmp_path))
    assert explicit == str(tmp_path) and source.required == ()
    other, explicit = weight_sources.hub_source("t5", "someone/t5-large")
    assert other.where == "hf://someone/t5-large" and explicit is None


def test_checksum_is_remembered_per_file_version(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    _folder(folder, json.dumps({"a": 1}))
    first = weights.checksum(folder)
    assert first == weights.sha256_of(folder)
    calls = []
    monkeypatch.setattr(weights, "sha256_of", lambda path: calls.append(path) or "recomputed")
    assert weights.checksum(folder) == first and calls == []  # from the memo
    (folder / "config.json").write_text(json.dumps({"a": 2}))  # new content: new size -> rehash
    assert weights.checksum(folder) == "recomputed" and len(calls) == 1


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "elsewhere"))
    assert weights.cache_dir() == tmp_path / "elsewhere" and weights.CACHE_DIR == tmp_path / "elsewhere"


def test_url_source_offline_is_reported(tmp_path):
    source = WeightSource("VGGish", "FLUXBENCH_VGGISH", "vggish.pth", url="https://example.invalid/vggish.pth")
    with pytest.raises(MissingWeightsError, match="https://example.invalid/vggish.pth"):
        weights.resolve(source)


def test_preflight_asks_the_model_class_for_its_weights(tmp_path):
    """Pre-flight knows no model family: a registered factory's model class declares what it resolves."""
    from fluxbench import registry
    from fluxbench.models.base import TextToMusicModel, factory_weight_requests
    from fluxbench.preflight import model_weight_requests

    assert TextToMusicModel.weight_requests(size="small") == []  # the interface's default
    assert factory_weight_requests(lambda **options: None, size="small") == []  # not a model class's method
    [(source, explicit)] = model_weight_requests(registry.get("model", "musicgen-small"), {"checkpoint": tmp_path})
    assert source.hub_repo == "facebook/musicgen-small" and explicit == str(tmp_path)
    small = model_weight_requests(registry.get("model", "fluxmusic-small"), {"device": "cpu"})
    assert [s.env_var for s, _ in small] == ["FLUXBENCH_FLUXMUSIC_SMALL", "FLUXBENCH_T5", "FLUXBENCH_CLAP",
                                            "FLUXBENCH_AUDIOLDM2_VAE", "FLUXBENCH_AUDIOLDM2_VOCODER"]
    assert model_weight_requests(registry.get("model", "fluxmusic-demo"), {}) == []  # trained on first use
