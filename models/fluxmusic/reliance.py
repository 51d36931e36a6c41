"""Caption reliance: how much a FluxMusic model's loss on real clips depends on being given their own captions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from fluxbench.models.fluxmusic.conditioner import TextConditioning
from fluxbench.models.fluxmusic.transformer import music_ids, patchify, text_ids

if TYPE_CHECKING:
    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel

RELIANCE_TIMES = (0.7, 0.85, 0.95)  # high noise: where what the caption names is decided, not the denoising


def caption_reliance(model: FluxMusicModel, waveforms: Sequence[np.ndarray], sample_rate: int,
                     captions: Sequence[str], seed: int = 0) -> float | None:
    """Relative rise of the rectified-flow loss on these clips at high noise (t = RELIANCE_TIMES, where the
    sample's content is decided) when the captions are rotated by one, so each clip gets another's."""
    from fluxbench.audio import resample

    if model.objective_name != "rectified_flow" or len(captions) < 2:
        return None
    waves = [np.asarray(w, np.float32).reshape(-1) for w in waveforms]
    if sample_rate != model.sample_rate:
        waves = [resample(w, sample_rate, model.sample_rate) for w in waves]
    samples = min(len(w) for w in waves)
    own = model.encode_text(list(captions), "", 1.0)[0]
    other = TextConditioning(torch.roll(own.txt, -1, dims=0), torch.roll(own.y, -1, dims=0))
    losses = {"own": 0.0, "other": 0.0}
    for start in range(0, len(waves), model.batch_size):
        rows = slice(start, start + model.batch_size)
        batch = torch.from_numpy(np.stack([w[:samples] for w in waves[rows]])).to(model.device)
        with torch.inference_mode():
            tokens = model.codec.encode(batch).float()
            count, _, height, width = tokens.shape
            tokens = patchify(tokens)
            noise = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(seed + start)).to(model.device)
            for name, text in (("own", own[rows]), ("other", other[rows])):
                text = text.to(model.device, torch.float32)
                cond = {"img_ids": music_ids(count, height, width, model.device), "txt": text.txt,
                        "txt_ids": text_ids(count, text.txt.shape[1], model.device), "y": text.y}
                for t in RELIANCE_TIMES:
                    time = torch.full((count,), t, device=model.device)
                    loss = model.objective.training_loss(model.transformer, tokens, cond, t=time, noise=noise)
                    losses[name] += float(loss) * count
    return losses["other"] / max(losses["own"], 1e-12) - 1.0
