"""The FAD backbones of fadtk 1.1.0 (Gui et al., ICASSP 2024) with fadtk's front ends, names and hub ids.

Shared front end (fadtk's `load_audio` + `ModelLoader.load_wav`): mean of channels, torchaudio's Kaiser
windowed-sinc resampler (lowpass width 64, rolloff 0.9475937167399596, beta 14.769656459379492) to the model
rate, 16-bit PCM quantisation (fadtk writes an intermediate 16-bit WAV and reads it back as int16 / 32768).
Frames come back rounded to float16, as fadtk stores them.

| name             | rate   | frames (FAD)                                          | hub id                       |
|------------------|--------|-------------------------------------------------------|------------------------------|
| clap-laion-music | 48 kHz | 512-d per 10 s window, one window per second (tail     | laion/larger_clap_music      |
|                  |        | windows zero-padded), L2-normalised                    | (transformers format)        |
| MERT-v1-95M      | 24 kHz | 768-d per 13.3 ms, hidden state 12 (the last layer)    | m-a-p/MERT-v1-95M            |
| encodec-emb      | 24 kHz | 128-d per 13.3 ms, the encoder's continuous output    | facebook/encodec_24khz       |

"kad_frames" are the rows kadtk 1.1.0 uses for KAD: MERT and EnCodec frames averaged over windows of
int(frames / seconds) frames (about 1 s, the remainder dropped; a clip under 1 s, which kadtk would drop,
becomes one row, the mean of its frames); CLAP frames as they are.

Details: CLAP's input is also quantised as fadtk does (clip to [-1, 1], x * 32767 truncated to int16, / 32767);
MERT's input is cut at 6 minutes and normalised by its feature extractor; EnCodec's at 3 minutes.
fadtk loads CLAP through the laion_clap package from `lukewys/laion_clap/music_audioset_epoch_15_esc_90.14.pt`;
fluxbench loads a transformers-format CLAP (HTSAT-base audio tower) instead, by default the hub's
`laion/larger_clap_music`; give a transformers conversion of that file with --weights to match fadtk's
weights. MERT-v1-95M (no CQT branch, no attention relaxation) has HuBERT-base's layout, so it is loaded with
transformers' HubertModel from the hub folder's config and weights and no remote code runs; fadtk disables the
positional convolution's batch norm (`conv_pos_batch_norm = False`), as HubertModel has none.
`fluxbench verify-backbones` checks an installation against fadtk's published per-song scores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fluxbench.audio import read_audio, to_mono
from fluxbench.protocols.metrics.backbones import Backbone, BackboneError
from fluxbench.protocols.metrics.frontend import sinc_resample
from fluxbench.protocols.metrics.table import FADTK_BACKBONES
from fluxbench.weights import WeightSource, sha256_of

FADTK_VERSION = "1.1.0"
RESAMPLE_WIDTH = 64
RESAMPLE_ROLLOFF = 0.9475937167399596
RESAMPLE_BETA = 14.769656459379492
PCM_SCALE = 32768.0

CLAP_RATE = 48_000
CLAP_WINDOW_SECONDS = 10
CLAP_HOP_SECONDS = 1
CLAP_QUANTISE = 32767.0
MERT_RATE = 24_000
MERT_LIMIT_SECONDS = 6 * 60
ENCODEC_RATE = 24_000
ENCODEC_LIMIT_SECONDS = 3 * 60

SOURCES = {
    "clap-laion-music": WeightSource("CLAP-LAION music (transformers format)", "FLUXBENCH_CLAP_LAION_MUSIC",
                                     "larger_clap_music", hub_repo="laion/larger_clap_music",
                                     required=("config.json",)),
    "MERT-v1-95M": WeightSource("MERT-v1-95M", "FLUXBENCH_MERT", "MERT-v1-95M", hub_repo="m-a-p/MERT-v1-95M",
                                allow_patterns=("config.json", "preprocessor_config.json", "*.safetensors",
                                                "pytorch_model.bin"),
                                required=("config.json", "preprocessor_config.json")),
    "encodec-emb": WeightSource("EnCodec 24 kHz", "FLUXBENCH_ENCODEC", "encodec_24khz",
                                hub_repo="facebook/encodec_24khz", required=("config.json",)),
}


def fadtk_waveform(path: str | os.PathLike, rate: int) -> np.ndarray:
    """fadtk's conversion of one file: float64 mono at `rate` on the 16-bit grid."""
    audio, file_rate = read_audio(path)
    wave = to_mono(audio, "mean").astype(np.float32, copy=False)
    if file_rate != rate:
        wave = sinc_resample(wave, file_rate, rate, RESAMPLE_WIDTH, RESAMPLE_ROLLOFF, RESAMPLE_BETA)
    return pcm16(wave)


