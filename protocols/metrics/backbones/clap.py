"""CLAP audio and text embeddings through `transformers` (ClapModel), for the CLAP score.

Default checkpoint: `laion/larger_clap_music` (LAION's music-trained HTSAT-base CLAP in transformers format).
The common text-to-music convention (audiocraft's MusicGen/MAGNeT evaluations) loads LAION's original
`music_audioset_epoch_15_esc_90.14.pt` from the hub repo `lukewys/laion_clap` (HTSAT-base, no fusion); pass a
transformers conversion of it with --clap-model to reproduce those numbers. The checkpoint changes the score a
lot (0.13 vs 0.31 for the same MusicGen audio with two LAION checkpoints), so results record the model id and
its weights hash.

Audio: mean of channels, resampled to 48 kHz with the metrics' windowed-sinc resampler, then deterministic
long-clip handling ("first": the first 10 s, as audiocraft's crop but not random; "mean": the mean of the
normalised embeddings of consecutive 10 s windows). Clips up to 10 s go through the feature extractor's own
padding. A tokenizer whose vocabulary is far smaller than the model's embedding table (transformers offline
without a cached tokenizer can return a 5-token vocabulary) is refused: it would give meaningless scores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fluxbench.audio import read_audio, to_mono
from fluxbench.protocols.metrics.backbones import Backbone, BackboneError
from fluxbench.protocols.metrics.frontend import sinc_resample
from fluxbench.weights import WeightSource, sha256_of

DEFAULT_CLAP_MODEL = "laion/larger_clap_music"
SAMPLE_RATE = 48_000
WINDOW_SECONDS = 10
LONG_CLIP_POLICIES = ("first", "mean")


def clap_source(model: str | None = None) -> WeightSource:
    model = model or DEFAULT_CLAP_MODEL
    return WeightSource(name=f"CLAP ({model})", env_var="FLUXBENCH_CLAP", local_name=Path(model).name,
                        hub_repo=model)


class ClapBackbone(Backbone):
    batch_clips = 8

    def __init__(self, model, feature_extractor, tokenizer, weights_path: str, weights_sha256: str, device: str,
                 long_clips: str = "first"):
        if long_clips not in LONG_CLIP_POLICIES:
            raise BackboneError(f"unknown long-clip policy {long_clips!r}; expected one of {LONG_CLIP_POLICIES}")
        super().__init__("clap", SAMPLE_RATE, weights_path, weights_sha256, device,
                         {"long_clips": long_clips, "window_s": WINDOW_SECONDS})
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.long_clips = long_clips

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu", long_clips: str = "first") -> ClapBackbone:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        folder = Path(folder)
        try:
            model = ClapModel.from_pretrained(str(folder))
            feature_extractor = ClapFeatureExtractor.from_pretrained(str(folder))
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise BackboneError(f"{folder}: not a transformers CLAP model folder ({first})") from None
        vocabulary = model.config.text_config.vocab_size
        if len(tokenizer) < 0.9 * vocabulary:
            raise BackboneError(f"{folder}: tokenizer has {len(tokenizer)} tokens but the text model expects "
                                f"{vocabulary}; the tokenizer files are missing or degenerate")
        if feature_extractor.sampling_rate != SAMPLE_RATE:
            raise BackboneError(f"{folder}: feature extractor expects {feature_extractor.sampling_rate} Hz, "
                                f"not the {SAMPLE_RATE} Hz CLAP convention")
        return cls(model, feature_extractor, tokenizer, str(folder), sha256_of(folder), device, long_clips)

    @property
    def frontend(self) -> str:
        return f"mean of channels, sinc resample to 48 kHz, {self.long_clips} {WINDOW_SECONDS} s"

    def load_wave(self, path) -> np.ndarray:
        audio, rate = read_audio(path)
        return sinc_resample(to_mono(audio, "mean"), rate, SAMPLE_RATE).astype(np.float32, copy=False)

    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        window = SAMPLE_RATE * WINDOW_SECONDS
        pieces, owner = [], []
        for index, wave in enumerate(waves):
            starts = [0] if self.long_clips == "first" else range(0, max(len(wave) - 1, 0) // window * window + 1,
                                                                  window)
            for start in starts:
                pieces.append(wave[start:start + window])
                owner.append(index)
        vectors = self._audio_vectors(pieces)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        owner = np.asarray(owner)
        results = []
        for index in range(len(waves)):
            mean = vectors[owner == index].mean(axis=0)
            results.append({"audio": mean / np.linalg.norm(mean)})
        return results

    def embed_text(self, texts: list[str]) -> np.ndarray:
        import torch

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                tokens = self.tokenizer(list(texts[start:start + 64]), padding=True, truncation=True,
                                        return_tensors="pt").to(self.device)
                features = self.model.get_text_features(input_ids=tokens["input_ids"],
                                                        attention_mask=tokens["attention_mask"])
                outputs.append(_projected(features).double().cpu().numpy())
        return np.concatenate(outputs)

    def _audio_vectors(self, pieces: list[np.ndarray]) -> np.ndarray:
        import torch

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(pieces), self.batch_clips):
                # Pieces are at most 10 s, so neither mode crops at random; the mode must match the model's input.
                truncation = "fusion" if self.model.config.audio_config.enable_fusion else "rand_trunc"
                inputs = self.feature_extractor([p.astype(np.float64) for p in pieces[start:start + self.batch_clips]],
                                                sampling_rate=SAMPLE_RATE, truncation=truncation, return_tensors="pt")
                features = self.model.get_audio_features(
                    input_features=inputs["input_features"].to(self.device),
                    is_longer=inputs.get("is_longer").to(self.device) if "is_longer" in inputs else None)
                outputs.append(_projected(features).double().cpu().numpy())
        return np.concatenate(outputs)


def _projected(features):
    # transformers < 5 returns the projected embedding tensor; 5.x wraps it as the pooler output.
    return features if hasattr(features, "double") else features.pooler_output
