"""VGGish for FAD, as audioldm_eval uses it through torch.hub `harritaylor/torchvggish`.

Facts carried over (the architecture and front-end of Google's AudioSet VGGish, ported to PyTorch by
torchvggish; weights `vggish-10086976.pth` from the torchvggish GitHub release v0.1):
- front-end at 16 kHz, in float64: frames of 25 ms (400 samples) every 10 ms (160), no padding, periodic Hann
  window, |rfft| with 512 points, 64 mel bands between 125 and 7500 Hz on the HTK mel scale (triangles in mel,
  unnormalised, DC bin zeroed), log(mel + 0.01); examples of 96 frames (0.96 s) every 96 frames, a remainder
  shorter than 0.96 s is dropped; cast to float32 for the network;
- network: conv3x3 64, pool, 128, pool, 256, 256, pool, 512, 512, pool (ReLU after each conv), flatten in
  (time, frequency, channel) order, FC 4096, 4096, 128;
- audioldm_eval takes the last FC **before** its ReLU (`use_activation=False`) and skips the PCA/8-bit
  quantisation (`postprocess=False`), so the PCA file `vggish_pca_params-970ea276.pth` is not needed.
The state-dict keys are torchvggish's (`features.<i>.*`, `embeddings.{0,2,4}.*`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluxbench.protocols.metrics.backbones import Backbone, BackboneError, load_strict, placed_for_inference, \
    read_state_dict
from fluxbench.protocols.metrics.frontend import FRONTEND
from fluxbench.weights import WeightSource, sha256_of

VGGISH_WEIGHTS = WeightSource(
    name="VGGish (torchvggish release v0.1)",
    env_var="FLUXBENCH_VGGISH",
    local_name="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
)
# torch.hub names weight files <name>-<first 8 hex digits of their sha256>.
VGGISH_SHA256_PREFIX = "10086976"

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 400
HOP_SAMPLES = 160
FFT_SIZE = 512
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96


@dataclass(frozen=True)
class VGGishConfig:
    widths: tuple[int, ...] = (64, 128, 256, 256, 512, 512)
    hidden: int = 4096
    embedding: int = 128

    @classmethod
    def from_state_dict(cls, state: dict) -> VGGishConfig:
        """Layer sizes read off the weights (the release file gives the defaults)."""
        convs = sorted((int(key.split(".")[1]), tensor) for key, tensor in state.items()
                       if key.startswith("features.") and key.endswith(".weight"))
        if len(convs) != 6 or "embeddings.0.weight" not in state or "embeddings.4.weight" not in state:
            return cls()  # not VGGish-shaped: the strict load names the mismatch
        return cls(tuple(int(t.shape[0]) for _, t in convs), int(state["embeddings.0.weight"].shape[0]),
                   int(state["embeddings.4.weight"].shape[0]))


def htk_mel_matrix(bins: int = FFT_SIZE // 2 + 1, bands: int = MEL_BANDS, low: float = MEL_LOW_HZ,
                   high: float = MEL_HIGH_HZ, rate: int = SAMPLE_RATE) -> np.ndarray:
    """[bins, bands] triangular weights, linear in HTK mel = 1127 ln(1 + f / 700); DC row zero."""
    def to_mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    bin_mels = to_mel(np.linspace(0.0, rate / 2.0, bins))
    edges = np.linspace(to_mel(low), to_mel(high), bands + 2)
    rising = (bin_mels[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - bin_mels[:, None]) / (edges[2:] - edges[1:-1])
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def log_mel_examples(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono -> [examples, 96, 64] float32 log-mel patches (VGGish's input)."""
    data = np.asarray(wave, dtype=np.float64)
    count = 1 + (data.shape[0] - WINDOW_SAMPLES) // HOP_SAMPLES
    if count < EXAMPLE_FRAMES:
        return np.zeros((0, EXAMPLE_FRAMES, MEL_BANDS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(data, WINDOW_SAMPLES)[::HOP_SAMPLES][:count]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES)
    magnitude = np.abs(np.fft.rfft(frames * window, FFT_SIZE))
    log_mel = np.log(magnitude @ htk_mel_matrix() + LOG_OFFSET)
    examples = (count - EXAMPLE_FRAMES) // EXAMPLE_FRAMES + 1
    return log_mel[:examples * EXAMPLE_FRAMES].reshape(examples, EXAMPLE_FRAMES, MEL_BANDS).astype(np.float32)


def build_vggish(config: VGGishConfig = VGGishConfig()):
    """The network with torchvggish's module layout, ending at the last FC before its ReLU."""
    import torch
    from torch import nn

    class VGGishNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 1
            for index, width in enumerate(config.widths):
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
                if index in (0, 1, 3, 5):
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self.features = nn.Sequential(*layers)
            flat = config.widths[-1] * (EXAMPLE_FRAMES // 16) * (MEL_BANDS // 16)
            self.embeddings = nn.Sequential(nn.Linear(flat, config.hidden), nn.ReLU(inplace=True),
                                            nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True),
                                            nn.Linear(config.hidden, config.embedding))

        def forward(self, examples: torch.Tensor) -> torch.Tensor:
            x = self.features(examples)  # [batch, channels, time, frequency]
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return self.embeddings(x)

    return VGGishNet().eval()


class VGGishBackbone(Backbone):
    """VGGish frames for FAD: one pre-activation 128-d vector per 0.96 s of every clip."""

    batch_examples = 256

    def __init__(self, net, weights_path: str, weights_sha256: str, device: str):
        super().__init__("vggish", SAMPLE_RATE, weights_path, weights_sha256, device,
                         {"layer": "embeddings.4 pre-ReLU", "pca": False})
        self.net = placed_for_inference(net, device)

    @classmethod
    def from_weights(cls, path: str | os.PathLike, device: str = "cpu") -> VGGishBackbone:
        path = Path(path)
        if not path.is_file():
            raise BackboneError(f"{path}: VGGish weights file does not exist")
        digest = sha256_of(path)
        if path.name == VGGISH_WEIGHTS.local_name and not digest.startswith(VGGISH_SHA256_PREFIX):
            raise BackboneError(f"{path}: sha256 {digest[:8]}... does not match the release file "
                                f"({VGGISH_SHA256_PREFIX}...); download it again from {VGGISH_WEIGHTS.url}")
        state = read_state_dict(path, "VGGish")
        net = build_vggish(VGGishConfig.from_state_dict(state))
        load_strict(net, state, path, "VGGish")
        return cls(net, str(path), digest, device)

    @property
    def frontend(self) -> str:
        return f"{FRONTEND}, log-mel 25 ms/10 ms, 64 HTK bands 125-7500 Hz, 0.96 s examples"

    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        patches = [log_mel_examples(wave) for wave in waves]
        stacked = np.concatenate(patches) if patches else np.zeros((0, EXAMPLE_FRAMES, MEL_BANDS), np.float32)
        outputs = []
        with torch.inference_mode():
            for start in range(0, stacked.shape[0], self.batch_examples):
                batch = torch.from_numpy(stacked[start:start + self.batch_examples])[:, None].to(self.device)
                outputs.append(self.net(batch).float().cpu().numpy())
        frames = np.concatenate(outputs) if outputs else np.zeros((0, self.net.embeddings[-1].out_features))
        bounds = np.cumsum([0] + [p.shape[0] for p in patches])
        return [{"frames": frames[bounds[i]:bounds[i + 1]]} for i in range(len(waves))]
