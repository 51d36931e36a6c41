"""The reference audio front-end of audioldm_eval at git 83d7b13: how one file becomes a backbone's waveform.

83d7b13 is the library's `main` while FluxMusic was evaluated (mid-2024). Its dataset class, shared by the
VGGish FAD and the PANNs FD/KL/IS paths, does per file:
1. read as float (torchaudio.load), keep the **first channel** only;
2. subtract the mean (DC removal);
3. resample with torchaudio's default windowed-sinc resampler (Hann window, lowpass width 6, rolloff 0.99)
   to the backbone rate, when the file rate differs;
4. zero-pad at the end to at least 32000 samples (2 s at 16 kHz, whatever the rate); never crop.
Which files are read, and how generated and reference files pair up, is `clips.py`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from fluxbench.audio import read_audio

FRONTEND = "audioldm_eval@83d7b13"
MIN_SAMPLES = 32_000
SINC_WIDTH = 6
SINC_ROLLOFF = 0.99


def sinc_resample(wave: np.ndarray, orig_rate: int, new_rate: int, lowpass_filter_width: int = SINC_WIDTH,
                  rolloff: float = SINC_ROLLOFF, kaiser_beta: float | None = None) -> np.ndarray:
    """Windowed-sinc resampling along the last axis, numerically torchaudio.functional.resample's default.

    Output sample j (time j / new_rate) is sum_i x_i k(i / orig - j / new) in units reduced by the rates' gcd,
    with k(u) = (f / orig) sinc(pi f u) cos^2(pi f u / (2 W)) for |f u| < W and 0 outside, f = min(orig, new) *
    rolloff the cutoff, W the lowpass width in zero crossings; with `kaiser_beta` the window is instead
    I0(beta sqrt(1 - (f u / W)^2)) / I0(beta) (torchaudio's "sinc_interp_kaiser"). The kernel is built in the input's dtype (as
    the reference does for float32 audio) and the output has ceil(new * length / orig) samples.
    """
    import torch
    import torch.nn.functional as F

    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wave
    common = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // common, int(new_rate) // common
    data = torch.from_numpy(np.ascontiguousarray(wave))
    cutoff = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=data.dtype)[None, None] / orig
    times = torch.arange(0, -new, -1, dtype=data.dtype)[:, None, None] / new + taps
    times = (times * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)
    if kaiser_beta is None:
        window = torch.cos(times * math.pi / lowpass_filter_width / 2) ** 2
    else:
        beta = torch.tensor(float(kaiser_beta), dtype=data.dtype)
        window = torch.i0(beta * torch.sqrt(1 - (times / lowpass_filter_width) ** 2)) / torch.i0(beta)
    times = times * math.pi
    kernel = torch.where(times == 0, torch.ones_like(times), times.sin() / times) * (window * (cutoff / orig))
    rows = data.reshape(-1, data.shape[-1])
    padded = F.pad(rows, (width, width + orig))
    phases = F.conv1d(padded[:, None], kernel, stride=orig)  # [rows, new phases, frames]
    out = phases.transpose(1, 2).reshape(rows.shape[0], -1)[:, :math.ceil(new * rows.shape[-1] / orig)]
    return out.reshape(*data.shape[:-1], out.shape[-1]).numpy()


def reference_waveform(path: str | os.PathLike, rate: int) -> np.ndarray:
    """One file through the 83d7b13 front-end: float32 mono at `rate`, at least MIN_SAMPLES long."""
    audio, file_rate = read_audio(path)
    wave = audio[0]
    wave = wave - wave.mean()
    if file_rate != rate:
        wave = sinc_resample(wave, file_rate, rate)
    if wave.shape[-1] < MIN_SAMPLES:
        wave = np.pad(wave, (0, MIN_SAMPLES - wave.shape[-1]))
    return wave.astype(np.float32, copy=False)
