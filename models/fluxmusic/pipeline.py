"""FluxMusic text-to-music: captions -> text conditioning -> rectified-flow sampling -> latent -> waveform.

`FluxMusicModel` meets the zoo interface (`fluxbench.models.base.TextToMusicModel`). Build it from a released
size (`for_size`, what the registry's `fluxmusic-*` entries call) or from a trained-model folder
(`from_folder`). Generation runs in stages: every caption is encoded first (the hub encoders cache each
caption's embedding on disk) and the text encoders are freed (unless kept); only then is the transformer
loaded (released sizes), placed on the device and cast once to the compute dtype, and the VAE and vocoder
follow. Denoising runs in batches: each clip's starting noise comes from its own seed on the CPU, so the same
seed and settings give the same audio on the same device whatever the batch composition.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fluxbench import FluxbenchError, weights
from fluxbench.audio import fit_length
from fluxbench.models.base import DEFAULT_DURATION, GeneratedAudio, GenerationSettings, TextToMusicModel
from fluxbench.models.fluxmusic import weight_sources
from fluxbench.models.fluxmusic.conditioner import (T5ClapConditioner, TextConditioner, TextConditioning,
                                                    build_conditioner)
from fluxbench.models.fluxmusic.configs import CHECKPOINT_FILES, FluxMusicConfig, get_config
from fluxbench.models.fluxmusic.flow import get_objective
from fluxbench.models.fluxmusic.latent import (AudioLDM2Codec, LatentBounds, LatentCodec, build_codec,
                                               codec_weight_requests)
from fluxbench.models.fluxmusic.reliance import caption_reliance
from fluxbench.models.fluxmusic.transformer import cast_for_inference, music_ids, patchify, text_ids, unpatchify
from fluxbench.runtime import content_hash, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

# "paper": the paper's reported setting; "official": the released sample.py.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"steps": 50, "guidance": 3.5, "negative_prompt": ""},
    "official": {"steps": 50, "guidance": 7.0, "negative_prompt": "low quality, gentle"},
}


class GenerationError(FluxbenchError):
    pass


def item_seeds(seed: int | Sequence[int], count: int) -> list[int]:
    """One seed per prompt: an int s gives prompt i the seed s + i; a sequence is used as given."""
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(count)]
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise GenerationError(f"got {len(seeds)} seeds for {count} prompts; give one seed or one per prompt")
    return seeds


def _folder_spec(folder: Path) -> dict[str, Any]:
    """A model folder's spec, which must name its conditioner and codec."""
    from fluxbench.models.fluxmusic.checkpoint import SPEC_FILE, read_spec

    spec = read_spec(folder)
    for field in ("conditioner", "codec"):
        if not isinstance(spec.get(field), dict):
            raise GenerationError(f"{folder / SPEC_FILE}: missing field {field!r} (a dict with a 'kind')")
    return spec