def pcm16(wave: np.ndarray) -> np.ndarray:
    """A 16-bit PCM WAV round trip: round to the nearest step of 1/32768, saturating, read back as float64."""
    steps = np.clip(np.rint(np.asarray(wave, dtype=np.float64) * PCM_SCALE), -PCM_SCALE, PCM_SCALE - 1)
    return steps / PCM_SCALE


def pool_seconds(frames: np.ndarray, samples: int, rate: int) -> np.ndarray:
    """kadtk's 1 s pooling: means over consecutive windows of int(frames / seconds) frames, remainder dropped
    (a clip under 1 s gives one row, the mean of all its frames)."""
    seconds = samples / rate
    stride = int(frames.shape[0] / seconds) if seconds > 0 else 0
    if stride < 1:
        raise BackboneError(f"{frames.shape[0]} frame(s) from {seconds:.3f} s of audio cannot be pooled to 1 s")
    if stride > frames.shape[0]:  # under 1 s: kadtk would keep no row at all; keep the clip as one row
        return frames.mean(axis=0, keepdims=True)
    usable = frames.shape[0] // stride * stride
    return frames[:usable].reshape(-1, stride, frames.shape[1]).mean(axis=1)


def as_float16(frames) -> np.ndarray:
    """fadtk stores float32 embeddings as float16; the rounded values, held as float32."""
    return np.asarray(frames, dtype=np.float32).astype(np.float16).astype(np.float32)


class FadtkBackbone(Backbone):
    """Common front end; subclasses turn one waveform into float32 frames [frames, dims]."""

    frame_pooling = True  # kad_frames pooled to 1 s (kadtk); CLAP already has one row per second

    @property
    def frontend(self) -> str:
        return (f"fadtk {FADTK_VERSION}: mean of channels, Kaiser sinc resample to {self.sample_rate} Hz, "
                "16-bit PCM, float16 frames")

    def load_wave(self, path) -> np.ndarray:
        return fadtk_waveform(path, self.sample_rate)

    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        results = []
        for wave in waves:
            frames = np.asarray(self.frames(wave), dtype=np.float32)
            if frames.ndim != 2 or frames.shape[0] == 0:
                raise BackboneError(f"{self.name}: no frames for a clip of {wave.shape[-1]} samples")
            pooled = pool_seconds(frames, wave.shape[-1], self.sample_rate) if self.frame_pooling else frames
            results.append({"frames": as_float16(frames), "kad_frames": as_float16(pooled)})
        return results

    def frames(self, wave: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ClapLaionMusicBackbone(FadtkBackbone):
    frame_pooling = False
    batch_windows = 16

    def __init__(self, model, feature_extractor, weights_path: str, weights_sha256: str, device: str):
        super().__init__("clap-laion-music", CLAP_RATE, weights_path, weights_sha256, device,
                         {"window_s": CLAP_WINDOW_SECONDS, "hop_s": CLAP_HOP_SECONDS})
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu") -> ClapLaionMusicBackbone:
        from transformers import ClapFeatureExtractor, ClapModel

        folder = Path(folder)
        try:
            model = ClapModel.from_pretrained(str(folder))
            feature_extractor = ClapFeatureExtractor.from_pretrained(str(folder))
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise BackboneError(f"{folder}: not a transformers CLAP model folder ({first})") from None
        if feature_extractor.sampling_rate != CLAP_RATE:
            raise BackboneError(f"{folder}: feature extractor expects {feature_extractor.sampling_rate} Hz, "
                                f"not CLAP's {CLAP_RATE} Hz")
        if model.config.audio_config.enable_fusion:
            raise BackboneError(f"{folder}: a fusion CLAP; fadtk's clap-laion-music is the non-fusion model")
        return cls(model, feature_extractor, str(folder), sha256_of(folder), device)

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """fadtk's windows: one per second from the start, each 10 s long, zero-padded past the end."""
        quantised = np.clip(wave, -1.0, 1.0)
        quantised = (quantised * CLAP_QUANTISE).astype(np.int16) / CLAP_QUANTISE
        size, hop = CLAP_WINDOW_SECONDS * CLAP_RATE, CLAP_HOP_SECONDS * CLAP_RATE
        padded = np.pad(quantised, (0, size))
        return np.stack([padded[start:start + size] for start in range(0, len(quantised), hop)])

    def frames(self, wave: np.ndarray) -> np.ndarray:
        import torch

        windows = self.windows(wave)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(windows), self.batch_windows):
                chunk = [w.astype(np.float32) for w in windows[start:start + self.batch_windows]]
                inputs = self.feature_extractor(chunk, sampling_rate=CLAP_RATE, truncation="rand_trunc",
                                                padding="repeatpad", return_tensors="pt")
                features = self.model.get_audio_features(input_features=inputs["input_features"].to(self.device))
                features = features if hasattr(features, "double") else features.pooler_output
                outputs.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(outputs)


