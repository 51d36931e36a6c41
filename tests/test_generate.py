"""FluxMusic generation end to end on tiny hub-shaped components: golden sampler replay through the pipeline,
`fluxbench generate`, seeds, presets, solvers, resume and the missing-weights error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import tiny_hub
from fluxbench import FluxbenchError
from fluxbench.cli import main as cli
from fluxbench.models.base import TextToMusicModel
from fluxbench.models.fluxmusic.conditioner import TextConditioning
from fluxbench.models.fluxmusic.pipeline import PRESETS, FluxMusicModel, GenerationError, item_seeds
from fluxbench.runtime import derive_seed

PROMPTS = ["a calm piano melody with soft strings", "upbeat electronic dance track"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tiny_hub.build_hub(tmp_path_factory.mktemp("hub"))
    tiny_hub.build_model_folder(root / "model")
    tiny_hub.build_model_folder(root / "mel-model", codec={"kind": "mel", "griffin_lim_iters": 4})
    return root


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("FLUXBENCH_WEIGHTS_DIR", "FLUXBENCH_T5", "FLUXBENCH_CLAP", "FLUXBENCH_AUDIOLDM2_VAE",
                 "FLUXBENCH_AUDIOLDM2_VOCODER", "FLUXBENCH_FLUXMUSIC_SMALL", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tiny(hub):
    # Encoders stay loaded across the many short generations here (their release is tested on its own).
    return FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub,
                                   keep_text_encoders=True)


# ---- the sampler inside the pipeline reproduces the official record -------------------------------------
def test_golden_sampler_replay_through_the_pipeline(golden_dir, tiny):
    from safetensors.torch import load_file

    from fluxbench.models.fluxmusic.checkpoint import build_transformer

    record = load_file(str(golden_dir / "flux_tiny_a.safetensors"))
    meta = json.loads((golden_dir / "flux_tiny_a.json").read_text())
    state = {k.removeprefix("state_dict."): v for k, v in record.items() if k.startswith("state_dict.")}
    model = FluxMusicModel(build_transformer(meta["config"], state), tiny.conditioner, tiny.codec, device="cpu")
    _, _, height, width = meta["latent_shape"]
    cond = TextConditioning(record["input.txt"], record["input.y"])
    uncond = TextConditioning(record["sampler.null_txt"], record["sampler.null_y"])
    tokens = model.denoise(record["sampler.z0"], cond, uncond, height, width, guidance=meta["sampler"]["cfg"],
                           steps=meta["sampler"]["steps"])
    torch.testing.assert_close(tokens, record["sampler.euler_final"], atol=1e-4, rtol=0)
    # A batch-of-one negative is broadcast over the batch exactly like a full one.
    one = TextConditioning(record["sampler.null_txt"][:1], record["sampler.null_y"][:1])
    if torch.equal(record["sampler.null_txt"][0], record["sampler.null_txt"][1]):
        torch.testing.assert_close(model.denoise(record["sampler.z0"], cond, one, height, width, 3.5, 4), tokens)


# ---- the model interface ----------------------------------------------------------------------------------
def test_for_size_generates_finite_audio_of_the_right_length(tiny):
    assert isinstance(tiny, TextToMusicModel) and tiny.sample_rate == 16000
    audio = tiny.generate(PROMPTS, duration=1.5, seed=7, steps=3)
    assert audio.waveforms.shape == (2, 24000) and audio.waveforms.dtype == np.float32
    assert np.isfinite(audio.waveforms).all() and audio.waveforms.std() > 1e-4
    settings = audio.settings
    assert settings["seeds"] == [7, 8] and settings["latent_shape"] == [8, 38, 16]
    assert (settings["guidance"], settings["negative_prompt"], settings["solver"]) == (3.5, "", "euler")
    assert settings["fingerprint"] == tiny.fingerprint()
    assert set(tiny.checksums()) == {"transformer", "t5", "clap", "vae", "vocoder"}


def test_same_seed_same_audio_other_seed_other_audio(tiny):
    first = tiny.generate(PROMPTS, duration=0.5, seed=3, steps=2).waveforms
    again = tiny.generate(PROMPTS, duration=0.5, seed=3, steps=2).waveforms
    other = tiny.generate(PROMPTS, duration=0.5, seed=4, steps=2).waveforms
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    # Clip i's noise depends only on its own seed: the second prompt alone with seed 4 is the same clip.
    alone = tiny.generate(PROMPTS[1:], duration=0.5, seed=[4], steps=2).waveforms
    np.testing.assert_allclose(alone[0], first[1], atol=2e-3)  # batched kernels may round differently


def test_paper_and_official_presets(tiny):
    assert tiny.settings(preset="paper")["steps"] == 50
    official = tiny.settings(preset="official")
    assert (official["guidance"], official["negative_prompt"]) == (7.0, "low quality, gentle")
    assert tiny.settings(preset="official", guidance=2.0)["guidance"] == 2.0
    assert PRESETS["paper"] == {"steps": 50, "guidance": 3.5, "negative_prompt": ""}
    paper = tiny.generate(PROMPTS[:1], duration=0.5, seed=1, steps=2).waveforms
    negative = tiny.generate(PROMPTS[:1], duration=0.5, seed=1, steps=2, preset="official").waveforms
    assert not np.allclose(paper, negative)


@pytest.mark.slow
def test_higher_order_solvers_and_bad_settings(tiny):
    euler = tiny.generate(PROMPTS[:1], duration=0.5, seed=2, steps=2).waveforms
    for solver in ("heun", "midpoint"):
        other = tiny.generate(PROMPTS[:1], duration=0.5, seed=2, steps=2, solver=solver).waveforms
        assert np.isfinite(other).all() and not np.allclose(other, euler)
    with pytest.raises(GenerationError, match="no solver 'rk4'"):
        tiny.settings(solver="rk4")
    with pytest.raises(GenerationError, match="unknown preset"):
        tiny.settings(preset="fast")
    with pytest.raises(GenerationError, match="one per prompt"):
        item_seeds([1, 2, 3], 2)
    with pytest.raises(GenerationError, match="unknown generation setting"):
        tiny.generate(PROMPTS, cfg=3.0)


def test_text_encoders_are_released_before_denoising(hub):
    model = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub)
    model.generate(PROMPTS[:1], duration=0.25, steps=1)
    assert model.conditioner._t5 is None and model.conditioner._clap is None
    kept = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub,
                                   keep_text_encoders=True)
    kept.generate(PROMPTS[1:], duration=0.25, steps=1)  # a caption not in the disk cache yet
    assert kept.conditioner._t5 is not None and kept.conditioner._clap is not None


def test_generation_loads_the_transformer_only_after_the_text_encoders_are_freed(hub, monkeypatch):
    from fluxbench.models.fluxmusic.checkpoint import DeferredTransformer

    model = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub)
    deferred = model._transformer
    assert isinstance(deferred, DeferredTransformer)  # nothing of the transformer is loaded yet
    events = []
    encode = model.conditioner.encode
    monkeypatch.setattr(model.conditioner, "encode",
                        lambda captions: events.append(("encode", len(captions), model._transformer_placed))
                        or encode(captions))

    def load():
        events.append(("load transformer", model.conditioner._t5 is None and model.conditioner._clap is None))
        return deferred.load()

    model._transformer = DeferredTransformer(deferred.config, load)
    move_codec = model._codec.to
    monkeypatch.setattr(model._codec, "to", lambda device: events.append(("codec to device",)) or move_codec(device))
    model.generate(PROMPTS, duration=0.25, steps=1)
    assert events == [("encode", 2, False), ("load transformer", True), ("codec to device",)]


def test_prompt_embeddings_are_cached_on_disk_and_reused(hub, tmp_path):
    first = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub)
    first.prepare(PROMPTS, first.resolve_settings())  # the first stage of a run: encode all, store, free
    assert first.conditioner._t5 is None and first.conditioner._clap is None
    stored = sorted((tmp_path / "cache" / "text-embeddings" / "prompts").glob("*.safetensors"))
    assert len(stored) == 2
    cond, _ = first.encode_text(PROMPTS, "", 1.0)
    assert first.conditioner._t5 is None and first.conditioner._clap is None  # read back, not encoded
    fresh = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub,
                                    keep_text_encoders=True)
    direct = fresh.conditioner.encode(PROMPTS)
    torch.testing.assert_close(cond.txt, direct.txt, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond.y, direct.y, rtol=0, atol=1e-6)
    # another encoder (other weights, so another checksum) does not see these entries
    assert set(fresh.conditioner.prompt_cache_paths(PROMPTS).values()) == set(stored)
    fresh.conditioner.max_tokens = 16
    assert not set(fresh.conditioner.prompt_cache_paths(PROMPTS).values()) & set(stored)


def test_left_out_encoders_use_the_cached_null(hub, tiny):
    tiny.generate(PROMPTS[:1], duration=0.25, steps=1)  # stores the null embedding
    no_text = FluxMusicModel.for_size("tiny", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt",
                                      weights_dir=hub, use_t5=False, use_clap=False)
    # Both slots null: the caption no longer matters, so two captions with one seed give one clip.
    unconditional = no_text.generate(PROMPTS, duration=0.25, seed=[5, 5], steps=2).waveforms
    np.testing.assert_allclose(unconditional[0], unconditional[1], atol=1e-6)
    conditional = tiny.generate(PROMPTS, duration=0.25, seed=[5, 5], steps=2).waveforms
    assert not np.allclose(conditional[0], conditional[1], atol=1e-3)


def test_mel_codec_model_folder(hub):
    model = FluxMusicModel.from_folder(hub / "mel-model", weights_dir=hub)
    audio = model.generate(PROMPTS[:1], duration=0.5, steps=2)
    assert audio.waveforms.shape == (1, 8000) and np.isfinite(audio.waveforms).all()
    assert "vae" not in model.checksums() and model.name == "tiny-fluxmusic"


# ---- missing weights ------------------------------------------------------------------------------------
def test_missing_weights_error_lists_every_component(tmp_path):
    with pytest.raises(FluxbenchError) as error:
        FluxMusicModel.for_size("fluxmusic-small", weights_dir=tmp_path)
    message = str(error.value)
    for expected in ("hf://feizhengcong/FluxMusic/musicflow_s.pt", "hf://stabilityai/stable-diffusion-3-medium-diffusers",
                     "hf://laion/larger_clap_music", "hf://cvssp/audioldm2/vae", "hf://cvssp/audioldm2/vocoder",
                     str(tmp_path / "FluxMusic" / "musicflow_s.pt")):
        assert expected in message, expected
    code = cli(["generate", "--model", "fluxmusic-base", "--weights-dir", str(tmp_path), "--offline",
                "--prompt", "x", "--out", str(tmp_path / "out")])
    assert code == 2


def test_wrong_text_encoder_for_the_transformer_is_named(hub):
    with pytest.raises(GenerationError, match="T5 hidden size is 48 but the transformer's context_in_dim is 4096"):
        FluxMusicModel.for_size("small", checkpoint=hub / "FluxMusic" / "musicflow_tiny.pt", weights_dir=hub)


# ---- the command ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_command_writes_wavs_pngs_and_sidecar_and_resumes(hub, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": f"clip {i}", "caption": c}) for i, c in enumerate(PROMPTS, 1)))
    out = tmp_path / "out"
    args = ["generate", "--model", str(hub / "model"), "--weights-dir", str(hub), "--offline", "-q",
            "--prompts-file", str(prompts), "--prompt", "jazz trio", "--out", str(out), "--steps", "2",
            "--duration", "1.0", "--seed", "11", "--batch-size", "2", "--mel-png"]
    assert cli(args) == 0
    sidecar = json.loads((out / "generation.json").read_text())
    assert [c["id"] for c in sidecar["clips"]] == ["0000", "clip_1", "clip_2"]  # --prompt items first
    # each clip's seed comes from --seed and the prompt's own id, as a set item's does in `fluxbench run`
    assert [c["seed"] for c in sidecar["clips"]] == [derive_seed(11, i) for i in ("0000", "clip 1", "clip 2")]
    assert sidecar["settings"]["steps"] == 2 and sidecar["settings"]["guidance"] == 3.5
    assert set(sidecar["checksums"]) == {"model_folder", "t5", "clap", "vae", "vocoder"}
    assert sidecar["fingerprint"].startswith("tiny-fluxmusic@")
    for clip in sidecar["clips"]:
        data, rate = sf.read(out / clip["file"])
        assert rate == 16000 and data.shape == (16000,) and np.isfinite(data).all()
        assert (out / clip["mel_png"]).read_bytes().startswith(b"\x89PNG")
    stamp = (out / "clip_1.wav").stat().st_mtime_ns
    (out / "clip_2.wav").unlink()  # an interrupted run: the rerun makes only what is missing
    assert cli(args) == 0
    assert (out / "clip_1.wav").stat().st_mtime_ns == stamp and (out / "clip_2.wav").is_file()
    # Other settings into the same folder are refused unless --overwrite.
    assert cli([*args[:-1], "--steps", "3"]) == 2
    assert "another model or settings" in capsys.readouterr().err


def test_generate_command_same_seed_identical_audio(hub, tmp_path):
    base = ["generate", "--model", str(hub / "model"), "--weights-dir", str(hub), "--offline", "-q",
            "--prompt", PROMPTS[0], "--steps", "2", "--duration", "0.5", "--solver", "heun"]
    assert cli([*base, "--out", str(tmp_path / "a")]) == 0
    assert cli([*base, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "0000.wav").read_bytes() == (tmp_path / "b" / "0000.wav").read_bytes()


def test_generate_command_input_errors(hub, tmp_path, capsys):
    assert cli(["generate", "--model", str(hub / "model"), "--out", str(tmp_path)]) == 2
    assert "no prompts" in capsys.readouterr().err
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps([{"text": "no caption key"}]))
    assert cli(["generate", "--model", str(hub / "model"), "--prompts-file", str(bad), "--out", str(tmp_path)]) == 2
    assert "item 1 has no 'caption'" in capsys.readouterr().err
    assert cli(["generate", "--model", "fluxmusic-smal", "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert "did you mean 'fluxmusic-small'" in capsys.readouterr().err


def test_model_folder_samples_with_its_training_schedule(tmp_path):
    """A folder trained with non-default DDPM betas is sampled on those betas, not the defaults."""
    import json

    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel
    from fluxbench.models.fluxmusic.train import demo_config, train

    folder = tmp_path / "ddpm-model"
    train(demo_config(out=str(folder), clips=4, steps=1, global_batch=4, micro_batch=4, save_every=1,
                      objective="ddpm"), device_choice="cpu", progress=False)
    spec_path = folder / "fluxmusic.json"
    spec = json.loads(spec_path.read_text())
    assert spec["objective"] == "ddpm" and spec["objective_options"]["train_steps"] == 1000
    spec["objective_options"] = {"train_steps": 400, "beta_start": 1e-3, "beta_end": 0.03}
    spec_path.write_text(json.dumps(spec))
    model = FluxMusicModel.from_folder(folder, device="cpu")
    assert model.objective.options() == {"train_steps": 400, "beta_start": 1e-3, "beta_end": 0.03}
