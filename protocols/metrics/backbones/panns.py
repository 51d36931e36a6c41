"""PANNs CNN14 for FD, KL and IS, as audioldm_eval runs it (Kong et al. 2020; weights from Zenodo).

Facts carried over from PANNs / audioldm_eval:
- 16 kHz checkpoint `Cnn14_16k_mAP=0.438.pth` (n_fft 512, hop 160, 64 mel bands 50-8000 Hz) is what
  audioldm_eval uses at its default 16 kHz; the 32 kHz `Cnn14_mAP=0.431.pth` (n_fft 1024, hop 320, 64 bands
  50-14000 Hz) serves `sampling_rate=32000`. Both are in Zenodo record 3987831 (audioldm_eval fetches the
  32 kHz file from record 3576403).
- log-mel as torchlibrosa computes it: a centred STFT with reflect padding done as two 1-D convolutions
  with DFT-times-periodic-Hann kernels (`spectrogram_extractor.stft.conv_real/conv_imag`), power spectrum,
  slaney mel filterbank (`logmel_extractor.melW`, [freq, mel]), 10 log10(max(x, 1e-10)), no top_db;
- BatchNorm over the mel bands (`bn0`), six conv blocks (two 3x3 convs without bias, BatchNorm, ReLU; 2x2
  average pooling, none after the last), mean over frequency, max + mean over time, `fc1` + ReLU -> the
  2048-d "embedding", `fc_audioset` on it -> 527 pre-sigmoid logits. Eval mode (no dropout, no SpecAugment).
- one forward per whole clip (never cropped); clips of equal length are batched together here, which changes
  nothing since eval-mode layers act per example.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fluxbench.audio import mel_filterbank
from fluxbench.protocols.metrics.backbones import Backbone, BackboneError, load_strict, placed_for_inference, \
    read_state_dict
from fluxbench.protocols.metrics.frontend import FRONTEND
from fluxbench.weights import WeightSource, sha256_of

PANNS_WEIGHTS = {
    "panns-16k": WeightSource(
        name="PANNs CNN14 16 kHz (Zenodo 3987831)", env_var="FLUXBENCH_PANNS_16K",
        local_name="Cnn14_16k_mAP=0.438.pth",
        url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"),
    "panns-32k": WeightSource(
        name="PANNs CNN14 32 kHz (Zenodo 3987831)", env_var="FLUXBENCH_PANNS_32K",
        local_name="Cnn14_mAP=0.431.pth",
        url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth"),
}

LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class Cnn14Config:
    sample_rate: int
    n_fft: int
    hop: int
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    classes: int = 527


def config_from_state_dict(base: Cnn14Config, state: dict) -> Cnn14Config:
    """`base` (rate, hop, band edges of the named checkpoint) with the layer sizes read off the weights."""
    from dataclasses import replace

    try:
        widths = tuple(int(state[f"conv_block{i}.conv1.weight"].shape[0]) for i in range(1, 7))
        return replace(base, widths=widths, classes=int(state["fc_audioset.weight"].shape[0]),
                       mel_bins=int(state["bn0.weight"].shape[0]),
                       n_fft=int(state["spectrogram_extractor.stft.conv_real.weight"].shape[-1]))
    except KeyError:
        return base  # not CNN14-shaped: the strict load names the mismatch


CNN14_CONFIGS = {
    "panns-16k": Cnn14Config(16_000, 512, 160, fmax=8000.0),
    "panns-32k": Cnn14Config(32_000, 1024, 320, fmax=14000.0),
}


def stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """[n_fft // 2 + 1, 1, n_fft] real and imaginary DFT rows times a periodic Hann window (float32)."""
    samples = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * samples / n_fft)
    angles = 2.0 * np.pi * np.outer(np.arange(n_fft // 2 + 1), samples) / n_fft
    return ((np.cos(angles) * window)[:, None, :].astype(np.float32),
            (-np.sin(angles) * window)[:, None, :].astype(np.float32))


def build_cnn14(config: Cnn14Config):
    """CNN14 with the PANNs state-dict layout; forward(wave [batch, samples]) -> (embedding, logits)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvBlock(nn.Module):
        def __init__(self, channels_in: int, channels_out: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels_out)
            self.bn2 = nn.BatchNorm2d(channels_out)

        def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
            x = F.relu_(self.bn1(self.conv1(x)))
            x = F.relu_(self.bn2(self.conv2(x)))
            return F.avg_pool2d(x, pool) if pool > 1 else x

        def fold_batch_norms(self) -> None:
            """Eval-mode BatchNorm is an affine map per channel: fold it into the preceding convolution."""
            self.conv1, self.bn1 = fold_batch_norm(self.conv1, self.bn1), nn.Identity()
            self.conv2, self.bn2 = fold_batch_norm(self.conv2, self.bn2), nn.Identity()

    class Stft(nn.Module):
        def __init__(self):
            super().__init__()
            bins = config.n_fft // 2 + 1
            self.conv_real = nn.Conv1d(1, bins, config.n_fft, stride=config.hop, bias=False)
            self.conv_imag = nn.Conv1d(1, bins, config.n_fft, stride=config.hop, bias=False)
            real, imag = stft_kernels(config.n_fft)
            self.conv_real.weight.data.copy_(torch.from_numpy(real))
            self.conv_imag.weight.data.copy_(torch.from_numpy(imag))

    class Spectrogram(nn.Module):
        def __init__(self):
            super().__init__()
            self.stft = Stft()

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            half = config.n_fft // 2
            x = F.pad(wave[:, None, :], (half, half), mode="reflect")
            power = self.stft.conv_real(x) ** 2 + self.stft.conv_imag(x) ** 2
            return power.transpose(1, 2)[:, None]  # [batch, 1, time, freq]

    class LogMel(nn.Module):
        def __init__(self):
            super().__init__()
            bank = mel_filterbank(config.sample_rate, config.n_fft, config.mel_bins, config.fmin, config.fmax)
            self.melW = nn.Parameter(torch.from_numpy(np.ascontiguousarray(bank.T)), requires_grad=False)

        def forward(self, power: torch.Tensor) -> torch.Tensor:
            return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=LOG_FLOOR))

    class Cnn14(nn.Module):
        def __init__(self):
            super().__init__()
            self.spectrogram_extractor = Spectrogram()
            self.logmel_extractor = LogMel()
            self.bn0 = nn.BatchNorm2d(config.mel_bins)
            channels = (1,) + tuple(config.widths)
            for index in range(6):
                setattr(self, f"conv_block{index + 1}", ConvBlock(channels[index], channels[index + 1]))
            self.fc1 = nn.Linear(config.widths[-1], config.widths[-1])
            self.fc_audioset = nn.Linear(config.widths[-1], config.classes)

        def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
            return self.logmel_extractor(self.spectrogram_extractor(wave))  # [batch, 1, time, mel]

        def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.bn0(self.log_mel(wave).transpose(1, 3)).transpose(1, 3)
            for index in range(6):
                x = getattr(self, f"conv_block{index + 1}")(x, 2 if index < 5 else 1)
            x = x.mean(dim=3)
            x = x.amax(dim=2) + x.mean(dim=2)
            embedding = F.relu_(self.fc1(x))
            return embedding, self.fc_audioset(embedding)

        def fold_batch_norms(self) -> "Cnn14":
            """For inference only: every conv block's BatchNorms folded into its convolutions (the state dict
            no longer has the checkpoint's layout). bn0 stays: it acts on mel bands, not conv channels."""
            for index in range(6):
                getattr(self, f"conv_block{index + 1}").fold_batch_norms()
            return self

    return Cnn14().eval()


def fold_batch_norm(conv, norm):
    """A convolution computing norm(conv(x)) for an eval-mode BatchNorm (scale folded into the weights, the
    shift into the bias), computed in float64 so the folded weights round once."""
    import torch
    from torch import nn

    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    bias = norm.bias.double() - norm.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(conv.weight.double() * scale[:, None, None, None])
        folded.bias.copy_(bias)
    return folded.eval().requires_grad_(False)


class Cnn14Backbone(Backbone):
    """PANNs CNN14: one 2048-d embedding and 527 logits per whole clip."""

    batch_clips = 8

    def __init__(self, name: str, net, config: Cnn14Config, weights_path: str, weights_sha256: str, device: str):
        # Folding rounds differently (about 1e-7 relative), so it is part of the cache key.
        super().__init__(name, config.sample_rate, weights_path, weights_sha256, device,
                         {"layer": "fc1 after ReLU; fc_audioset logits", "batchnorm": "folded into convs"})
        self.net = placed_for_inference(net.fold_batch_norms(), device)

    @classmethod
    def from_weights(cls, name: str, path: str | os.PathLike, device: str = "cpu") -> Cnn14Backbone:
        path = Path(path)
        if not path.is_file():
            raise BackboneError(f"{path}: PANNs CNN14 weights file does not exist")
        state = read_state_dict(path, "PANNs CNN14")
        config = config_from_state_dict(CNN14_CONFIGS[name], state)
        if config.n_fft != CNN14_CONFIGS[name].n_fft:
            raise BackboneError(f"{path}: STFT of {config.n_fft} points, but {name} uses "
                                f"{CNN14_CONFIGS[name].n_fft}; is this the checkpoint of the other rate?")
        net = build_cnn14(config)
        load_strict(net, state, path, "PANNs CNN14")
        return cls(name, net, config, str(path), sha256_of(path), device)

    @property
    def frontend(self) -> str:
        return f"{FRONTEND} at {self.sample_rate} Hz, whole clip"

    def embed(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        results: list[dict[str, np.ndarray] | None] = [None] * len(waves)
        by_length: dict[int, list[int]] = {}
        for index, wave in enumerate(waves):
            by_length.setdefault(wave.shape[-1], []).append(index)
        with torch.inference_mode():
            for indices in by_length.values():
                for start in range(0, len(indices), self.batch_clips):
                    chunk = indices[start:start + self.batch_clips]
                    batch = torch.from_numpy(np.stack([waves[i] for i in chunk])).float().to(self.device)
                    embedding, logits = self.net(batch)
                    for row, index in enumerate(chunk):
                        results[index] = {"embedding": embedding[row].cpu().numpy(),
                                          "logits": logits[row].cpu().numpy()}
        return results
