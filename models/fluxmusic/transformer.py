"""The FluxMusic transformer: double-stream (text | music) blocks, then single-stream blocks.

Module and parameter names follow the released checkpoints exactly (`img_in`, `double_blocks.N.img_attn.qkv`,
`single_blocks.N.linear1`, `final_layer.adaLN_modulation.1`, ...), so their `ema` state dicts load strictly.
The computation equals the official forward; it is organised for speed: rotary positions are complex
rotations built once per forward, both streams' projections are joined once per block (per-token RMSNorm
scales instead of three concatenations), the single block's second linear accumulates two products instead
of concatenating, and element-wise steps are fused (addcmul).

Each block's forward reads as the maths it computes, with the steps named once below: `modulate` ((1 + scale)
* LayerNorm(x) + shift), `attention` (QK-norm, RoPE, SDPA over the fused qkv projection) and `gated_residual`
(x + gate * branch).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fluxbench.models.fluxmusic.configs import PATCH, TIME_EMBED_DIM, FluxMusicConfig

__all__ = ["FluxMusicTransformer", "cast_for_inference", "patchify", "unpatchify", "music_ids", "text_ids",
           "timestep_embedding"]


# ---- token layout ---------------------------------------------------------------------------------------
def patchify(latent: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, (H/2)(W/2), C*4], token order row-major over the patch grid, values (c, ph, pw)."""
    b, c, h, w = latent.shape
    if h % PATCH or w % PATCH:
        raise ValueError(f"latent height and width must be even for 2x2 patches, got {h} x {w}")
    x = latent.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpatchify(tokens: Tensor, height: int, width: int) -> Tensor:
    """Inverse of `patchify` for a latent of `height` x `width`."""
    b, n, d = tokens.shape
    gh, gw, c = height // PATCH, width // PATCH, d // (PATCH * PATCH)
    if gh * gw != n:
        raise ValueError(f"{n} tokens do not form a {height} x {width} latent")
    x = tokens.reshape(b, gh, gw, c, PATCH, PATCH)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, height, width)


