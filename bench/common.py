"""What the benchmarks share: timing (device-synchronised, interleaved), the machine line, the hub components'
configs at their real and at tiny sizes, random transformer inputs, and CNN14 with random weights.

Imported by the scripts beside it (`python bench/<script>.py` puts this folder on the path).
"""

from __future__ import annotations

import os
import statistics
import time
import types
from typing import Any, Callable

import torch
import torch.nn.functional as F


# ---- timing -----------------------------------------------------------------------------------------------
def synchronise(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int, device: torch.device | None = None
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """(seconds of each call per round, each call's last result): the calls run round-robin so that drift and
    machine load hit all alike, the device synchronised around each call."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            synchronise(device)
            started = time.perf_counter()
            results[name] = call()
            synchronise(device)
            times[name].append(time.perf_counter() - started)
    return times, results


def timed(call: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `call()` after `warmup` calls."""
    for _ in range(warmup):
        call()
    return statistics.median(interleaved({"call": call}, repeats, device)[0]["call"])


def machine_load() -> str:
    """Torch threads, CPUs and the load average now (another job on the cores inflates absolute times)."""
    return (f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}")


# ---- FluxMusic's components -------------------------------------------------------------------------------
# Widths of the hub components: "real" from the hub repos' config.json files (T5 v1.1 XXL encoder, the CLAP
# RoBERTa text tower of laion/larger_clap_music, the AudioLDM 2 VAE and HiFi-GAN vocoder); "tiny" stand-ins of
# the same classes and code paths.
COMPONENT_SIZES = {
    "real": {"t5": dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                        relative_attention_num_buckets=32),
             "clap": dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, max_position_embeddings=514),
             "vae": dict(block_out_channels=(128, 256, 512), layers_per_block=2, norm_num_groups=32),
             "vocoder": dict(upsample_initial_channel=1024, upsample_kernel_sizes=[16, 16, 8, 4, 4],
                             resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3)},
    "tiny": {"t5": dict(vocab_size=1000, d_model=48, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                        relative_attention_num_buckets=8),
             "clap": dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=300),
             "vae": dict(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4),
             "vocoder": dict(upsample_initial_channel=64, upsample_kernel_sizes=[10, 8, 4, 4, 4],
                             resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]])},
}


def hub_configs(tiny: bool = False) -> dict:
    """The configs of the text encoders, the VAE and the vocoder FluxMusic generates with."""
    from transformers import ClapTextConfig, SpeechT5HifiGanConfig, T5Config

    sizes = COMPONENT_SIZES["tiny" if tiny else "real"]
    return {
        "t5": T5Config(feed_forward_proj="gated-gelu", **sizes["t5"]),
        "clap": ClapTextConfig(type_vocab_size=1, **sizes["clap"]),
        "vae": dict(in_channels=1, out_channels=1, latent_channels=8, down_block_types=("DownEncoderBlock2D",) * 3,
                    up_block_types=("UpDecoderBlock2D",) * 3, **sizes["vae"]),
        "vocoder": SpeechT5HifiGanConfig(model_in_dim=64, sampling_rate=16000, upsample_rates=[5, 4, 2, 2, 2],
                                         normalize_before=False, **sizes["vocoder"]),
    }


def forward_inputs(config, batch: int, music_tokens: int, text_tokens: int, device: torch.device | str,
                   dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Seeded random inputs of one transformer forward (the latent 2x2 patches over a width of 16); the floating
    inputs in `dtype`, the position ids in float32."""
    from fluxbench.models.fluxmusic.transformer import music_ids, text_ids

    g = torch.Generator().manual_seed(0)
    height = 2 * music_tokens // 8
    return dict(x=torch.randn(batch, music_tokens, config.in_channels, generator=g).to(device, dtype),
                img_ids=music_ids(batch, height, 16, device),
                txt=torch.randn(batch, text_tokens, config.context_in_dim, generator=g).to(device, dtype),
                txt_ids=text_ids(batch, text_tokens, device), t=torch.rand(batch, generator=g).to(device, dtype),
                y=torch.randn(batch, config.vec_in_dim, generator=g).to(device, dtype))


# ---- scoring networks -------------------------------------------------------------------------------------
def random_cnn14(all_batch_norm_terms: bool = True, name: str = "panns-16k", seed: int = 0) -> torch.nn.Module:
    """PANNs CNN14 of the real size with random weights and random BatchNorm running variances (fresh ones would
    make every BatchNorm almost the identity, which folding would then hide); with `all_batch_norm_terms`, the
    running means and the affine weights and biases too."""
    from fluxbench.protocols.metrics.backbones.panns import CNN14_CONFIGS, build_cnn14

    torch.manual_seed(seed)
    model = build_cnn14(CNN14_CONFIGS[name]).eval().requires_grad_(False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                if all_batch_norm_terms:
                    module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                if all_batch_norm_terms:
                    module.weight.normal_(1, 0.2)
                    module.bias.normal_(0, 0.2)
    return model


def _checkpoint_layout_forward(block, x, pool):
    """The conv block's forward as the checkpoint has it: BatchNorm after each convolution, ReLU out of place."""
    x = F.relu(block.bn1(block.conv1(x)))
    x = F.relu(block.bn2(block.conv2(x)))
    return F.avg_pool2d(x, pool) if pool > 1 else x


def with_checkpoint_layout(cnn14: torch.nn.Module) -> torch.nn.Module:
    """`cnn14` running its conv blocks as the reference implementation does (before BatchNorm folding)."""
    for index in range(6):
        block = getattr(cnn14, f"conv_block{index + 1}")
        block.forward = types.MethodType(_checkpoint_layout_forward, block)
    return cnn14
