"""Loading and saving FluxMusic checkpoints in the official layout, safely and strictly."""

import argparse
import os
import pickle

import pytest
import torch

from fluxbench.models.fluxmusic import SIZES, FluxMusicTransformer
from fluxbench.models.fluxmusic.checkpoint import (
    CheckpointError, build_transformer, load_model_folder, load_state_dict, load_transformer, save_model_folder,
    save_official)
from fluxbench.models.fluxmusic.transformer import music_ids, text_ids


def _tiny_inputs(config, batch=2, height=8, width=4, n_text=3):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, (height // 2) * (width // 2), config.in_channels, generator=g),
            music_ids(batch, height, width), torch.randn(batch, n_text, config.context_in_dim, generator=g),
            text_ids(batch, n_text), torch.rand(batch, generator=g), torch.randn(batch, config.vec_in_dim, generator=g))


def test_tiny_official_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = FluxMusicTransformer(SIZES["tiny"]).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    path = save_official(tmp_path / "musicflow_tiny.pt", model.state_dict(), opt=opt.state_dict(),
                         args=argparse.Namespace(version="tiny", global_batch_size=128, resume=None))
    reloaded = load_transformer(path, "tiny")
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    inputs = _tiny_inputs(SIZES["tiny"])
    with torch.no_grad():
        assert torch.equal(model(*inputs), reloaded(*inputs))


@pytest.mark.parametrize("size", ["small", "base", "large", "giant", "giant_full"])
def test_each_release_layout_loads_strictly(size, checkpoint_manifest, tmp_path):
    """An official-layout file with the manifest's keys and shapes loads strictly (zero-stride storage keeps it tiny)."""
    state = {k: torch.zeros(()).expand(shape) for k, shape in checkpoint_manifest[size]["state_dict"]}
    path = save_official(tmp_path / f"{size}.pt", state, opt={"state": {}, "param_groups": []},
                         args=argparse.Namespace(version=size))
    assert os.path.getsize(path) < 1_000_000
    model = build_transformer(size, load_state_dict(path), str(path), device="meta")
    assert model.parameter_count() == checkpoint_manifest[size]["parameters"]


def test_wrong_size_names_closest_and_first_keys(checkpoint_manifest, tmp_path):
    state = {k: torch.zeros(()).expand(shape) for k, shape in checkpoint_manifest["small"]["state_dict"]}
    path = save_official(tmp_path / "musicflow_s.pt", state)
    with pytest.raises(CheckpointError) as info:
        load_transformer(path, "base", device="meta")
    message = str(info.value)
    assert "\n" not in message
    assert "closest size: fluxmusic-small" in message
    assert "missing" in message and "double_blocks.8." in message
    assert "shape mismatches" in message and "img_in.weight [512, 32] vs [768, 32]" in message


def test_truncated_state_dict_lists_missing_keys(tmp_path):
    state = FluxMusicTransformer(SIZES["tiny"]).state_dict()
    del state["final_layer.linear.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = save_official(tmp_path / "x.pt", state)
    with pytest.raises(CheckpointError, match=r"1 missing \(first: final_layer.linear.weight\).*1 unexpected \(first: extra.weight\)"):
        load_transformer(path, "tiny")


def test_missing_entry_and_missing_file(tmp_path):
    path = tmp_path / "opt_only.pt"
    torch.save({"opt": {"state": {}}, "model": {"a": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="no 'ema' entry.*model, opt"):
        load_state_dict(path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_state_dict(tmp_path / "nope.pt")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['FLUXBENCH_EXPLOIT_MARK']}",))


def test_pickled_code_is_never_executed(tmp_path, monkeypatch):
    mark = tmp_path / "executed"
    monkeypatch.setenv("FLUXBENCH_EXPLOIT_MARK", str(mark))
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"ema": _Exploit()}, handle)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_state_dict(path)
    assert not mark.exists()


def test_ddp_prefix_and_safetensors_entry(tmp_path):
    from safetensors.torch import save_file

    model = FluxMusicTransformer(SIZES["tiny"])
    prefixed = {f"ema.module.{k}": v.contiguous() for k, v in model.state_dict().items()}
    prefixed["opt.step"] = torch.zeros(1)
    save_file(prefixed, tmp_path / "ckpt.safetensors")
    state = load_state_dict(tmp_path / "ckpt.safetensors")
    assert set(state) == set(model.state_dict())


def test_model_folder_round_trip(tmp_path):
    model = FluxMusicTransformer(SIZES["tiny"]).eval()
    spec = {"objective": "rectified_flow", "codec": {"kind": "mel"}, "conditioner": {"kind": "vocab"}}
    save_model_folder(tmp_path / "m", model, spec)
    reloaded, loaded_spec = load_model_folder(tmp_path / "m")
    assert loaded_spec["objective"] == "rectified_flow" and loaded_spec["transformer"] == SIZES["tiny"].to_dict()
    inputs = _tiny_inputs(SIZES["tiny"])
    with torch.no_grad():
        assert torch.equal(model(*inputs), reloaded(*inputs))
    with pytest.raises(CheckpointError, match="not a FluxMusic model folder"):
        load_model_folder(tmp_path)
