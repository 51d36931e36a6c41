"""Baseline adapters: tiny pipelines of every family saved like their hub repos, loaded through the weights
resolution and the registry, generating protocol-rate mono audio; facts, settings, errors, reported numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fluxbench import registry
from fluxbench.audio import read_audio
from fluxbench.models.baselines.specs import SPECS
from fluxbench.weights import MissingWeightsError

DURATION = 0.32  # fits every tiny model's window (Stable Audio's is 0.37 s)
PROMPTS = ["a calm piano melody with soft strings", "upbeat electronic dance track with drums"]


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch, tmp_path_factory):
    """No weights dir, no per-model variable, an empty hub cache, offline: only what a test supplies exists."""
    monkeypatch.delenv("FLUXBENCH_WEIGHTS_DIR", raising=False)
    for spec in SPECS.values():
        monkeypatch.delenv("FLUXBENCH_" + spec.name.upper().replace("-", "_"), raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hub-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path_factory.mktemp("fluxbench-cache")))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A weights directory filled on demand: tiny_root(name) builds that checkpoint's repo once."""
    import tiny_pipelines

    root = tmp_path_factory.mktemp("weights")
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        spec = SPECS[name]
        repo_name = spec.hub_repo.split("/")[-1]
        if repo_name not in built:
            builder = tiny_pipelines.BUILDERS[spec.family]
            options = {"stereo": spec.channels == 2} if spec.family == "musicgen" else {}
            built[repo_name] = builder(root, repo_name, **options)
        return root

    return build


# ---- facts and registration -----------------------------------------------------------------------------
REQUIRED = {"musicgen-small", "musicgen-medium", "musicgen-large", "audioldm2", "audioldm2-music",
            "audioldm2-large", "musicldm", "stable-audio-open"}


def test_every_baseline_is_registered_with_its_facts():
    models = {entry.name: entry for entry in registry.entries("model")}
    assert REQUIRED <= set(models)
    for name, spec in SPECS.items():
        facts = models[name].facts
        assert facts["weights"] == f"hf://{spec.hub_repo}"
        assert facts["sample_rate"] == spec.sample_rate and facts["channels"] in (1, 2)
        assert facts["license"] and facts["family"] == spec.family
        assert facts["default_guidance"] > 1.0
        if spec.library.startswith("diffusers"):
            assert facts["default_steps"] >= 50
        factory = models[name].load()  # the target imports and names a callable
        assert callable(factory)


def test_models_command_lists_baseline_facts(capsys):
    from fluxbench.cli import main

    assert main(["models", "--json", "--family", "audioldm2"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"audioldm2", "audioldm2-large", "audioldm2-music"}
    assert listed["audioldm2-music"]["weights"] == "hf://cvssp/audioldm2-music"
    assert listed["audioldm2-music"]["default_steps"] == 200 and listed["audioldm2-music"]["channels"] == 1


# ---- weights resolution --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_missing_weights_error_names_the_hub_id(name, tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        registry.get("model", name).create(weights_dir=tmp_path)
    message = str(error.value)
    assert f"hf://{SPECS[name].hub_repo}" in message
    assert "FLUXBENCH_" + name.upper().replace("-", "_") in message and "\n" not in message


def test_a_folder_that_is_not_the_repo_is_refused(tmp_path):
    (tmp_path / "audioldm2-music" / "unet").mkdir(parents=True)
    with pytest.raises(MissingWeightsError, match="lacks model_index.json.*hf://cvssp/audioldm2-music"):
        registry.get("model", "audioldm2-music").create(weights_dir=tmp_path)


@pytest.mark.slow
def test_env_var_and_explicit_path_reach_the_same_copy(tiny_root, monkeypatch):
    repo = tiny_root("musicgen-small") / "musicgen-small"
    by_path = registry.get("model", "musicgen-small").create(checkpoint=repo)
    monkeypatch.setenv("FLUXBENCH_MUSICGEN_SMALL", str(repo))
    by_env = registry.get("model", "musicgen-small").create()
    assert by_path.fingerprint() == by_env.fingerprint()
    assert by_path.folder == by_env.folder == repo


# ---- generation through every family -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["musicgen-small", "musicgen-stereo-small", "audioldm2-music", "musicldm",
                                  "stable-audio-open"])
