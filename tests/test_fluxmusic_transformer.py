"""The transformer against the official code's golden outputs and the released checkpoints' key manifest."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fluxbench.models.fluxmusic import SIZES, FluxMusicConfig, FluxMusicTransformer
from fluxbench.models.fluxmusic.checkpoint import expected_shapes
from fluxbench.models.fluxmusic.transformer import music_ids, patchify, text_ids, unpatchify

PAPER_TABLE1 = {  # parameters (M) and GFLOPs as printed in the paper
    "small": (142.3, 194.5), "base": (473.9, 654.4), "large": (840.6, 1162.6), "giant": (2109.9, 2928.0)}


@pytest.fixture(scope="module")
def golden(golden_dir):
    tensors = load_file(str(golden_dir / "flux_tiny_a.safetensors"))
    meta = json.loads((golden_dir / "flux_tiny_a.json").read_text())
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    return tensors, meta, state


def test_golden_forward_matches_official(golden):
    tensors, meta, state = golden
    model = FluxMusicTransformer(FluxMusicConfig(**meta["config"])).eval()
    model.load_state_dict(state, strict=True)
    inputs = [tensors[f"input.{name}"] for name in ("x", "img_ids", "txt", "txt_ids", "t", "y")]
    with torch.no_grad():
        out = model(*inputs)
        by_name = model(x=inputs[0], img_ids=inputs[1], txt=inputs[2], txt_ids=inputs[3], t=inputs[4], y=inputs[5])
    assert out.shape == tensors["output"].shape
    assert (out - tensors["output"]).abs().max().item() < 1e-5
    assert torch.equal(out, by_name)


def test_golden_forward_is_sensitive_to_every_input(golden):
    """Each conditioning path matters: perturbing any input moves the output well beyond tolerance."""
    tensors, meta, state = golden
    model = FluxMusicTransformer(FluxMusicConfig(**meta["config"])).eval()
    model.load_state_dict(state)
    base = {n: tensors[f"input.{n}"].clone() for n in ("x", "img_ids", "txt", "txt_ids", "t", "y")}
    with torch.no_grad():
        reference = model(**base)
        for name in ("x", "txt", "y", "t", "img_ids"):
            changed = dict(base)
            changed[name] = base[name] + (0.3 if name != "img_ids" else 1.0)
            assert (model(**changed) - reference).abs().max() > 1e-3, name


@pytest.mark.parametrize("size", list(SIZES))
def test_parameter_count_is_analytic_meta_and_manifest(size, checkpoint_manifest):
    config = SIZES[size]
    with torch.device("meta"):
        model = FluxMusicTransformer(config)
    counted = sum(p.numel() for p in model.parameters())
    assert config.parameter_count() == counted
    if size in checkpoint_manifest:
        assert counted == checkpoint_manifest[size]["parameters"]
    if size in PAPER_TABLE1:
        assert math.floor(counted / 1e5) / 10 == PAPER_TABLE1[size][0]


@pytest.mark.parametrize("size", ["small", "base", "large", "giant", "giant_full"])
def test_keys_and_shapes_equal_release_manifest(size, checkpoint_manifest):
    entry = checkpoint_manifest[size]
    assert FluxMusicConfig(**entry["hyperparameters"]) == SIZES[size]
    assert list(expected_shapes(SIZES[size]).items()) == [(k, tuple(s)) for k, s in entry["state_dict"]]


@pytest.mark.parametrize("size", list(PAPER_TABLE1))
def test_table1_gflops(size):
    assert SIZES[size].paper_gflops() == PAPER_TABLE1[size][1]


def test_operation_counts_match_a_real_forward():
    """Analytic MACs equal what a real forward executes: matmul FLOPs counted by torch's FlopCounterMode
    (2 x (linear + attention-product MACs)) and layer-norm elements seen at the aten level."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    class LayerNormElements(TorchDispatchMode):
        elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.native_layer_norm.default:
                LayerNormElements.elements += args[0].numel()
            return func(*args, **(kwargs or {}))

    config = SIZES["tiny"]
    model = FluxMusicTransformer(config).eval()
    batch, height, width, n_text = 2, 16, 8, 7
    x = torch.randn(batch, (height // 2) * (width // 2), config.in_channels)
    inputs = (x, music_ids(batch, height, width), torch.randn(batch, n_text, config.context_in_dim),
              text_ids(batch, n_text), torch.rand(batch), torch.randn(batch, config.vec_in_dim))
    flop_counter = FlopCounterMode(display=False)
    # The math attention backend runs the two attention products as counted matmuls.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), flop_counter, LayerNormElements():
        model(*inputs)
    macs = config.macs(music_tokens=x.shape[1], text_tokens=n_text, batch=batch)
    assert flop_counter.get_total_flops() == 2 * (macs["linear"] + macs["attention"])
    assert macs["layer_norm"] == 2 * LayerNormElements.elements  # thop: 2 ops per normalised element


def test_patchify_layout_and_round_trip():
    latent = torch.arange(2 * 8 * 6 * 4, dtype=torch.float32).reshape(2, 8, 6, 4)
    tokens = patchify(latent)
    assert tokens.shape == (2, 3 * 2, 32)
    # token (row r, col c) holds values ordered (channel, ph, pw) of the 2x2 patch at (2r, 2c)
    b, r, c = 1, 2, 1
    expected = torch.stack([latent[b, ch, 2 * r + ph, 2 * c + pw] for ch in range(8) for ph in range(2) for pw in range(2)])
    assert torch.equal(tokens[b, r * 2 + c], expected)
    assert torch.equal(unpatchify(tokens, 6, 4), latent)
    ids = music_ids(2, 6, 4)
    assert ids.shape == (2, 6, 3) and ids[0, r * 2 + c].tolist() == [0.0, r, c]
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 8, 5, 4))


