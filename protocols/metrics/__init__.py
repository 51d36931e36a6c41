"""Metrics: FAD / FD / KL / IS / CLAP score, their backbones and the folder-vs-folder scorer.

Metric maths (numpy/torch, float64, validated against the reference libraries' own outputs):

    frechet_distance(emb_a, emb_b) -> float             FAD (VGGish frames) / FD (PANNs clips)
    kl_divergence(gen, ref) -> KLResult                 id -> 527 logits; .softmax, .sigmoid, per item, .unmatched
    inception_score(logits, splits=10, shuffle=True, seed=2020) -> (mean, std)
    clap_score(text_emb, audio_emb) -> float            mean per-pair cosine
    kernel_audio_distance(gen, ref, bandwidth="generated") -> KadResult   KAD (kadtk 1.1.0 convention)

Each metric is defined once, in `table.py` (key, label, better direction, reference name, backbone output,
compute function in `compute.py`). Folders of audio (see `fluxbench.protocols.metrics.scoring` for the full
contract):

    score_folders(gen_dir, ref_dir=None, metrics=None, backbone="paper", captions=None,
                  bootstrap=0, seed=0, cache_dir=None, ...) -> dict (JSON-serialisable)
        metrics=None: the paper's fad, fd, kl, is, clap (KAD is asked for by name)
"""

from fluxbench.protocols.metrics.clap_score import clap_cosines, clap_score
from fluxbench.protocols.metrics.frechet import GaussianStats, frechet_distance, frechet_distance_from_stats
from fluxbench.protocols.metrics.inception import inception_score
from fluxbench.protocols.metrics.kad import KadResult, kernel_audio_distance
from fluxbench.protocols.metrics.kl import KLResult, kl_divergence


def score_folders(*args, **kwargs) -> dict:
    """Score a folder of generated audio against a folder of references; see `scoring.score_folders`."""
    from fluxbench.protocols.metrics.scoring import score_folders as run

    return run(*args, **kwargs)


__all__ = ["GaussianStats", "KLResult", "KadResult", "clap_cosines", "clap_score", "frechet_distance",
           "frechet_distance_from_stats", "inception_score", "kernel_audio_distance", "kl_divergence",
           "score_folders"]