def music_ids(batch: int, height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Position ids (0, row, col) of the 2x2 patch grid of a `height` x `width` latent: [B, N, 3]."""
    gh, gw = height // PATCH, width // PATCH
    ids = torch.zeros(gh, gw, 3, device=device)
    ids[..., 1] = torch.arange(gh, device=device)[:, None]
    ids[..., 2] = torch.arange(gw, device=device)[None, :]
    return ids.reshape(1, gh * gw, 3).expand(batch, -1, -1).contiguous()


def text_ids(batch: int, tokens: int, device: torch.device | str | None = None) -> Tensor:
    return torch.zeros(batch, tokens, 3, device=device)


# ---- embeddings -----------------------------------------------------------------------------------------
def timestep_embedding(t: Tensor, dim: int = TIME_EMBED_DIM, max_period: float = 10_000.0, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000), [cos | sin] halves."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (scale * t)[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding.to(t.dtype) if torch.is_floating_point(t) else embedding


def rotary_tables(ids: Tensor, axes_dim: list[int], theta: float) -> Tensor:
    """Unit complex rotations [B, L, 1, head_dim/2] for positions `ids` [B, L, n_axes] (angles in float64)."""
    angles = []
    for axis, dim in enumerate(axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
        angles.append(ids[..., axis, None].double() * omega)
    angle = torch.cat(angles, dim=-1).unsqueeze(2)
    return torch.polar(torch.ones_like(angle), angle).to(torch.complex64)


def apply_rotary(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate consecutive pairs (x0, x1) of the last axis of x [B, L, H, D]: one complex product per pair."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


# ---- parts with weights (names mirror the checkpoint) -----------------------------------------------------
class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden)
        self.out_layer = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    """The learned scale of a query or key RMS norm; `attention` applies it with `_rms_normalize`."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)


class ModulationOut(NamedTuple):
    """One adaLN modulation: x -> (1 + scale) * LayerNorm(x) + shift before a sub-layer, and the gate of its
    residual branch (None for the final layer, which is no residual)."""

    shift: Tensor
    scale: Tensor
    gate: Tensor | None


class Modulation(nn.Module):
    """Projects the conditioning vector to `triples` (shift, scale, gate) triples; `lin` sees silu(vec)."""

    def __init__(self, dim: int, triples: int):
        super().__init__()
        self.triples = triples
        self.lin = nn.Linear(dim, 3 * triples * dim)

    def forward(self, vec_act: Tensor) -> list[ModulationOut]:
        chunks = self.lin(vec_act)[:, None, :].chunk(3 * self.triples, dim=-1)  # one linear for all triples
        return [ModulationOut(*chunks[3 * i: 3 * i + 3]) for i in range(self.triples)]


class StreamAttention(nn.Module):
    """Per-stream projections of a double block (`qkv`, `norm`, `proj`)."""

    def __init__(self, dim: int, qkv_bias: bool, head_dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm = QKNorm(head_dim)
        self.proj = nn.Linear(dim, dim)


# ---- the steps of a block --------------------------------------------------------------------------------
def modulate(x: Tensor, mod: ModulationOut) -> Tensor:
    """(1 + scale) * LayerNorm(x) + shift. Normalised and modulated in float32 (one fused multiply-add) and
    rounded once to the stream's dtype, as autocast does over float32 weights; a no-op cast in float32."""
    return torch.addcmul(mod.shift, F.layer_norm(x.float(), (x.shape[-1],), eps=1e-6), 1 + mod.scale).to(x.dtype)


def gated_residual(x: Tensor, gate: Tensor, branch: Tensor) -> Tensor:
    """x + gate * branch (one fused multiply-add)."""
    return torch.addcmul(x, gate, branch)


def _rms_normalize(x: Tensor) -> Tensor:
    """x / rms(x) over the last axis, computed in float32 (the scale is applied by the caller)."""
    x32 = x.float()
    # mean of squares from one norm reduction (a pass less than square-then-mean)
    mean_square = torch.linalg.vector_norm(x32, dim=-1, keepdim=True).square() / x.shape[-1]
    return (x32 * torch.rsqrt(mean_square + 1e-6)).to(x.dtype)


def qk_norm(x: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """RMSNorm of queries or keys: x / rms(x) * scale, the product in float32 when the scale is, rounded once."""
    return (_rms_normalize(x) * scale).to(dtype)


def attention(qkv: Tensor, heads: int, q_scale: Tensor, k_scale: Tensor, rotation: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v over the whole sequence, from the output of a fused qkv projection
    [B, L, 3*H*D]: q and k RMS-normalised, then rotated (RoPE); the output is [B, L, H*D].

    q_scale / k_scale are the RMSNorm scales, [D] or per token [L, 1, D] (a double block's two streams).
    """
    q, k, v = qkv.unflatten(-1, (3, heads, -1)).unbind(2)  # the fused projection split: [B, L, H, D] views
    q = apply_rotary(qk_norm(q, q_scale, v.dtype), rotation)
    k = apply_rotary(qk_norm(k, k_scale, v.dtype), rotation)
    # SDPA: PyTorch's fused scaled-dot-product attention (softmax(q k^T / sqrt(D)) v), on [B, H, L, D]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2)


# ---- blocks -----------------------------------------------------------------------------------------------
class DoubleStreamBlock(nn.Module):
    """Text and music keep their own weights (modulation, qkv, proj, MLP) and attend jointly over [text; music]."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        head_dim, mlp_hidden = hidden // heads, int(hidden * mlp_ratio)
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", Modulation(hidden, triples=2))
            setattr(self, f"{stream}_attn", StreamAttention(hidden, qkv_bias, head_dim))
            setattr(self, f"{stream}_mlp", nn.Sequential(
                nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden)))

    def _per_token_scales(self, n_txt: int, n_img: int) -> tuple[Tensor, Tensor]:
        """The query and key RMSNorm scales of each token of [text; music]: each stream's own, [L, 1, D]."""
        def joint(txt_norm: RMSNorm, img_norm: RMSNorm) -> Tensor:
            d = txt_norm.scale.shape[0]
            return torch.cat((txt_norm.scale.expand(n_txt, 1, d), img_norm.scale.expand(n_img, 1, d)))

        return (joint(self.txt_attn.norm.query_norm, self.img_attn.norm.query_norm),
                joint(self.txt_attn.norm.key_norm, self.img_attn.norm.key_norm))

    def forward(self, img: Tensor, txt: Tensor, vec_act: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor]:
        img_mod1, img_mod2 = self.img_mod(vec_act)  # before attention, before the MLP
        txt_mod1, txt_mod2 = self.txt_mod(vec_act)
        n_txt = txt.shape[1]

        # attend: each stream modulated and projected by its own fused qkv linear, then one joint sequence
        txt_qkv = self.txt_attn.qkv(modulate(txt, txt_mod1))
        img_qkv = self.img_attn.qkv(modulate(img, img_mod1))
        q_scale, k_scale = self._per_token_scales(n_txt, img.shape[1])
        attn = attention(torch.cat((txt_qkv, img_qkv), dim=1), self.heads, q_scale, k_scale, rotation)
        txt_attn, img_attn = attn[:, :n_txt], attn[:, n_txt:]

        # music: gated residual of the attention output, then of the MLP of the modulated result
        img = gated_residual(img, img_mod1.gate, self.img_attn.proj(img_attn))
        img = gated_residual(img, img_mod2.gate, self.img_mlp(modulate(img, img_mod2)))
        # text: the same with its own weights
        txt = gated_residual(txt, txt_mod1.gate, self.txt_attn.proj(txt_attn))
        txt = gated_residual(txt, txt_mod2.gate, self.txt_mlp(modulate(txt, txt_mod2)))
        return img, txt


class SingleStreamBlock(nn.Module):
    """Attention and MLP side by side over the joint sequence, with fused linears: linear1 = [qkv | mlp_in],
    linear2 = [attn_out | mlp_out] -> hidden."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads, self.hidden = heads, hidden
        self.mlp_hidden = int(hidden * mlp_ratio)
        self.linear1 = nn.Linear(hidden, 3 * hidden + self.mlp_hidden)
        self.linear2 = nn.Linear(hidden + self.mlp_hidden, hidden)
        self.norm = QKNorm(hidden // heads)
        self.modulation = Modulation(hidden, triples=1)

    def forward(self, x: Tensor, vec_act: Tensor, rotation: Tensor) -> Tensor:
        (mod,) = self.modulation(vec_act)
        # modulate, then the fused linear1: qkv of the attention and the MLP's input in one projection
        qkv, mlp_in = self.linear1(modulate(x, mod)).split([3 * self.hidden, self.mlp_hidden], dim=-1)
        attn = attention(qkv, self.heads, self.norm.query_norm.scale, self.norm.key_norm.scale, rotation)
        mlp = F.gelu(mlp_in, approximate="tanh")
        # the fused linear2 of [attn | mlp], as two accumulated products: no concatenated copy
        weight = self.linear2.weight
        out = F.linear(attn, weight[:, : self.hidden], self.linear2.bias)
        out = torch.addmm(out.flatten(0, 1), mlp.flatten(0, 1), weight[:, self.hidden:].t())
        return gated_residual(x, mod.gate, out.view_as(x))


class LastLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec)[:, None, :].chunk(2, dim=-1)  # silu(vec) -> shift, scale; no gate
        return self.linear(modulate(x, ModulationOut(shift, scale, gate=None)))


# ---- the model -----------------------------------------------------------------------------------------
class FluxMusicTransformer(nn.Module):
    """forward(x, img_ids, txt, txt_ids, t, y) -> velocity (or epsilon) in token space [B, N, in_channels]."""

    def __init__(self, config: FluxMusicConfig | dict):
        super().__init__()
        config = config if isinstance(config, FluxMusicConfig) else FluxMusicConfig.from_dict(dict(config))
        self.config = config
        h = config.hidden_size
        self.img_in = nn.Linear(config.in_channels, h)
        self.time_in = MLPEmbedder(TIME_EMBED_DIM, h)
        self.vector_in = MLPEmbedder(config.vec_in_dim, h)
        self.txt_in = nn.Linear(config.context_in_dim, h)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(h, config.num_heads, config.mlp_ratio, config.qkv_bias) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(h, config.num_heads, config.mlp_ratio) for _ in range(config.depth_single_blocks))
        self.final_layer = LastLayer(h, config.in_channels)

    def forward(self, x: Tensor, img_ids: Tensor, txt: Tensor, txt_ids: Tensor, t: Tensor, y: Tensor) -> Tensor:
        if x.ndim != 3 or txt.ndim != 3:
            raise ValueError(f"x and txt must be [batch, tokens, features], got {tuple(x.shape)} and {tuple(txt.shape)}")
        dtype = self.img_in.weight.dtype  # float32, or the half type of `cast_for_inference`
        # embed: music tokens, text tokens, and one conditioning vector from the time and the pooled text
        img = self.img_in(x.to(dtype))
        vec = self.time_in(timestep_embedding(t).to(dtype)) + self.vector_in(y.to(dtype))
        txt = self.txt_in(txt.to(dtype))
        rotation = rotary_tables(torch.cat((txt_ids, img_ids), dim=1), self.config.axes_dim, self.config.theta)
        vec_act = F.silu(vec)  # every modulation sees silu(vec); computed once

        for block in self.double_blocks:  # text and music apart, attending jointly
            img, txt = block(img, txt, vec_act, rotation)
        joint = torch.cat((txt, img), dim=1)
        for block in self.single_blocks:  # one sequence [text; music]
            joint = block(joint, vec_act, rotation)
        return self.final_layer(joint[:, txt.shape[1]:], vec)  # the music tokens, projected back to patches

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def cast_for_inference(model: FluxMusicTransformer, dtype: torch.dtype) -> FluxMusicTransformer:
    """Weights cast once to `dtype` (float16 / bfloat16) for sampling without autocast, which re-casts every
    weight on every forward when gradients are off. The RMSNorm scales stay float32: q and k are scaled in
    float32 and rounded once, exactly as under autocast. Inputs are cast by `forward`; the output is `dtype`."""
    for module in model.modules():
        if isinstance(module, RMSNorm):
            continue
        for name, param in module.named_parameters(recurse=False):
            param.data = param.data.to(dtype)
    return model