class FluxMusicModel(TextToMusicModel):
    def __init__(self, transformer: torch.nn.Module, conditioner: TextConditioner, codec: LatentCodec,
                 objective: str = "rectified_flow", objective_options: dict[str, Any] | None = None,
                 name: str = "fluxmusic",
                 checksums: dict[str, str] | None = None, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, keep_text_encoders: bool = False,
                 preset: str = "paper", batch_size: int = 4, batched_guidance: bool = True,
                 latent_bounds: LatentBounds | None = None) -> None:
        config: FluxMusicConfig = transformer.config
        self.config = config
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # A module or a DeferredTransformer; placed on the device (and cast) at the first denoising step.
        self._transformer, self._transformer_placed = transformer, False
        self.conditioner, self._codec, self._codec_placed = conditioner, codec, False  # placed at first use
        # Conditional and unconditional predictions in one batch of 2B (False: two calls, half the activations).
        self.batched_guidance = bool(batched_guidance)
        if isinstance(conditioner, torch.nn.Module):
            conditioner.to(self.device).eval().requires_grad_(False)
        # The training schedule (e.g. DDPM betas) defines the sampler too, so it comes from the model folder.
        self.objective_name = objective
        self.objective = get_objective(objective, **(objective_options or {}))
        self.name, self.sample_rate = name, codec.sample_rate
        self.keep_text_encoders, self.batch_size = keep_text_encoders, int(batch_size)
        self._checksums = dict(checksums or {})
        self._provenance: dict[str, Any] = {"parameters": config.parameter_count()}
        self.preset = self._preset(preset)
        if config.in_channels != 4 * codec.latent_channels:
            raise GenerationError(f"{name}: the transformer takes {config.in_channels} values per token but the "
                                  f"codec gives {codec.latent_channels} latent channels (x4 per 2x2 patch)")
        # The per-(channel, frequency) range of the training latents, recorded by training; None for folders
        # without one (the official checkpoints), which then sample unclamped.
        self.latent_bounds = latent_bounds

    # ---- construction -----------------------------------------------------------------------------------
    @classmethod
    def for_size(cls, size: str, checkpoint: str | os.PathLike | None = None,
                 weights_dir: str | os.PathLike | None = None, t5: str = weight_sources.DEFAULT_T5,
                 clap: str = weight_sources.DEFAULT_CLAP, audioldm2: str = weight_sources.DEFAULT_AUDIOLDM2,
                 vae: str | os.PathLike | None = None, vocoder: str | os.PathLike | None = None,
                 use_t5: bool = True, use_clap: bool = True, device: str | torch.device | None = None,
                 **options: Any) -> "FluxMusicModel":
        """A released FluxMusic size with the paper's components: T5-XXL + CLAP text, AudioLDM 2 VAE + vocoder.

        Every component resolves through `fluxbench.weights` (explicit path, env var, `weights_dir`, HF cache,
        hub); when several are missing, one error lists them all. `options`: dtype, keep_text_encoders,
        preset, batch_size.
        """
        size = size.removeprefix("fluxmusic-").replace("-", "_")
        config = get_config(size)
        device = resolve_device(device)
        conditioner = T5ClapConditioner(t5, clap, use_t5=use_t5, use_clap=use_clap, weights_dir=weights_dir,
                                        device=device)
        requests = cls.weight_requests(size, checkpoint, t5, clap, audioldm2, vae, vocoder, use_t5, use_clap)
        paths = weights.resolve_all(requests, weights_dir)  # every missing component in one error
        _check_widths(config, conditioner, f"fluxmusic-{size}")

        from fluxbench.models.fluxmusic.checkpoint import DeferredTransformer, load_transformer

        transformer = DeferredTransformer(config, lambda: load_transformer(paths[0], config))
        codec = AudioLDM2Codec.load(audioldm2, vae, vocoder, weights_dir)
        checksums = {"transformer": weights.checksum(paths[0]), **conditioner.checksums(),
                     **{part: weights.checksum(path) for part, path in codec.sources.items()}}
        return cls(transformer, conditioner, codec, name=f"fluxmusic-{size.replace('_', '-')}",
                   checksums=checksums, device=device, **options)

    @classmethod
    def weight_requests(cls, size: str | None = None, checkpoint: str | os.PathLike | None = None,
                        t5: str = weight_sources.DEFAULT_T5, clap: str = weight_sources.DEFAULT_CLAP,
                        audioldm2: str = weight_sources.DEFAULT_AUDIOLDM2, vae: str | os.PathLike | None = None,
                        vocoder: str | os.PathLike | None = None, use_t5: bool = True, use_clap: bool = True,
                        folder: str | os.PathLike | None = None, **_: Any
                        ) -> list[tuple[weights.WeightSource, str | None]]:
        """Every component `for_size` (given `size`) resolves, in its order (the checkpoint first), or the hub
        components `from_folder` (given `folder`, which holds its own weights) resolves; nothing is loaded."""
        if folder is not None:
            folder = Path(folder)
            spec, requests = _folder_spec(folder), []
            if spec["conditioner"].get("kind") == T5ClapConditioner.kind:
                conditioner = T5ClapConditioner.from_spec(spec["conditioner"], folder, use_t5=use_t5, use_clap=use_clap)
                requests += conditioner.weight_requests()
            return requests + codec_weight_requests(spec["codec"], folder)
        if size is None:
            raise GenerationError("FluxMusic weights: give a released size or a model folder")
        size = size.removeprefix("fluxmusic-").replace("-", "_")
        if size in CHECKPOINT_FILES:
            checkpoint_source = weight_sources.fluxmusic_checkpoint(size)
        elif checkpoint is None:
            raise GenerationError(f"FluxMusic size {size!r} has no released checkpoint; pass checkpoint=PATH "
                                  f"(released sizes: {', '.join(CHECKPOINT_FILES)})")
        else:
            checkpoint_source = weights.WeightSource(f"FluxMusic-{size} checkpoint", "FLUXBENCH_FLUXMUSIC_CHECKPOINT",
                                                     f"FluxMusic/musicflow_{size}.pt")
        conditioner = T5ClapConditioner(t5, clap, use_t5=use_t5, use_clap=use_clap)
        return [(checkpoint_source, str(checkpoint) if checkpoint else None), *conditioner.weight_requests(),
                *AudioLDM2Codec.weight_requests(audioldm2, *(str(p) if p else None for p in (vae, vocoder)))]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, weights_dir: str | os.PathLike | None = None,
                    use_t5: bool = True, use_clap: bool = True, device: str | torch.device | None = None,
                    **options: Any) -> "FluxMusicModel":
        """A trained-model folder (fluxmusic.json + transformer.safetensors [+ conditioner.safetensors])."""
        from fluxbench.models.fluxmusic.checkpoint import SPEC_FILE, load_model_folder

        folder = Path(folder)
        spec = _folder_spec(folder)
        device = resolve_device(device)
        hub_options = {"use_t5": use_t5, "use_clap": use_clap, "weights_dir": weights_dir, "device": device}
        is_hub_text = spec["conditioner"].get("kind") == T5ClapConditioner.kind
        conditioner = build_conditioner(spec["conditioner"], folder, **(hub_options if is_hub_text else {}))
        # every missing component in one error
        weights.resolve_all(cls.weight_requests(folder=folder, use_t5=use_t5, use_clap=use_clap), weights_dir)
        transformer, spec = load_model_folder(folder)
        if is_hub_text:
            _check_widths(transformer.config, conditioner, str(folder))
        codec_options = {"weights_dir": weights_dir} if spec["codec"].get("kind") == "audioldm2" else {}
        codec = build_codec(spec["codec"], folder, **codec_options)
        checksums = {"model_folder": weights.checksum(folder)}
        if is_hub_text:
            checksums.update(conditioner.checksums())
        checksums.update({part: weights.checksum(path) for part, path in getattr(codec, "sources", {}).items()})
        model = cls(transformer, conditioner, codec, objective=spec.get("objective", "rectified_flow"),
                    objective_options=spec.get("objective_options"),
                    latent_bounds=None if "latent_bounds" not in spec else LatentBounds.from_spec(
                        spec["latent_bounds"], codec.latent_channels, f"{folder / SPEC_FILE}: latent_bounds"),
                    name=spec.get("name") or folder.name, checksums=checksums, device=device, **options)
        if isinstance(spec.get("training"), dict):
            model._provenance["training"] = dict(spec["training"])
        sampling = spec.get("sampling")
        if isinstance(sampling, dict) and "preset" not in options:  # the folder's own defaults; flags override
            recorded = {k: sampling[k] for k in ("steps", "guidance", "negative_prompt") if k in sampling}
            model.preset = {**model.preset, "preset": "model folder", **recorded}
        return model

    # ---- identity -----------------------------------------------------------------------------------------
    def checksums(self) -> dict[str, str]:
        """sha256 of every weight file or folder in use."""
        return dict(self._checksums)

    def untrained(self, seed: int = 0) -> "FluxMusicModel":
        """Fresh transformer weights (and a fresh trainable text encoder) seeded by `seed`; frozen pretrained
        text encoders and the codec are shared."""
        from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer

        conditioner = self.conditioner
        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random stream
            torch.manual_seed(seed)
            transformer = FluxMusicTransformer(self.config)
            if getattr(conditioner, "trainable", False):
                conditioner = type(conditioner).from_spec(conditioner.spec())
        model = FluxMusicModel(transformer, conditioner, self.codec, self.objective_name, self.objective.options(),
                               name=f"{self.name}-untrained", device=self.device, dtype=self.dtype,
                               keep_text_encoders=self.keep_text_encoders, batch_size=self.batch_size,
                               batched_guidance=self.batched_guidance, latent_bounds=self.latent_bounds)
        model.preset = dict(self.preset)
        return model

    def provenance(self) -> dict[str, Any]:
        return dict(self._provenance)

    def fingerprint(self) -> str:
        """name + a hash of the weights' checksums and the components' specs (not the sampling settings)."""
        identity = {"name": self.name, "checksums": self._checksums, "objective": self.objective_name,
                    "conditioner": self.conditioner.spec(), "codec": self._codec.spec(),
                    "transformer": self.config.to_dict()}
        return f"{self.name}@{content_hash(identity, 16)}"

    # ---- settings -----------------------------------------------------------------------------------------
    @staticmethod
    def _preset(name: str) -> dict[str, Any]:
        if name not in PRESETS:
            raise GenerationError(f"unknown preset {name!r}; expected one of {list(PRESETS)}")
        return {"preset": name, **PRESETS[name]}

    def resolve_settings(self, duration: float = DEFAULT_DURATION, preset: str | None = None,
                         steps: int | None = None, guidance: float | None = None, negative_prompt: str | None = None,
                         solver: str | None = None, clamp_x0: bool | None = None, **unknown: Any
                         ) -> GenerationSettings:
        """Every generation setting, resolved: explicit values over the preset over the model's preset.
        `clamp_x0` (default: on when the model folder records its training latents' range) clamps every
        clean-sample estimate to that range while sampling."""
        if unknown:
            raise GenerationError(f"unknown generation setting(s) {sorted(unknown)}")
        if clamp_x0 and self.latent_bounds is None:
            raise GenerationError(f"{self.name}: clamp_x0 needs the training latents' range, which this model's "
                                  "folder does not record (folders written by `fluxbench train` do)")
        chosen = self._preset(preset) if preset else dict(self.preset)
        for key, value in (("steps", steps), ("guidance", guidance), ("negative_prompt", negative_prompt)):
            if value is not None:
                chosen[key] = value
        chosen["solver"] = solver or self.objective.default_solver
        if chosen["solver"] not in self.objective.solvers:
            raise GenerationError(f"{self.objective_name} has no solver {chosen['solver']!r}; "
                                  f"choose one of {list(self.objective.solvers)}")
        if int(chosen["steps"]) < 1:
            raise GenerationError(f"steps must be >= 1, got {chosen['steps']}")
        if duration <= 0:
            raise GenerationError(f"duration must be positive, got {duration}")
        samples = int(round(duration * self.sample_rate))
        options = {**chosen, "steps": int(chosen["steps"]), "guidance": float(chosen["guidance"])}
        if self.latent_bounds is not None:  # only then, so the clip identities of other models are unchanged
            options["clamp_x0"] = True if clamp_x0 is None else bool(clamp_x0)
        return GenerationSettings(duration, options, {
            "samples": samples, "sample_rate": self.sample_rate,
            "latent_shape": list(self._codec.latent_shape(samples)), "objective": self.objective_name,
            "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")})

    def settings(self, duration: float = DEFAULT_DURATION, **options: Any) -> dict[str, Any]:
        """`resolve_settings` as one plain dict, duration included."""
        resolved = self.resolve_settings(duration, **options)
        return {**resolved.record(), "duration": resolved.duration}

    # ---- stages -------------------------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str], negative_prompt: str, guidance: float
                    ) -> tuple[TextConditioning, TextConditioning | None]:
        """Conditioning for every prompt and the (batch-of-one) negative, on the CPU; then free the encoders."""
        with torch.inference_mode():
            cond = self.conditioner.encode_many(list(prompts), self.batch_size).to("cpu", torch.float32)
            uncond = None if guidance == 1.0 else self.conditioner.negative(negative_prompt, 1).to("cpu", torch.float32)
        if not self.keep_text_encoders:
            self.conditioner.release()
        return cond, uncond

    def prepare(self, prompts: Sequence[str], settings: GenerationSettings) -> None:
        """The first stage of a run generated batch by batch: encode every prompt (and the negative) once,
        which the hub encoders store in their disk cache, then free the encoders; each batch then reads its
        conditioning from the cache and the encoders never share the device with the transformer."""
        self.encode_text(list(prompts), settings["negative_prompt"], settings["guidance"])
        self.conditioner.release()

    @property
    def transformer(self) -> torch.nn.Module:
        """The denoiser: loaded if deferred, placed on the device and cast once to the compute dtype."""
        if not self._transformer_placed:
            module = self._transformer
            if not isinstance(module, torch.nn.Module):  # a DeferredTransformer
                module = module.load()
            module = module.to(self.device).eval().requires_grad_(False)
            self._transformer = cast_for_inference(module, self.dtype) if self.dtype != torch.float32 else module
            self._transformer_placed = True
        return self._transformer

    @property
    def codec(self) -> LatentCodec:
        """The VAE and vocoder (or weight-free codec), moved to the device on first use."""
        if not self._codec_placed:
            self._codec = self._codec.to(self.device)
            self._codec_placed = True
        return self._codec

    def denoise(self, noise_tokens: torch.Tensor, cond: TextConditioning, uncond: TextConditioning | None,
                height: int, width: int, guidance: float, steps: int, solver: str | None = None,
                progress: bool = False, clamp_x0: bool = False) -> torch.Tensor:
        """Sample tokens [B, N, in_channels] from noise tokens; `uncond` is a batch of one or of B."""
        batch = noise_tokens.shape[0]
        device = self.device

        def as_dict(text: TextConditioning) -> dict[str, torch.Tensor]:
            text = text if len(text) == batch else text.expand(batch)
            text = text.to(device, torch.float32)
            return {"img_ids": music_ids(batch, height, width, device), "txt": text.txt,
                    "txt_ids": text_ids(batch, text.txt.shape[1], device), "y": text.y}

        with torch.inference_mode():
            tokens = self.objective.sample(self.transformer, noise_tokens.to(device), as_dict(cond),
                                           as_dict(uncond) if uncond is not None else None, guidance=guidance,
                                           steps=steps, solver=solver, progress=progress,
                                           batched_guidance=self.batched_guidance,
                                           x0_bounds=self.latent_bounds.tokens(height, width, device)
                                           if clamp_x0 else None)
        return tokens.float()

    def caption_reliance(self, waveforms: Sequence[np.ndarray], sample_rate: int, captions: Sequence[str],
                         seed: int = 0) -> float | None:
        return caption_reliance(self, waveforms, sample_rate, captions, seed)

    def noise(self, seeds: Sequence[int], shape: tuple[int, int, int]) -> torch.Tensor:
        """Starting latents [B, C, H, W], one CPU generator per seed (independent of device and batching)."""
        return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])

    def generate(self, prompts: Sequence[str], duration: float = DEFAULT_DURATION, seed: int | Sequence[int] = 0,
                 settings: GenerationSettings | None = None, progress: bool = False,
                 **options: Any) -> GeneratedAudio:
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise GenerationError("generate needs a non-empty list of prompt strings")
        settings = self.settings_for(duration, settings, options)
        seeds = item_seeds(seed, len(prompts))
        cond, uncond = self.encode_text(prompts, settings["negative_prompt"], settings["guidance"])
        channels, height, width = settings["latent_shape"]
        clips = []
        for start in range(0, len(prompts), self.batch_size):
            rows = slice(start, start + self.batch_size)
            noise = patchify(self.noise(seeds[rows], (channels, height, width)))
            tokens = self.denoise(noise, cond[rows], uncond, height, width, settings["guidance"], settings["steps"],
                                  settings["solver"], progress, settings.options.get("clamp_x0", False))
            with torch.inference_mode():
                waves = self.codec.decode(unpatchify(tokens, height, width)).float().cpu().numpy()
            clips.append(fit_length(waves, settings["samples"]))
            log.info("%s: %d/%d clips", self.name, min(start + self.batch_size, len(prompts)), len(prompts))
        waveforms = np.concatenate(clips).astype(np.float32)
        if not np.isfinite(waveforms).all():
            raise GenerationError(f"{self.name}: generation produced NaN or infinite samples "
                                  f"(dtype {settings['dtype']}); try --dtype float32")
        return GeneratedAudio(np.clip(waveforms, -1.0, 1.0), self.sample_rate,
                              {**settings.record(), "duration": settings.duration, "seeds": seeds,
                               "fingerprint": self.fingerprint()})


def _check_widths(config: FluxMusicConfig, conditioner: T5ClapConditioner, label: str) -> None:
    """The text encoders must produce the widths the transformer was built for (read from their configs)."""
    checks = [("T5 hidden size", conditioner.use_t5, lambda: conditioner.context_dim, config.context_in_dim,
               "context_in_dim"),
              ("CLAP text hidden size", conditioner.use_clap, lambda: conditioner.vector_dim, config.vec_in_dim,
               "vec_in_dim")]
    for what, used, width, expected, field in checks:
        if used and width() != expected:
            raise GenerationError(f"{label}: {what} is {width()} but the transformer's {field} is {expected}; "
                                  f"the text encoder does not belong to this model")

