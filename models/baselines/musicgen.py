"""MusicGen (transformers `MusicgenForConditionalGeneration`): T5 text encoder, an autoregressive LM over the
codebooks of a 32 kHz EnCodec (delay pattern, 50 frames/s), classifier-free guidance on the logits.

Sampling draws each clip's tokens with that clip's own generator (`PerClipSampler`), so a clip does not depend
on the other prompts of its batch; the distribution is the published one: temperature, then top-k (top-p when
top_p > 0), over the guided logits.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np

from fluxbench.models.baselines.common import BaselineError, BaselineModel, cpu_generators


class PerClipSampler:
    """A logits processor that applies classifier-free guidance, samples the next token of every codebook row
    with its clip's generator, and leaves only that token possible, so greedy decoding takes it.

    Rows are clip-major (row r belongs to clip r // codebooks). With guidance the rows arrive as [conditional;
    unconditional]; the output then repeats the one-token mask for both halves (finite values, so a later
    guidance step in the library maps it to itself).
    """

    MASKED = -1e4

    def __init__(self, generators: list, codebooks: int, guidance: float, temperature: float, top_k: int,
                 top_p: float) -> None:
        self.generators, self.codebooks, self.guidance = generators, codebooks, guidance
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids, scores):
        import torch

        rows = len(self.generators) * self.codebooks
        logits = scores.float()
        doubled = logits.shape[0] == 2 * rows
        if doubled:
            conditional, unconditional = logits.split(rows, dim=0)
            logits = unconditional + (conditional - unconditional) * self.guidance
        elif logits.shape[0] != rows:
            raise BaselineError(f"MusicGen sampler: expected {rows} or {2 * rows} rows of logits, "
                                f"got {logits.shape[0]}")
        logits = logits / max(self.temperature, 1e-5)
        if self.top_p > 0.0:
            ordered, order = logits.sort(dim=-1, descending=True)
            probabilities = ordered.softmax(-1)
            drop = probabilities.cumsum(-1) - probabilities > self.top_p  # the smallest prefix reaching top_p
            logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        elif self.top_k > 0:
            kth = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probabilities = logits.softmax(-1).cpu()
        chosen = torch.empty(rows, dtype=torch.long)
        for clip, generator in enumerate(self.generators):
            part = slice(clip * self.codebooks, (clip + 1) * self.codebooks)
            chosen[part] = torch.multinomial(probabilities[part], 1, generator=generator).squeeze(-1)
        mask = torch.full((rows, scores.shape[-1]), self.MASKED, dtype=scores.dtype, device=scores.device)
        mask.scatter_(-1, chosen.to(scores.device)[:, None], 0.0)
        return torch.cat([mask, mask]) if doubled else mask


class MusicGenModel(BaselineModel):
    family = "musicgen"

    def _build(self, folder: Path) -> None:
        from transformers import AutoProcessor, MusicgenForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = MusicgenForConditionalGeneration.from_pretrained(folder, dtype=self.dtype)
        self.model.to(self.device).eval().requires_grad_(False)
        audio = self.model.config.audio_encoder
        self.native_rate = int(audio.sampling_rate)
        if self.native_rate != self.spec.sample_rate:
            raise BaselineError(f"{self.name}: {folder} produces {self.native_rate} Hz audio but hf://"
                                f"{self.spec.hub_repo} is {self.spec.sample_rate} Hz; the folder is another model")
        self.frame_rate = float(audio.frame_rate)
        self.codebooks = int(self.model.decoder.num_codebooks)
        self.audio_channels = int(self.model.config.decoder.audio_channels)
        self.max_frames = int(self.model.config.decoder.max_position_embeddings)

    def tokens_for(self, duration: float) -> int:
        """New tokens to request: the delay pattern spends codebooks - 1 steps before the last codebook starts."""
        frames = math.ceil(duration * self.frame_rate)
        tokens = frames + self.codebooks // self.audio_channels - 1
        if tokens > self.max_frames:
            raise BaselineError(f"{self.name}: {duration} s needs {tokens} decoder positions; the model has "
                                f"{self.max_frames}")
        return tokens

    def _generate(self, prompts: list[str], seeds: list[int], duration: float, settings: dict[str, Any],
                  progress: bool) -> np.ndarray:
        import torch
        from transformers import LogitsProcessorList

        inputs = self.processor(text=prompts, padding=True, return_tensors="pt").to(self.device)
        sampler = PerClipSampler(cpu_generators(seeds), self.codebooks, settings["guidance"], settings["temperature"],
                                 settings["top_k"], settings["top_p"])
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample, config.top_k, config.top_p, config.temperature = False, None, None, None
        config.max_length, config.max_new_tokens = None, self.tokens_for(duration)
        config.guidance_scale = settings["guidance"]  # makes the library add the unconditional rows
        with torch.inference_mode():
            audio = self.model.generate(**inputs, generation_config=config,
                                        logits_processor=LogitsProcessorList([sampler]))
        return audio.float().cpu().numpy()  # [batch, channels, samples]
