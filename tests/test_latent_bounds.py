"""The training latents' range: recorded by training, clamped to by the samplers (static thresholding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fluxbench.models.fluxmusic.flow import DDPM, RectifiedFlow
from fluxbench.models.fluxmusic.latent import CodecError, LatentBounds, build_codec
from fluxbench.models.fluxmusic.transformer import patchify

COND = {"img_ids": None, "txt": None, "txt_ids": None, "y": None}


def _wild_velocity(z, img_ids, txt, txt_ids, t, y):
    """A network whose clean-sample estimates run far outside any data range."""
    return z * 3.0 - 5.0


def _noise(shape=(2, 6, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


# ---- samplers ---------------------------------------------------------------------------------------------
def test_rectified_flow_keeps_every_clean_estimate_within_the_bounds():
    low, high = torch.full((8,), -0.5, dtype=torch.float64), torch.full((8,), 0.25, dtype=torch.float64)
    free = RectifiedFlow().trajectory(_wild_velocity, _noise(), COND, steps=6)
    assert max(float(x.max()) for x in free.x0_estimates) > 1.0  # the test's network does leave the range
    run = RectifiedFlow().trajectory(_wild_velocity, _noise(), COND, steps=6, x0_bounds=(low, high))
    for estimate in run.x0_estimates:
        assert float(estimate.min()) >= -0.5 - 1e-12 and float(estimate.max()) <= 0.25 + 1e-12


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
def test_a_point_range_lands_the_sampler_exactly_on_it(solver):
    """With low = high = c every evaluation heads for c, and the last step (t = 1/N to 0) arrives there."""
    target = torch.linspace(-1, 1, 8, dtype=torch.float64)
    final = RectifiedFlow().sample(_wild_velocity, _noise(), COND, steps=5, solver=solver,
                                   x0_bounds=(target, target))
    torch.testing.assert_close(final, target.expand_as(final), rtol=0, atol=1e-12)


def test_heun_with_bounds_stays_finite_at_its_t_zero_evaluation():
    low, high = torch.tensor(-0.5, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    clamped = RectifiedFlow().sample(_wild_velocity, _noise(), COND, steps=4, solver="heun", x0_bounds=(low, high))
    free = RectifiedFlow().sample(_wild_velocity, _noise(), COND, steps=4, solver="heun")
    assert torch.isfinite(clamped).all() and float((clamped - free).abs().max()) > 0.1


def test_ddim_keeps_every_clean_estimate_within_the_bounds():
    ddpm = DDPM()
    low, high = torch.tensor(-0.2, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    run = ddpm.trajectory(_wild_velocity, _noise(), COND, steps=5, x0_bounds=(low, high))
    for estimate in run.x0_estimates:
        assert float(estimate.min()) >= -0.2 - 1e-9 and float(estimate.max()) <= 0.3 + 1e-9
    free = ddpm.trajectory(_wild_velocity, _noise(), COND, steps=5)
    assert not torch.equal(free.final, run.final)


def test_no_bounds_leaves_the_sampler_unchanged():
    torch.testing.assert_close(RectifiedFlow().sample(_wild_velocity, _noise(), COND, steps=4, x0_bounds=None),
                               RectifiedFlow().sample(_wild_velocity, _noise(), COND, steps=4), rtol=0, atol=0)


# ---- the range itself -------------------------------------------------------------------------------------
def test_bounds_are_the_per_channel_and_frequency_extremes_over_clips_and_time():
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 4, 10, 6, generator=generator), torch.randn(2, 4, 7, 6, generator=generator) * 3]
    bounds = LatentBounds.of(iter(batches))
    every = np.concatenate([b.permute(0, 2, 1, 3).reshape(-1, 4, 6).numpy() for b in batches])  # [rows, C, W]
    np.testing.assert_array_equal(bounds.low.numpy(), every.min(axis=0))
    np.testing.assert_array_equal(bounds.high.numpy(), every.max(axis=0))
    again = LatentBounds.from_spec(json.loads(json.dumps(bounds.spec())), 4, "spec")
    assert torch.equal(again.low, bounds.low) and torch.equal(again.high, bounds.high)


def test_token_layout_matches_the_patchified_latent():
    low = torch.arange(4 * 6, dtype=torch.float32).reshape(4, 6)
    bounds = LatentBounds(low, low + 1)
    latent = low[None, :, None, :].expand(1, 4, 10, 6).contiguous()
    token_low, token_high = bounds.tokens(10, 6)
    assert torch.equal(token_low, patchify(latent)) and torch.equal(token_high, patchify(latent + 1))
    with pytest.raises(CodecError, match="6 wide; this latent is 8"):
        bounds.tokens(10, 8)


@pytest.mark.parametrize("spec, message", [
    ({"low": [[0.0]]}, "expected 'low' and 'high'"),
    ({"low": [[0.0, 1.0]], "high": [[1.0]]}, "shapes"),
    ({"low": [[0.0], [0.0]], "high": [[1.0], [1.0]]}, r"expected \[1, width\]"),
    ({"low": [[2.0]], "high": [[1.0]]}, "low <= high"),
    ({"low": [[float("nan")]], "high": [[1.0]]}, "finite"),
    ("0..1", "expected 'low' and 'high'"),
])
def test_bad_recorded_ranges_are_one_line_errors(spec, message):
    with pytest.raises(CodecError, match=message) as error:
        LatentBounds.from_spec(spec, 1, "model/fluxmusic.json: latent_bounds")
    assert "\n" not in str(error.value) and "latent_bounds" in str(error.value)


# ---- training records it, generation uses it --------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fluxbench.models.fluxmusic.train import demo_config, train

    folder = tmp_path_factory.mktemp("bounds") / "model"
    config = demo_config(out=str(folder), clips=4, steps=1, global_batch=4, micro_batch=4, save_every=1)
    train(config, device_choice="cpu", progress=False)
    return folder, config


def test_training_records_the_range_of_its_training_latents(trained):
    from fluxbench.models.fluxmusic.train_data import load_clip, read_manifest

    folder, config = trained
    spec = json.loads((folder / "fluxmusic.json").read_text())
    codec = build_codec(spec["codec"])
    samples = int(round(config.duration * codec.sample_rate))
    waves = np.stack([load_clip(r.path, codec.sample_rate, samples, config.normalize)
                      for r in read_manifest(config.manifest)])
    latents = codec.encode(torch.from_numpy(waves)).numpy()  # [clips, C, H, W]
    np.testing.assert_allclose(spec["latent_bounds"]["low"], latents.min(axis=(0, 2)), rtol=0, atol=1e-5)
    np.testing.assert_allclose(spec["latent_bounds"]["high"], latents.max(axis=(0, 2)), rtol=0, atol=1e-5)


def _copy_with_spec(trained, folder, edit):
    """The trained model folder copied to `folder` with its fluxmusic.json changed by `edit`, loaded."""
    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel

    folder.mkdir()
    for path in trained[0].iterdir():
        if path.is_file():
            folder.joinpath(path.name).write_bytes(path.read_bytes())
    spec = json.loads((folder / "fluxmusic.json").read_text())
    edit(spec)
    (folder / "fluxmusic.json").write_text(json.dumps(spec))
    return FluxMusicModel.from_folder(folder, device="cpu")


def _with_bounds(trained, tmp_path, low: float, high: float):
    def narrow(spec):
        shape = np.asarray(spec["latent_bounds"]["low"]).shape
        spec["latent_bounds"] = {"low": np.full(shape, low).tolist(), "high": np.full(shape, high).tolist()}

    return _copy_with_spec(trained, tmp_path / "model", narrow)


def test_generation_clamps_to_the_recorded_range_by_default(trained, tmp_path):
    model = _with_bounds(trained, tmp_path, 0.5, 0.5)
    settings = model.resolve_settings(duration=1.0, steps=3)
    assert settings["clamp_x0"] is True and model.settings(duration=1.0)["clamp_x0"] is True
    channels, height, width = settings["latent_shape"]
    noise = patchify(model.noise([0], (channels, height, width)))
    cond, uncond = model.encode_text(["a calm piano melody"], "", 1.5)
    clamped = model.denoise(noise, cond, uncond, height, width, 1.5, 3, clamp_x0=True)
    torch.testing.assert_close(clamped, torch.full_like(clamped, 0.5), rtol=0, atol=1e-5)
    free = model.denoise(noise, cond, uncond, height, width, 1.5, 3, clamp_x0=False)
    assert float((free - 0.5).abs().max()) > 0.1
    on = model.generate(["a calm piano melody"], duration=1.0, steps=3).waveforms
    off = model.generate(["a calm piano melody"], duration=1.0, steps=3, clamp_x0=False).waveforms
    assert not np.array_equal(on, off)
    assert model.untrained().settings(duration=1.0)["clamp_x0"] is True  # the anchor samples the same way


def test_folders_without_a_range_sample_as_before_and_refuse_clamping(trained, tmp_path):
    from fluxbench.models.fluxmusic.pipeline import GenerationError

    model = _copy_with_spec(trained, tmp_path / "old", lambda spec: spec.pop("latent_bounds"))
    assert "clamp_x0" not in model.settings(duration=1.0)  # clip identities of such models are unchanged
    with pytest.raises(GenerationError, match="clamp_x0 needs the training latents' range"):
        model.resolve_settings(duration=1.0, clamp_x0=True)


def test_a_bad_range_in_a_model_folder_names_the_file_and_field(trained, tmp_path):
    def inverted(spec):
        spec["latent_bounds"]["low"][0][0] = spec["latent_bounds"]["high"][0][0] + 1.0

    with pytest.raises(CodecError, match=r"fluxmusic\.json: latent_bounds: values must be finite with low <= high"):
        _copy_with_spec(trained, tmp_path / "bad", inverted)


def test_generate_command_records_the_clamp_and_can_turn_it_off(trained, tmp_path):
    from fluxbench.cli import main as cli

    folder, _ = trained
    base = ["generate", "--model", str(folder), "--offline", "-q", "--prompt", "a calm piano melody",
            "--steps", "2", "--duration", "0.5"]
    assert cli([*base, "--out", str(tmp_path / "on")]) == 0
    assert cli([*base, "--no-clamp-x0", "--out", str(tmp_path / "off")]) == 0
    on = json.loads((tmp_path / "on" / "generation.json").read_text())["settings"]
    off = json.loads((tmp_path / "off" / "generation.json").read_text())["settings"]
    assert on["clamp_x0"] is True and off["clamp_x0"] is False
