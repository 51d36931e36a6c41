"""Peak memory of FluxMusic generation per size: an analytic estimate, and a measurement on a GPU.

    python bench/bench_generation.py [--batch 1 4] [--steps 50] [--measure] [--sizes small base ...]
                                     [--sequential-guidance] [--keep-text-encoders]

Parameter counts are exact: every component is instantiated on the meta device from in-code copies of the
real configs (T5 v1.1 XXL encoder, the CLAP RoBERTa text tower, the AudioLDM 2 VAE and HiFi-GAN vocoder, the
FluxMusic sizes). Generation runs in three phases and the peak is the largest ("now", staged loading):

- encode: T5 + CLAP weights (fp16 on GPU, as the official sampler) + their activations, nothing else loaded;
- denoise: transformer weights cast once to fp16 + VAE/vocoder weights (fp32, resident after the first
  decode) + one forward's live tensors over 1024 music + 256 text tokens for 2B rows (conditional and
  unconditional in one batch; B rows with `--sequential-guidance`);
- decode: the same weights + VAE decoder and vocoder activations at batch B.

"before" is the earlier layout: transformer (fp32 under fp16 autocast), VAE and vocoder resident while the
text encoders encode, guidance as two passes of B. With the default release of the text encoders after
encoding, they do not count in the later phases; with `--keep-text-encoders` they do. The activation terms
are upper estimates of the live tensors (see `activation_bytes`); the CUDA context (~0.5 GB) and allocator
slack are not included.

`--measure` (CUDA only) builds every component at its real size with random weights and runs the real
pipeline (`FluxMusicModel.generate`, 10.24 s clips; the transformer is built at the second stage, in fp16,
as a released checkpoint would load), recording `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from common import hub_configs
from fluxbench.models.fluxmusic.configs import SIZES, TEXT_TOKENS

GIB = 1024**3
MUSIC_TOKENS = 1024  # 10.24 s -> latent 8 x 256 x 16 -> 128 x 8 patches
SAMPLES = 163_840
MEL_FRAMES = 1024


def build_components(configs: dict, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32,
                     names: tuple[str, ...] = ("t5", "clap", "vae", "vocoder")) -> dict[str, torch.nn.Module]:
    """Randomly initialised components of the real sizes, allocated directly in `dtype` on `device`."""
    from diffusers import AutoencoderKL
    from transformers import ClapTextModel, SpeechT5HifiGan, T5EncoderModel

    makers = {"t5": lambda: T5EncoderModel(configs["t5"]), "clap": lambda: ClapTextModel(configs["clap"]),
              "vae": lambda: AutoencoderKL(**configs["vae"]), "vocoder": lambda: SpeechT5HifiGan(configs["vocoder"])}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return {name: makers[name]().eval() for name in names}
    finally:
        torch.set_default_dtype(previous)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def activation_bytes(size: str, batch: int, configs: dict, half: bool, guidance_rows: int = 1) -> dict[str, int]:
    """Upper estimates of the live tensors in each phase (`guidance_rows` = 2: both guidance passes at once)."""
    act = 2 if half else 4
    config = SIZES[size]
    tokens, h, m = MUSIC_TOKENS + TEXT_TOKENS, config.hidden_size, config.mlp_hidden
    # One single-stream block: input and residual (2h), fused QKV+MLP output (3h + m), MLP activation (m),
    # attention output and the concatenation fed to the second linear (h + m), plus q, k, v views (3h).
    denoise = guidance_rows * batch * tokens * (2 * h + 3 * h + m + m + h + m + 3 * h) * act
    t5 = configs["t5"]
    encode = batch * TEXT_TOKENS * (3 * t5.d_model + 3 * t5.d_ff) * act + \
        batch * t5.num_heads * TEXT_TOKENS**2 * act  # attention scores (T5 uses no fused kernel)
    # VAE decoder at full mel resolution: 128 channels x 1024 x 64 in fp32, about 4 tensors live; the
    # vocoder's widest stage holds channels x length = 1024 x 1024 .. 32 x 163840 (~5.2M values), 3 resblock
    # branches + input + output live.
    vae = batch * 4 * configs["vae"]["block_out_channels"][0] * MEL_FRAMES * 64 * 4
    vocoder = batch * 5 * 32 * SAMPLES * 4
    return {"encode": encode, "denoise": denoise, "decode": max(vae, vocoder)}


def estimate(size: str, batch: int, configs: dict, counts: dict[str, int], keep: bool, staged: bool = True,
             batched_guidance: bool = True) -> dict[str, float]:
    """Bytes per phase in GiB; staged=False is the earlier layout (everything resident, fp32 transformer)."""
    half = 2  # fp16 text encoders and activations on GPU
    transformer = SIZES[size].parameter_count() * (half if staged else 4)
    codec = (counts["vae"] + counts["vocoder"]) * 4
    text = (counts["t5"] + counts["clap"]) * half
    acts = activation_bytes(size, batch, configs, half=True, guidance_rows=2 if staged and batched_guidance else 1)
    phases = {
        "encode": text + acts["encode"] + (0 if staged else transformer + codec),
        "denoise": transformer + codec + acts["denoise"] + (text if keep else 0),
        "decode": transformer + codec + acts["decode"] + (text if keep else 0),
    }
    return {"weights": (transformer + codec + text) / GIB, **{k: v / GIB for k, v in phases.items()},
            "peak": max(phases.values()) / GIB}


def random_transformer(config, device: str | torch.device, dtype: torch.dtype):
    """A randomly initialised transformer built directly on `device` in `dtype` (RMSNorm scales float32), the
    layout `cast_for_inference` gives a loaded checkpoint."""
    from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer, RMSNorm

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxMusicTransformer(config)
    finally:
        torch.set_default_dtype(previous)
    for module in model.modules():
        if isinstance(module, RMSNorm):
            module.float()
    return model.eval().requires_grad_(False)


def random_model(config, configs: dict, device: str | torch.device = "cuda", batch: int = 4, keep: bool = False,
                 batched_guidance: bool = True, dtype: torch.dtype | None = None):
    """The real pipeline (`FluxMusicModel`) over random components of the sizes in `config` / `configs`: text
    encoders built when first used, the transformer when the text is encoded, the codec moved at first decode."""
    from fluxbench.models.fluxmusic.checkpoint import DeferredTransformer
    from fluxbench.models.fluxmusic.conditioner import T5ClapConditioner, TextConditioner, TextConditioning
    from fluxbench.models.fluxmusic.latent import AudioLDM2Codec
    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel
    from fluxbench.runtime import resolve_dtype

    device = torch.device(device)
    text_dtype = torch.float16 if device.type == "cuda" else torch.float32

    class RandomTextConditioner(T5ClapConditioner):
        """The T5 + CLAP conditioner with random encoders (no tokenizer: random token ids; no disk cache)."""

        def __init__(self) -> None:
            super().__init__(device=device, context_dim=configs["t5"].d_model, vector_dim=configs["clap"].hidden_size)

        def _load_t5(self):
            if self._t5 is None:
                self._t5 = (None, build_components(configs, device, text_dtype, ("t5",))["t5"])
            return self._t5

        def _load_clap(self):
            if self._clap is None:
                self._clap = (None, build_components(configs, device, text_dtype, ("clap",))["clap"])
            return self._clap

        def _tokens(self, tokenizer, captions, length):
            return torch.randint(2, 1000, (len(captions), length), device=device), None

        def encode_many(self, captions, batch_size):
            return TextConditioner.encode_many(self, captions, batch_size)

        def cached(self, text):
            return TextConditioning(self._encode_t5([text]), self._encode_clap([text]))

    compute = resolve_dtype(dtype, device)
    parts = build_components(configs, "cpu", names=("vae", "vocoder"))
    transformer = DeferredTransformer(config, lambda: random_transformer(config, device, compute))
    return FluxMusicModel(transformer, RandomTextConditioner(), AudioLDM2Codec(parts["vae"], parts["vocoder"]),
                          name="random", device=device, dtype=compute, keep_text_encoders=keep, batch_size=batch,
                          batched_guidance=batched_guidance)


def measure(size: str, batch: int, steps: int, keep: bool, batched_guidance: bool = True) -> float:
    """Peak GiB allocated by the real pipeline on CUDA with random weights of the real sizes."""
    from fluxbench.models.fluxmusic.pipeline import GenerationError

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = random_model(SIZES[size], hub_configs(), "cuda", batch, keep, batched_guidance)
    try:
        model.generate(["x"] * batch, duration=SAMPLES / 16000, steps=steps)
    except GenerationError:
        pass  # random weights may overflow fp16 into NaN; the memory was used all the same
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / GIB
    del model
    torch.cuda.empty_cache()
    return peak


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "base", "large", "giant", "giant_full"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--steps", type=int, default=2, help="sampling steps when measuring (peak does not grow)")
    parser.add_argument("--keep-text-encoders", action="store_true")
    parser.add_argument("--sequential-guidance", action="store_true",
                        help="guidance passes one after the other (B rows instead of 2B)")
    parser.add_argument("--measure", action="store_true", help="also measure on CUDA (random weights, real sizes)")
    args = parser.parse_args(argv)
    if args.measure and not torch.cuda.is_available():
        print("--measure needs a CUDA GPU; this machine has none", file=sys.stderr)
        return 2
    configs = hub_configs()
    counts = {name: parameters(module) for name, module in build_components(configs).items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    batched = not args.sequential_guidance
    print(f"FluxMusic generation peak memory (GiB), 10.24 s clips, fp16 on GPU, text encoders "
          f"{'kept' if args.keep_text_encoders else 'released after encoding'}, guidance "
          f"{'in one batch of 2B' if batched else 'as two passes'} ({device})")
    print("component parameters: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()))
    header = ["size", "params", "batch", "peak before", "encode", "denoise", "decode", "peak now"]
    if args.measure:
        header += ["measured", "measured / est."]
    rows = []
    for size in args.sizes:
        for batch in args.batch:
            before = estimate(size, batch, configs, counts, args.keep_text_encoders, staged=False)
            value = estimate(size, batch, configs, counts, args.keep_text_encoders, True, batched)
            row = [size, f"{SIZES[size].parameter_count() / 1e6:.1f}M", str(batch), f"{before['peak']:.2f}",
                   f"{value['encode']:.2f}", f"{value['denoise']:.2f}", f"{value['decode']:.2f}",
                   f"{value['peak']:.2f}"]
            if args.measure:
                measured = measure(size, batch, args.steps, args.keep_text_encoders, batched)
                row += [f"{measured:.2f}", f"{measured / value['peak']:.2f}"]
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
