"""CLAP score: mean over prompts of cos(text embedding, audio embedding of the clip generated from it).

The audiocraft / stable-audio-metrics computation: plain mean of per-pair cosines, no clamp, no x100 (some
audioldm_eval forks report mean(max(cos, 0)) x 100 instead; that is not this number).
"""

from __future__ import annotations

import numpy as np

from fluxbench import FluxbenchError


class ClapInputError(FluxbenchError):
    pass


def clap_score(text_emb, audio_emb) -> float:
    """Mean per-pair cosine between row i of `text_emb` and row i of `audio_emb`."""
    return float(clap_cosines(text_emb, audio_emb).mean())


def clap_cosines(text_emb, audio_emb) -> np.ndarray:
    text = _as_rows(text_emb, "text embeddings")
    audio = _as_rows(audio_emb, "audio embeddings")
    if text.shape != audio.shape:
        raise ClapInputError(f"text embeddings {text.shape} and audio embeddings {audio.shape} do not pair up")
    norms = np.linalg.norm(text, axis=1) * np.linalg.norm(audio, axis=1)
    if np.any(norms == 0):
        raise ClapInputError(f"row {int(np.argmax(norms == 0))} has a zero-length embedding; its cosine is undefined")
    return np.sum(text * audio, axis=1) / norms


def _as_rows(embeddings, name: str) -> np.ndarray:
    rows = np.asarray(embeddings)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ClapInputError(f"{name}: expected a non-empty 2-D (pairs, dims) array, got shape {rows.shape}")
    rows = rows.astype(np.float64)
    if not np.isfinite(rows).all():
        raise ClapInputError(f"{name} contain NaN or infinite values")
    return rows
