"""Check an installation against fadtk's published per-song FAD (`fluxbench verify-backbones`).

fadtk 1.1.0's wheel ships 23 generated clips (MusicGen, MusicLM, Mubert; `fadtk/test/samples/*.opus`), their
published FAD against its FMA-pop statistics for every backbone (`fadtk/test/samples_FAD_scores.csv`, columns
`FAD_<backbone with - as _>_fma_pop`, rows `samples/<clip stem>` and `samples/all`) and those statistics
(`fadtk/stats/fma_pop.npz`). fluxbench ships none of them: it finds them in an installed fadtk (located, never
imported) or in a folder holding the clips and the CSV.

The computation is fadtk's: each clip's frames (float16) give a mean, rounded to float16 as numpy returns it
for float16 data, and an unbiased covariance; per-song FAD is the Frechet distance of that Gaussian to the
FMA-pop one. The set value pools the clips as fadtk's online statistics do (each clip's rounded mean and its
scatter about its own mean, merged with the usual between-clip correction).
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fluxbench import FluxbenchError
from fluxbench.protocols.metrics.frechet import GaussianStats, frechet_distance_from_stats
from fluxbench.protocols.metrics.table import FADTK_BACKBONES

SCORES_CSV = "samples_FAD_scores.csv"
SET_ROW = "all"
FADTK_PASS_PERCENT = 5.0  # fadtk's own test: max |difference| / mean of the computed values < 5 %


class VerifyError(FluxbenchError):
    pass


@dataclass
class BackboneCheck:
    backbone: str
    computed: dict[str, float] = field(default_factory=dict)  # clip stem (and "all") -> FAD
    published: dict[str, float] = field(default_factory=dict)

    @property
    def relative(self) -> dict[str, float]:
        return {song: abs(self.computed[song] - self.published[song]) / abs(self.published[song])
                for song in self.computed if song in self.published}

    @property
    def worst(self) -> tuple[str, float]:
        song = max(self.relative, key=self.relative.get)
        return song, self.relative[song]

    @property
    def fadtk_percent(self) -> float:
        songs = [s for s in self.computed if s != SET_ROW and s in self.published]
        biggest = max(abs(self.computed[s] - self.published[s]) for s in songs)
        return 100.0 * biggest / float(np.mean([self.computed[s] for s in songs]))


def column_of(backbone: str) -> str:
    return f"FAD_{backbone.replace('-', '_')}_fma_pop"


def fadtk_test_folder() -> Path | None:
    spec = importlib.util.find_spec("fadtk")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "test"
    return folder if (folder / SCORES_CSV).is_file() else None


def locate_samples(folder: str | os.PathLike | None) -> tuple[list[Path], Path]:
    """(clip files, scores CSV) from `folder` (the clips, with the CSV inside or beside it) or from fadtk."""
    if folder is None:
        root = fadtk_test_folder()
        if root is None:
            raise VerifyError("fadtk's 23 sample clips were not found: install fadtk (`pip install fadtk --no-deps`, "
                              "its wheel ships them) or pass --samples DIR (the clips and samples_FAD_scores.csv)")
        clips_dir, table = root / "samples", root / SCORES_CSV
    else:
        clips_dir = Path(folder)
        if not clips_dir.is_dir():
            raise VerifyError(f"--samples {folder}: no such folder")
        candidates = [clips_dir / SCORES_CSV, clips_dir.parent / SCORES_CSV]
        table = next((c for c in candidates if c.is_file()), None)
        if (clips_dir / "samples").is_dir():
            clips_dir = clips_dir / "samples"
        if table is None:
            raise VerifyError(f"--samples {folder}: no {SCORES_CSV} in it or beside it")
    from fluxbench.audio import list_audio

    return list_audio(clips_dir, "fadtk samples"), table


def read_published(table: str | os.PathLike, backbone: str) -> dict[str, float]:
    """Published per-song FAD of one backbone: clip stem (and "all") -> value."""
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column = column_of(backbone)
        if column not in (reader.fieldnames or []) or "song_id" not in (reader.fieldnames or []):
            raise VerifyError(f"{table}: no columns song_id and {column}")
        published = {}
        for line, row in enumerate(reader, start=2):
            try:
                published[row["song_id"].split("/")[-1]] = float(row[column])
            except (TypeError, ValueError):
                raise VerifyError(f"{table}, line {line}: {column} is not a number") from None
    return published


def clip_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """fadtk's per-file statistics of float16 frames: (float16-rounded mean, scatter about the exact mean, rows)."""
    data = np.asarray(frames, dtype=np.float16)
    if data.shape[0] < 2:
        raise VerifyError(f"a clip gave {data.shape[0]} frame(s); FAD needs at least 2")
    mean = data.mean(axis=0).astype(np.float64)  # numpy returns float16 for float16 input
    exact = data.astype(np.float64)
    centred = exact - exact.mean(axis=0)
    return mean, centred.T @ centred, data.shape[0]


def pooled_stats(per_clip: list[tuple[np.ndarray, np.ndarray, int]]) -> GaussianStats:
    """Merge per-clip (mean, scatter, rows) one clip at a time, as fadtk's online statistics do."""
    mean = np.zeros_like(per_clip[0][0])
    scatter = np.zeros_like(per_clip[0][1])
    rows = 0
    for clip_mean, clip_scatter, clip_rows in per_clip:
        delta = clip_mean - mean
        mean = mean + clip_rows / (rows + clip_rows) * delta
        scatter = scatter + clip_scatter + np.outer(delta, delta) * rows * clip_rows / (rows + clip_rows)
        rows += clip_rows
    return GaussianStats(mean, scatter / (rows - 1), float(rows))


def check_backbone(backbone, clips: list[Path], reference: GaussianStats, published: dict[str, float]) -> BackboneCheck:
    """Per-song and set FAD of `clips` with a loaded fadtk backbone against fixed reference statistics."""
    check = BackboneCheck(backbone.name, published=published)
    per_clip = []
    for path in clips:
        frames = backbone.embed([backbone.load_wave(path)])[0]["frames"]
        stats = clip_stats(frames)
        per_clip.append(stats)
        mean, scatter, rows = stats
        check.computed[path.stem] = frechet_distance_from_stats(GaussianStats(mean, scatter / (rows - 1), rows),
                                                                reference)
    check.computed[SET_ROW] = frechet_distance_from_stats(pooled_stats(per_clip), reference)
    return check


def format_checks(checks: list[BackboneCheck], missing: dict[str, str], tolerance_percent: float) -> str:
    rows = [("backbone", "clips", "worst rel. diff", "worst clip", "set FAD (ours / published)", "fadtk test")]
    for check in checks:
        song, relative = check.worst
        fadtk = check.fadtk_percent
        rows.append((check.backbone, str(len(check.computed) - 1), f"{100 * relative:.3f} %", song,
                     f"{check.computed[SET_ROW]:.4f} / {check.published.get(SET_ROW, float('nan')):.4f}",
                     f"{'pass' if fadtk < tolerance_percent else 'FAIL'} ({fadtk:.3f} %)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if checks:
        lines.append(f"fadtk test: max |ours - published| over the clips / mean of ours < {tolerance_percent:g} %")
    else:
        lines = []
    for name, reason in missing.items():
        lines.append(f"{name}: not checked: {reason}")
    return "\n".join(lines)