def test_tiny_pipeline_generates_protocol_audio(name, tiny_root):
    model = registry.get("model", name).create(weights_dir=tiny_root(name), device="cpu")
    fast = {} if SPECS[name].family == "musicgen" else {"steps": 2}
    both = model.generate(PROMPTS, duration=DURATION, seed=[11, 12], **fast)
    samples = round(DURATION * 16_000)
    assert both.sample_rate == 16_000 and both.waveforms.shape == (2, samples)
    assert both.waveforms.dtype == np.float32 and np.isfinite(both.waveforms).all()
    assert np.abs(both.waveforms).max() <= 1.0
    assert (np.abs(both.waveforms[:, -samples // 8:]).max(axis=1) > 0).all()  # audio to the end, not padding
    assert np.abs(both.waveforms[0] - both.waveforms[1]).max() > 1e-4  # prompt and seed matter
    # The second clip again, alone: the same seed gives the same audio whatever else is in the batch.
    alone = model.generate(PROMPTS[1:], duration=DURATION, seed=12, **fast)
    np.testing.assert_allclose(alone.waveforms[0], both.waveforms[1], atol=1e-5)
    record = both.settings
    assert record["seeds"] == [11, 12] and record["native_sample_rate"] == SPECS[name].sample_rate
    assert record["fingerprint"] == model.fingerprint() and "resample_poly" in record["resampling"]


@pytest.mark.slow
def test_native_rate_output_and_fingerprint_follow_the_weights(tiny_root, tmp_path):
    import tiny_pipelines

    model = registry.get("model", "musicgen-small").create(weights_dir=tiny_root("musicgen-small"),
                                                           sample_rate=32_000)
    audio = model.generate(PROMPTS[:1], duration=DURATION, seed=3)
    assert audio.sample_rate == 32_000 and audio.waveforms.shape == (1, round(DURATION * 32_000))
    again = registry.get("model", "musicgen-small").create(weights_dir=tiny_root("musicgen-small"),
                                                           sample_rate=32_000)
    assert again.fingerprint() == model.fingerprint()
    tiny_pipelines.build_musicgen(tmp_path, "musicgen-small", seed=7)
    other = registry.get("model", "musicgen-small").create(weights_dir=tmp_path, sample_rate=32_000)
    assert other.fingerprint() != model.fingerprint()
    assert model.fingerprint() != registry.get("model", "musicgen-small").create(
        weights_dir=tiny_root("musicgen-small")).fingerprint()  # the output rate is part of the identity


@pytest.mark.slow
def test_device_and_dtype_options(tiny_root):
    import torch

    from fluxbench import FluxbenchError

    model = registry.get("model", "musicgen-small").create(weights_dir=tiny_root("musicgen-small"), device="cpu",
                                                           dtype="bfloat16")
    assert model.model.dtype == torch.bfloat16
    audio = model.generate(PROMPTS[:1], duration=DURATION, seed=5)
    assert np.isfinite(audio.waveforms).all() and audio.settings["dtype"] == "bfloat16"
    with pytest.raises(FluxbenchError, match="unknown dtype 'float8'"):
        registry.get("model", "musicgen-small").create(weights_dir=tiny_root("musicgen-small"), dtype="float8")


# ---- settings ----------------------------------------------------------------------------------------------
def test_settings_are_the_published_defaults_and_round_trip(tiny_root):
    model = registry.get("model", "musicgen-small").create(weights_dir=tiny_root("musicgen-small"))
    settings = model.settings(duration=DURATION)
    assert settings == SPECS["musicgen-small"].defaults
    assert settings == {"guidance": 3.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0}
    assert model.settings(duration=DURATION, guidance=1.0)["guidance"] == 1.0
    audio = model.generate(PROMPTS[:1], duration=DURATION, seed=0, **settings)
    assert audio.settings["top_k"] == 250


def test_bad_settings_are_one_line_errors(tiny_root):
    from fluxbench.models.baselines.common import BaselineError

    model = registry.get("model", "stable-audio-open").create(weights_dir=tiny_root("stable-audio-open"))
    with pytest.raises(BaselineError, match=r"unknown generation setting\(s\) \['top_k'\]"):
        model.generate(PROMPTS, duration=DURATION, top_k=5)
    with pytest.raises(BaselineError, match="steps must be >= 1"):
        model.generate(PROMPTS, duration=DURATION, steps=0)
    with pytest.raises(BaselineError, match="at most 0.37 s"):
        model.generate(PROMPTS, duration=2.0)
    with pytest.raises(BaselineError, match="guidance='loud' is not a float"):
        model.generate(PROMPTS, duration=DURATION, guidance="loud")
    with pytest.raises(BaselineError, match="non-empty list of prompt strings"):
        model.generate([], duration=DURATION)


# ---- native audio -> protocol audio ----------------------------------------------------------------------
def test_stereo_44k_tone_becomes_a_16k_mono_tone(tmp_path):
    """Downmix, length and polyphase resampling against an analytic oracle: a 1 kHz tone keeps its pitch and
    its amplitude (the mean of the channels), and nothing leaks from a 12 kHz tone above the new Nyquist."""
    from fluxbench.models.baselines.common import BaselineModel
    from fluxbench.models.baselines.specs import BaselineSpec

    spec = BaselineSpec("tone", "Tone", family="tone", hub_repo="none/tone", sample_rate=44_100, channels=2,
                        license="-", parameters=None, summary="analytic test signal",
                        defaults={"guidance": 1.0})

    class Tone(BaselineModel):
        family = "tone"

        def _build(self, folder):
            pass

        def _generate(self, prompts, seeds, duration, settings, progress):
            t = np.arange(int(duration * 44_100) + 1000) / 44_100  # longer than asked: cropped
            left = 0.6 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 12_000 * t)
            right = 0.2 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 12_000 * t)
            return np.stack([np.stack([left, right])] * len(prompts))

    (tmp_path / "weights.bin").write_bytes(b"tone")
    audio = Tone(spec, tmp_path).generate(["x"], duration=1.0).waveforms[0]
    assert audio.shape == (16_000,)
    spectrum = np.abs(np.fft.rfft(audio[2000:-2000] * np.hanning(12_000)))
    frequencies = np.fft.rfftfreq(12_000, 1 / 16_000)
    assert abs(frequencies[spectrum.argmax()] - 1000) < 2
    middle = audio[4000:12_000]
    assert math.isclose(np.sqrt(2) * middle.std(), 0.4, rel_tol=0.01)  # (0.6 + 0.2) / 2, nothing else


# ---- the paper's reported numbers --------------------------------------------------------------------------
def test_reported_rows_carry_their_source_and_load_as_reported():
    from fluxbench.reports.reported import load_reported_listening_rows, load_reported_rows

    data = json.loads((Path(__file__).resolve().parents[1] / "models/baselines/reported_results.json").read_text())
    assert [row["model"] for row in data["table3"]] == [
        "MusicLM", "MusicGen", "Mousai", "Jen-1", "AudioLDM 2 (Full)", "AudioLDM 2 (Music)", "QA-MDT (U-Net)",
        "QA-MDT (DiT)", "FluxMusic"]
    for row in data["table3"] + data["table4"]:
        assert row["reported"] is True and "arXiv:2409.00587" in row["source"]
    for row in data["table3"]:
        assert "Table 3" in row["source"] and row["params"] and row["hours"]
        for metrics in row["sets"].values():
            assert set(metrics) <= {"FAD", "KL", "IS", "CLAP"}
            assert all(value > 0 for value in metrics.values()) and metrics.get("CLAP", 0) < 1
    assert {(row["system"], row["group"]) for row in data["table4"]} == {
        (system, group) for system in ("Ground Truth", "AudioLDM 2", "MusicGen", "FluxMusic")
        for group in ("expert", "beginner")}
    assert all(1 <= row[aspect] <= 5 for row in data["table4"] for aspect in ("ovl", "rel"))
    rows, listening = load_reported_rows(), load_reported_listening_rows()
    assert {row.label for row in rows} >= {"FluxMusic", "MusicGen"} and all(row.reported for row in rows)
    assert len(listening) == 8 and all(row.reported for row in listening)


# ---- MusicGen's per-clip sampler -----------------------------------------------------------------------------
@pytest.mark.parametrize("top_k, top_p", [(3, 0.0), (0, 0.8)])
def test_per_clip_sampler_draws_from_the_guided_truncated_distribution(top_k, top_p):
    """Frequencies of 6000 draws against the distribution computed by hand: softmax((u + g (c - u)) / T) cut to
    the top k tokens, or to the smallest set reaching probability p."""
    import torch

    from fluxbench.models.baselines.musicgen import PerClipSampler

    conditional = np.array([2.0, 1.0, 0.5, 0.0, -1.0])
    unconditional = np.array([1.0, 1.0, 1.0, 0.2, 0.0])  # guided: 3, 1, 0, -0.2, -2 (no ties)
    guidance, temperature = 2.0, 1.5
    logits = (unconditional + guidance * (conditional - unconditional)) / temperature
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probabilities)
    keep = order[:top_k] if top_k else order[:np.searchsorted(np.cumsum(probabilities[order]), top_p) + 1]
    expected = np.zeros(5)
    expected[keep] = probabilities[keep] / probabilities[keep].sum()

    sampler = PerClipSampler([torch.Generator().manual_seed(0)], codebooks=1, guidance=guidance,
                             temperature=temperature, top_k=top_k, top_p=top_p)
    scores = torch.tensor(np.stack([conditional, unconditional]), dtype=torch.float32)
    counts = np.zeros(5)
    for _ in range(6000):
        mask = sampler(None, scores)
        assert mask.shape == (2, 5) and torch.equal(mask[0], mask[1])
        counts[int(mask[0].argmax())] += 1
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.02)


