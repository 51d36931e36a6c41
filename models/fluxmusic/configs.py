"""FluxMusic sizes and the arithmetic on them (parameters, MACs) in plain Python.

Nothing here imports torch, so listings stay instant; tests check every number against a real
instantiation on the meta device and against the released checkpoints' key manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fluxbench import FluxbenchError

# Paper setting: 10.24 s -> VAE latent 8 x 256 x 16 -> 2x2 patches -> 128 x 8 = 1024 music tokens;
# T5 text padded to 256 tokens.
PATCH = 2
TEXT_TOKENS = 256
TIME_EMBED_DIM = 256
SPEC_FILE = "fluxmusic.json"  # the file that makes a folder a trained FluxMusic model


@dataclass
class FluxMusicConfig:
    """Hyper-parameters under the official names (FluxParams), so official configs load as-is."""

    in_channels: int = 32
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 512
    mlp_ratio: float = 4.0
    num_heads: int = 16
    depth: int = 8
    depth_single_blocks: int = 16
    axes_dim: list[int] = field(default_factory=lambda: [8, 12, 12])
    theta: int = 10_000
    qkv_bias: bool = True
    # The official configs set this, but no guidance embedder is built (no `guidance_in` weights).
    guidance_embed: bool = True

    def __post_init__(self) -> None:
        self.axes_dim = list(self.axes_dim)
        if self.hidden_size % self.num_heads:
            raise FluxbenchError(
                f"FluxMusicConfig: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if sum(self.axes_dim) != self.head_dim:
            raise FluxbenchError(
                f"FluxMusicConfig: axes_dim {self.axes_dim} sums to {sum(self.axes_dim)}, expected the head "
                f"dimension {self.head_dim}"
            )
        if any(d % 2 for d in self.axes_dim):
            raise FluxbenchError(f"FluxMusicConfig: every axes_dim entry must be even, got {self.axes_dim}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FluxMusicConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FluxbenchError(f"FluxMusicConfig: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def latent_channels(self) -> int:
        return self.in_channels // (PATCH * PATCH)

    # ---- arithmetic -------------------------------------------------------------------------------
    def parameter_count(self) -> int:
        h, m = self.hidden_size, self.mlp_hidden
        linear = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
        embedders = (
            linear(self.in_channels, h)
            + linear(TIME_EMBED_DIM, h) + linear(h, h)
            + linear(self.vec_in_dim, h) + linear(h, h)
            + linear(self.context_in_dim, h)
        )
        qk_norm = 2 * self.head_dim
        stream = linear(h, 6 * h) + linear(h, 3 * h, self.qkv_bias) + qk_norm + linear(h, h) + linear(h, m) + linear(m, h)
        single = linear(h, 3 * h + m) + linear(h + m, h) + qk_norm + linear(h, 3 * h)
        final = linear(h, self.in_channels) + linear(h, 2 * h)
        return embedders + self.depth * 2 * stream + self.depth_single_blocks * single + final

    def macs(self, music_tokens: int = 1024, text_tokens: int = TEXT_TOKENS, batch: int = 1) -> dict[str, int]:
        """Operation counts of one forward in the convention of `thop.profile`.

        thop counts leaf modules only: nn.Linear as in_features x output elements (multiply-accumulates),
        a LayerNorm without affine weights as 2 x input elements; RMSNorm, activations, RoPE and the
        attention product itself (a functional call) count zero. Returned separately, plus their sum.
        """
        h, m, n, l = self.hidden_size, self.mlp_hidden, music_tokens, text_tokens
        per_sample = TIME_EMBED_DIM * h + h * h + self.vec_in_dim * h + h * h  # time_in, vector_in
        per_sample += self.depth * 2 * (h * 6 * h) + self.depth_single_blocks * (h * 3 * h) + h * 2 * h
        per_token_double = h * 3 * h + h * h + 2 * h * m
        per_token_single = h * (3 * h + m) + (h + m) * h
        linear = (
            per_sample
            + n * self.in_channels * h + l * self.context_in_dim * h
            + self.depth * (n + l) * per_token_double
            + self.depth_single_blocks * (n + l) * per_token_single
            + n * h * self.in_channels
        )
        layer_norm = 2 * h * (self.depth * 2 * (n + l) + self.depth_single_blocks * (n + l) + n)
        # Attention products, not counted by thop but real work: QK^T and AV over the joint sequence.
        attention = (self.depth + self.depth_single_blocks) * 2 * (n + l) ** 2 * h
        return {
            "linear": batch * linear,
            "layer_norm": batch * layer_norm,
            "thop_total": batch * (linear + layer_norm),
            "attention": batch * attention,
        }

    def paper_gflops(self) -> float:
        """Table 1's GFLOPs: 2 x thop total at batch 1, 1024 music + 256 text tokens, cut (not rounded) to 0.1."""
        value = 2 * self.macs()["thop_total"] / 1e9
        return math.floor(value * 10) / 10


SIZES: dict[str, FluxMusicConfig] = {
    "small": FluxMusicConfig(hidden_size=512, num_heads=16, depth=8, depth_single_blocks=16, axes_dim=[8, 12, 12]),
    "base": FluxMusicConfig(hidden_size=768, num_heads=16, depth=12, depth_single_blocks=24, axes_dim=[16, 16, 16]),
    "large": FluxMusicConfig(hidden_size=1024, num_heads=16, depth=12, depth_single_blocks=24, axes_dim=[16, 24, 24]),
    "giant": FluxMusicConfig(hidden_size=1408, num_heads=16, depth=16, depth_single_blocks=32, axes_dim=[16, 36, 36]),
    # The 2M-step release: giant width, but base depth. Not the Table-1 giant.
    "giant_full": FluxMusicConfig(hidden_size=1408, num_heads=16, depth=12, depth_single_blocks=24, axes_dim=[16, 36, 36]),
    # For tests (same shape as the golden vectors' model, real conditioning widths vary).
    "tiny": FluxMusicConfig(
        vec_in_dim=32, context_in_dim=48, hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[4, 6, 6]
    ),
    # The offline demo: as wide as its 128 values per token (2 x 16 mel fold, 2 x 2 patches), since the
    # residual stream must carry the noise it predicts; at tiny's width 64 the 128-value tokens of a 4 x 8
    # fold could not pass through and samples stayed noise.
    "demo": FluxMusicConfig(
        vec_in_dim=32, context_in_dim=48, hidden_size=128, num_heads=4, depth=2, depth_single_blocks=2,
        axes_dim=[8, 12, 12]
    ),
}

# Official release file per size (hub repo feizhengcong/FluxMusic).
CHECKPOINT_FILES = {
    "small": "musicflow_s.pt",
    "base": "musicflow_b.pt",
    "large": "musicflow_l.pt",
    "giant": "musicflow_g.pt",
    "giant_full": "musicflow_g_full.pt",
}
HUB_REPO = "feizhengcong/FluxMusic"


def get_config(size: str) -> FluxMusicConfig:
    if size not in SIZES:
        raise FluxbenchError(f"unknown FluxMusic size {size!r}; known: {', '.join(SIZES)}")
    return FluxMusicConfig.from_dict(SIZES[size].to_dict())
