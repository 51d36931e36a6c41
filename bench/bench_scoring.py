"""Scoring throughput: audioldm_eval's evaluation loop vs `fluxbench score`, same folders, same random weights.

    python bench/bench_scoring.py [--clips 8] [--seconds 10] [--rounds 2]

Folders: `--clips` generated clips (16 kHz) and as many references (44.1 kHz, so the resampler runs), mono.
Weights: VGGish and PANNs CNN14 (16 kHz) of the real sizes, randomly initialised, written to files and loaded
by both sides. Metrics: FAD (VGGish), FD, KL, IS (CNN14); no bootstrap, no embedding cache.

- "audioldm_eval loop": the structure of audioldm_eval's `EvaluationHelper` (git 83d7b13), copied here for
  timing only: every file decoded and resampled once per backbone, one clip per forward (its loaders use
  batch size 1), CNN14 with its BatchNorm layers as the checkpoint has them, then the statistics with
  np.mean / np.cov and scipy's sqrtm (`calculate_frechet_distance`), KL and IS on the logits.
- "fluxbench, files read per backbone": `score_folders` with each backbone decoding on its own (the layout
  before files were shared).
- "fluxbench score": `score_folders` as it runs now.
All three run interleaved, round after round; the table gives the median seconds, clips per second (generated
plus reference) and the ratio to the audioldm_eval loop, and checks that the values agree.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, machine_load, random_cnn14, with_checkpoint_layout  # noqa: E402


def make_folders(root: Path, clips: int, seconds: float) -> tuple[Path, Path]:
    from fluxbench.audio import write_wav

    rng = np.random.default_rng(0)
    for index in range(clips):
        for role, rate in (("gen", 16_000), ("ref", 44_100)):
            t = np.arange(int(seconds * rate)) / rate
            wave = 0.3 * np.sin(2 * np.pi * 110 * (1 + index % 7) * t) + 0.05 * rng.standard_normal(t.size)
            write_wav(root / role / f"clip{index:03d}.wav", wave.astype(np.float32), rate)
    return root / "gen", root / "ref"


def make_weights(root: Path) -> dict[str, Path]:
    from fluxbench.protocols.metrics.backbones.vggish import build_vggish

    cnn14 = random_cnn14(all_batch_norm_terms=False)  # running variances only, as the recorded results used
    paths = {"vggish": root / "vggish.pth", "panns-16k": root / "cnn14.pth"}
    torch.save(build_vggish().state_dict(), paths["vggish"])
    torch.save({"model": cnn14.state_dict()}, paths["panns-16k"])
    return paths


def audioldm_eval_loop(gen: Path, ref: Path, weights: dict[str, Path]) -> dict[str, float]:
    """audioldm_eval's order of work, on our implementations of its front-end and networks."""
    from fluxbench.protocols.metrics.backbones import read_state_dict
    from fluxbench.protocols.metrics.backbones.panns import CNN14_CONFIGS, build_cnn14
    from fluxbench.protocols.metrics.backbones.vggish import build_vggish, log_mel_examples
    from fluxbench.protocols.metrics.frechet import reference_frechet_distance
    from fluxbench.protocols.metrics.inception import inception_score
    from fluxbench.protocols.metrics.kl import kl_divergence
    from fluxbench.protocols.metrics.frontend import reference_waveform

    cnn14 = build_cnn14(CNN14_CONFIGS["panns-16k"])
    cnn14.load_state_dict(read_state_dict(weights["panns-16k"], "CNN14"))
    with_checkpoint_layout(cnn14)
    vggish = build_vggish()
    vggish.load_state_dict(read_state_dict(weights["vggish"], "VGGish"))
    outputs = {}
    with torch.inference_mode():
        for role, folder in (("gen", gen), ("ref", ref)):
            files = sorted(folder.iterdir())
            panns = {}
            for path in files:  # the PANNs loader: one clip per batch
                embedding, logits = cnn14(torch.from_numpy(reference_waveform(path, 16_000))[None])
                panns[path.name] = (embedding[0].numpy(), logits[0].numpy())
            frames = []
            for path in files:  # the VGGish pass reads every file again
                examples = log_mel_examples(reference_waveform(path, 16_000))
                frames.append(vggish(torch.from_numpy(examples)[:, None]).numpy())
            outputs[role] = (panns, np.concatenate(frames).astype(np.float64))

    def statistics_of(rows):
        return rows.mean(axis=0), np.cov(rows, rowvar=False)

    gen_panns, gen_frames = outputs["gen"]
    ref_panns, ref_frames = outputs["ref"]
    gen_embeddings = np.stack([v[0] for v in gen_panns.values()]).astype(np.float64)
    ref_embeddings = np.stack([v[0] for v in ref_panns.values()]).astype(np.float64)
    kl = kl_divergence({k: v[1] for k, v in gen_panns.items()}, {k: v[1] for k, v in ref_panns.items()})
    return {"fad": reference_frechet_distance(*statistics_of(gen_frames), *statistics_of(ref_frames)),
            "fd": reference_frechet_distance(*statistics_of(gen_embeddings), *statistics_of(ref_embeddings)),
            "kl_softmax": kl.softmax,
            "is": inception_score(np.stack([v[1] for v in gen_panns.values()]), 10, True, 2020)[0]}


def fluxbench_score(gen: Path, ref: Path, weights: dict[str, Path], shared: bool) -> dict[str, float]:
    from fluxbench.protocols.metrics.backbones import Backbone
    from fluxbench.protocols.metrics.scoring import score_folders

    original = Backbone.wave_source
    if not shared:
        Backbone.wave_source = property(lambda self: (self.name, self.sample_rate))
    try:
        results = score_folders(gen, ref, metrics="fad,fd,kl,is", weights=weights, cache_dir=None, device="cpu")
    finally:
        Backbone.wave_source = original
    return {key: results["metrics"][key]["value"] for key in ("fad", "fd", "kl_softmax", "is")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10, help="clips per folder (IS needs >= 10)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the few-clip folders make the scorer warn about rank-deficient sets
    os.environ.setdefault("FLUXBENCH_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        gen, ref = make_folders(root, args.clips, args.seconds)
        weights = make_weights(root)
        times, values = interleaved({
            "audioldm_eval loop": lambda: audioldm_eval_loop(gen, ref, weights),
            "fluxbench, files read per backbone": lambda: fluxbench_score(gen, ref, weights, False),
            "fluxbench score": lambda: fluxbench_score(gen, ref, weights, True)}, args.rounds)
    clips = 2 * args.clips
    print(f"Scoring {args.clips} generated (16 kHz) + {args.clips} reference (44.1 kHz) clips of {args.seconds:g} s: "
          f"FAD, FD, KL, IS with real-size random VGGish and CNN14; median of {args.rounds} interleaved rounds; "
          f"{machine_load()}")
    header = f"{'pipeline':36s} {'seconds':>8s} {'clips/s':>8s} {'ratio':>6s} {'largest rel. diff':>18s}"
    print(header)
    print("-" * len(header))
    baseline = statistics.median(times["audioldm_eval loop"])
    for name in times:
        seconds = statistics.median(times[name])
        diff = max(abs(values[name][k] - values["audioldm_eval loop"][k]) / max(abs(values["audioldm_eval loop"][k]),
                                                                                1e-12)
                   for k in values[name])
        print(f"{name:36s} {seconds:8.2f} {clips / seconds:8.2f} {baseline / seconds:6.2f} {diff:18.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
