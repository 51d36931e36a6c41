"""Training evidence on the offline demo corpus: the loss falls, the trained model beats the untrained one,
and rectified flow vs DDPM/DDIM at the same training budget and the same sampling steps.

    python bench/bench_training.py [--steps 400] [--clips 64] [--sample-steps 10 25 50] [--out runs/bench-training]

Trains two tiny FluxMusic models with `fluxbench train --preset demo` settings (one rectified flow, one DDPM;
same data, seed, steps, batch and learning rate), resuming if their folders already hold the runs, then
generates one clip per held-out caption with each model and with an untrained (randomly initialised) one
through the FluxMusic generation pipeline (mel codec, Griffin-Lim), and measures each set against the held-out
references:

- FD mel-stats: Frechet distance between Gaussians fitted to per-clip log-mel statistics (mean and standard
  deviation of each of the 64 AudioLDM 2 mel bins over time: a 128-d weight-free descriptor);
- mean-mel L2: distance between the sets' average log-mel spectra;
- attribute accuracy: how often a nearest-centroid classifier fitted on training clips' descriptors recovers
  the caption's dynamics (soft/loud, chance 50%) and drums (with/without, chance 50%) from the generated clip.

A "references" row scores held-out-sized training clips against the held-out references: the floor a perfect
generator would reach with this many clips.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fluxbench.audio import mel_spectrogram, read_audio
from fluxbench.models.fluxmusic.checkpoint import load_model_folder
from fluxbench.models.fluxmusic.latent import build_codec
from fluxbench.models.fluxmusic.pipeline import FluxMusicModel, GenerationError
from fluxbench.models.fluxmusic.train import demo_config, read_losses, train
from fluxbench.models.fluxmusic.transformer import FluxMusicTransformer
from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner
from fluxbench.protocols.metrics import frechet_distance
from fluxbench.protocols.sets.demo import DemoSet


def descriptors(waves: np.ndarray) -> np.ndarray:
    """[clips, samples] at 16 kHz -> [clips, 128]: per-mel-bin mean and standard deviation of the log-mel."""
    mel = mel_spectrogram(torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))).numpy()
    return np.concatenate([mel.mean(axis=1), mel.std(axis=1)], axis=1).astype(np.float64)


def read_clips(paths) -> np.ndarray:
    return np.stack([read_audio(p)[0][0] for p in paths])


class AttributeProbe:
    """Nearest-centroid classifiers on standardised descriptors, one per caption attribute."""

    ATTRIBUTES = ("dynamics", "drums")

    def __init__(self, features: np.ndarray, specs) -> None:
        self.mean, self.scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        z = (features - self.mean) / self.scale
        self.centroids = {}
        for name in self.ATTRIBUTES:
            labels = np.array([getattr(s, name) for s in specs])
            self.centroids[name] = {v: z[labels == v].mean(axis=0) for v in set(labels.tolist())}

    def accuracy(self, features: np.ndarray, specs) -> dict[str, float]:
        z = (features - self.mean) / self.scale
        result = {}
        for name, centroids in self.centroids.items():
            values = list(centroids)
            distances = np.stack([np.linalg.norm(z - centroids[v], axis=1) for v in values], axis=1)
            predicted = [values[i] for i in distances.argmin(axis=1)]
            result[name] = float(np.mean([p == getattr(s, name) for p, s in zip(predicted, specs)]))
        return result


def untrained_like(folder: Path, seed: int) -> FluxMusicModel:
    """The trained model's architecture, codec and text encoder shape, with fresh random weights."""
    trained, spec = load_model_folder(folder)
    torch.manual_seed(seed)
    transformer = FluxMusicTransformer(trained.config)
    conditioner = VocabConditioner.from_spec(spec["conditioner"])
    return FluxMusicModel(transformer, conditioner, build_codec(spec["codec"]), objective=spec["objective"],
                          name="untrained")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per model")
    parser.add_argument("--clips", type=int, default=64, help="held-out captions / references scored")
    parser.add_argument("--sample-steps", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--out", default="runs/bench-training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    out = Path(args.out)
    runs = {}
    for objective in ("rectified_flow", "ddpm"):
        folder = out / objective
        started = time.perf_counter()
        train(demo_config(out=str(folder), objective=objective, steps=args.steps, seed=args.seed), progress=True)
        losses = [r["loss"] for r in read_losses(folder)]
        window = max(1, len(losses) // 10)
        runs[objective] = {"folder": folder, "first": np.mean(losses[:window]), "last": np.mean(losses[-window:]),
                           "seconds": read_losses(folder)[-1]["seconds"], "wall": time.perf_counter() - started}

    held_out = list(DemoSet("heldout", size=args.clips, seed=args.seed).specs())
    captions = [spec.caption() for _, spec, _ in held_out]
    specs = [spec for _, spec, _ in held_out]
    reference = descriptors(read_clips([wav for _, _, wav in held_out]))
    training_clips = list(DemoSet("train", size=max(512, args.clips), seed=args.seed).specs())
    probe = AttributeProbe(descriptors(read_clips([w for _, _, w in training_clips])), [s for _, s, _ in training_clips])

    def score(features, row_specs):
        accuracy = probe.accuracy(features, row_specs)
        return {"fd": frechet_distance(features, reference),
                "mean_l2": float(np.linalg.norm(features[:, :64].mean(0) - reference[:, :64].mean(0))),
                **accuracy}

    rows = []
    floor = descriptors(read_clips([w for _, _, w in training_clips[:args.clips]]))
    rows.append(("references (train clips)", "-", "-", "-", score(floor, [s for _, s, _ in training_clips[:args.clips]]), 0.0))
    models = [("untrained", "rectified_flow", untrained_like(runs["rectified_flow"]["folder"], args.seed)),
              ("trained RF", "rectified_flow", FluxMusicModel.from_folder(runs["rectified_flow"]["folder"])),
              ("trained DDPM", "ddpm", FluxMusicModel.from_folder(runs["ddpm"]["folder"]))]
    for label, objective, model in models:
        model.batch_size = 16
        for steps in args.sample_steps:
            started = time.perf_counter()
            solver = model.settings(2.56, steps=steps)["solver"]
            try:
                audio = model.generate(captions, duration=2.56, seed=1000, steps=steps, guidance=args.guidance)
            except GenerationError as error:  # an under-trained DDPM can diverge at 1/sqrt(alpha-bar) ~ 160x
                print(f"{label}, {steps} steps: {error}")
                rows.append((label, objective, solver, steps, dict.fromkeys(("fd", "mean_l2", *AttributeProbe.ATTRIBUTES),
                                                                             float("nan")), 0.0))
                continue
            rows.append((label, objective, solver, steps, score(descriptors(audio.waveforms), specs),
                         time.perf_counter() - started))

    print(f"\nTraining ({args.steps} steps, global batch 16, demo preset; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'objective':<16}{'loss first 10%':>16}{'loss last 10%':>15}{'train s':>9}")
    for objective, run in runs.items():
        print(f"{objective:<16}{run['first']:>16.4f}{run['last']:>15.4f}{run['seconds']:>9.0f}")
    print(f"\nHeld-out evaluation ({args.clips} captions, guidance {args.guidance}; lower FD / L2 is better, "
          f"attribute accuracy chance = 0.50)")
    header = f"{'model':<26}{'objective':<16}{'solver':<8}{'steps':>6}{'FD mel-stats':>14}{'mean-mel L2':>13}" \
             f"{'dynamics acc':>14}{'drums acc':>11}{'gen s':>8}"
    print(header)
    print("-" * len(header))
    for label, objective, solver, steps, s, seconds in rows:
        print(f"{label:<26}{objective:<16}{solver:<8}{steps!s:>6}{s['fd']:>14.2f}{s['mean_l2']:>13.3f}"
              f"{s['dynamics']:>14.2f}{s['drums']:>11.2f}{seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