class MertBackbone(FadtkBackbone):
    def __init__(self, model, feature_extractor, weights_path: str, weights_sha256: str, device: str, layer: int):
        super().__init__("MERT-v1-95M", MERT_RATE, weights_path, weights_sha256, device, {"layer": layer})
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        self.layer = layer

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu", layer: int | None = None) -> MertBackbone:
        """layer: index into the hidden states (0 = the convolutional features); default the last one, 12 for
        MERT-v1-95M, which is fadtk's `MERT-v1-95M` (its `MERT-v1-95M-<n>` use layer n)."""
        from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

        folder = Path(folder)
        try:
            settings = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as error:
            raise BackboneError(f"{folder}: no readable MERT config.json ({type(error).__name__})") from None
        if settings.get("feature_extractor_cqt") or float(settings.get("attention_relax", -1.0)) > 0 \
                or settings.get("deepnorm"):
            raise BackboneError(f"{folder}: this MERT variant uses a CQT branch, attention relaxation or deepnorm; "
                                "only MERT-v1-95M's HuBERT-shaped layout is supported")
        for key in ("architectures", "auto_map", "model_type", "transformers_version"):
            settings.pop(key, None)
        settings["conv_pos_batch_norm"] = False
        config = HubertConfig(**settings)
        layer = config.num_hidden_layers if layer is None else layer
        if not 0 <= layer <= config.num_hidden_layers:
            raise BackboneError(f"MERT layer {layer}: expected 0..{config.num_hidden_layers}")
        try:
            model, info = HubertModel.from_pretrained(str(folder), config=config, output_loading_info=True)
            feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise BackboneError(f"{folder}: not a MERT model folder ({first})") from None
        missing = [key for key in info.get("missing_keys", []) if "masked_spec_embed" not in key]
        if missing:
            raise BackboneError(f"{folder}: MERT weights lack {', '.join(missing[:3])}"
                                + (" ..." if len(missing) > 3 else ""))
        if feature_extractor.sampling_rate != MERT_RATE:
            raise BackboneError(f"{folder}: feature extractor expects {feature_extractor.sampling_rate} Hz, "
                                f"not MERT-v1's {MERT_RATE} Hz")
        return cls(model, feature_extractor, str(folder), sha256_of(folder), device, layer)

    def frames(self, wave: np.ndarray) -> np.ndarray:
        import torch

        wave = wave[:MERT_LIMIT_SECONDS * MERT_RATE]
        inputs = self.feature_extractor(wave, sampling_rate=MERT_RATE, return_tensors="pt")
        with torch.inference_mode():
            output = self.model(input_values=inputs["input_values"].to(self.device), output_hidden_states=True)
        return output.hidden_states[self.layer][0].float().cpu().numpy()


class EncodecEmbBackbone(FadtkBackbone):
    def __init__(self, model, weights_path: str, weights_sha256: str, device: str):
        super().__init__("encodec-emb", ENCODEC_RATE, weights_path, weights_sha256, device, {})
        self.model = model.to(device).eval()

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu") -> EncodecEmbBackbone:
        from transformers import EncodecModel

        folder = Path(folder)
        try:
            model = EncodecModel.from_pretrained(str(folder))
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0]
            raise BackboneError(f"{folder}: not a transformers EnCodec model folder ({first})") from None
        if model.config.sampling_rate != ENCODEC_RATE or model.config.audio_channels != 1:
            raise BackboneError(f"{folder}: EnCodec at {model.config.sampling_rate} Hz with "
                                f"{model.config.audio_channels} channel(s); encodec-emb is the 24 kHz mono model")
        return cls(model, str(folder), sha256_of(folder), device)

    def frames(self, wave: np.ndarray) -> np.ndarray:
        import torch

        wave = wave[:ENCODEC_LIMIT_SECONDS * ENCODEC_RATE]
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None, None].to(self.device)
            encoded = self.model.encoder(audio)  # [1, 128, frames]
        return encoded[0].transpose(0, 1).float().cpu().numpy()


def load_fadtk_backbone(name: str, folder: str | os.PathLike, device: str = "cpu") -> FadtkBackbone:
    loaders = {"clap-laion-music": ClapLaionMusicBackbone, "MERT-v1-95M": MertBackbone,
               "encodec-emb": EncodecEmbBackbone}
    if name not in loaders:
        raise BackboneError(f"unknown fadtk backbone {name!r}; known: {', '.join(FADTK_BACKBONES)}")
    path = Path(folder)
    if not path.is_dir():
        raise BackboneError(f"{path}: {name} needs a model folder (config.json and weights), not a file")
    return loaders[name].from_pretrained(path, device=device)