def test_per_clip_sampler_rows_follow_their_own_generator():
    import torch

    from fluxbench.models.baselines.musicgen import PerClipSampler

    scores = torch.zeros(2 * 4, 50)  # two clips x four codebooks, uniform logits, no guidance rows

    def draws(seeds):
        sampler = PerClipSampler([torch.Generator().manual_seed(s) for s in seeds], codebooks=4, guidance=1.0,
                                 temperature=1.0, top_k=0, top_p=0.0)
        return sampler(None, scores[: 4 * len(seeds)]).argmax(-1)

    pair = draws([7, 8])
    assert torch.equal(pair[4:], draws([8])) and torch.equal(pair[:4], draws([7]))
    assert not torch.equal(pair[:4], pair[4:])


def test_generate_command_passes_loading_options_to_baselines(tiny_root, tmp_path):
    """`fluxbench generate` reaches a baseline through --weights-dir and honours --device/--batch-size."""
    import json

    from fluxbench.cli import main

    root = tiny_root("musicgen-small")
    out = tmp_path / "out"
    code = main(["generate", "--model", "musicgen-small", "--weights-dir", str(root), "--device", "cpu",
                 "--batch-size", "1", "--duration", str(DURATION), "--prompt", PROMPTS[0], "--out", str(out), "-q"])
    assert code == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 1
    audio, rate = read_audio(wavs[0])
    assert rate == 16000 and audio.shape[-1] == round(DURATION * 16000)
    assert json.loads((out / "generation.json").read_text())