def test_paper_size_forward_shape_on_meta():
    """A full-size forward shape-checks at the paper setting without allocating (meta device)."""
    config = SIZES["small"]
    with torch.device("meta"):
        model = FluxMusicTransformer(config)
        out = model(torch.empty(1, 1024, 32), music_ids(1, 256, 16), torch.empty(1, 256, 4096),
                    text_ids(1, 256), torch.empty(1), torch.empty(1, 768))
    assert out.shape == (1, 1024, 32)


def test_bad_config_is_one_line_error():
    from fluxbench import FluxbenchError

    with pytest.raises(FluxbenchError, match="axes_dim"):
        FluxMusicConfig(hidden_size=64, num_heads=4, axes_dim=[4, 4, 4])
    with pytest.raises(FluxbenchError, match="unknown field"):
        FluxMusicConfig.from_dict({"hidden": 64})


def test_backward_reaches_every_parameter():
    """Training needs gradients through every path (an in-place op on a saved tensor would break this)."""
    config = SIZES["tiny"]
    model = FluxMusicTransformer(config)
    batch, height, width, n_text = 2, 8, 4, 3
    out = model(torch.randn(batch, 8, config.in_channels), music_ids(batch, height, width),
                torch.randn(batch, n_text, config.context_in_dim), text_ids(batch, n_text), torch.rand(batch),
                torch.randn(batch, config.vec_in_dim))
    out.square().mean().backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_weights_cast_once_compute_what_autocast_computes(golden):
    """Sampling casts the weights once (norm scales stay float32) instead of autocast re-casting them every
    forward; the forward must round exactly where autocast rounds, so the outputs agree to the last bits."""
    import copy

    from fluxbench.models.fluxmusic.transformer import RMSNorm, cast_for_inference

    tensors, meta, state = golden
    model = FluxMusicTransformer(FluxMusicConfig(**meta["config"])).eval().requires_grad_(False)
    model.load_state_dict(state)
    inputs = [tensors[f"input.{name}"] for name in ("x", "img_ids", "txt", "txt_ids", "t", "y")]
    cast = cast_for_inference(copy.deepcopy(model), torch.bfloat16)
    assert all(p.dtype == (torch.float32 if isinstance(m, RMSNorm) else torch.bfloat16)
               for m in cast.modules() for p in m.parameters(recurse=False))
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(*inputs)
        once = cast(*inputs)
        full = model(*inputs)
    assert once.dtype == autocast.dtype == torch.bfloat16
    scale = full.abs().max()
    assert torch.equal(once, autocast)
    assert (once.float() - full).abs().max() <= 0.1 * scale  # and still the model's answer
