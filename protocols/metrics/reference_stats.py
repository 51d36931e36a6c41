"""Reference statistics without reference audio: fadtk's `.npz` format (`--ref-stats FILE:BACKBONE`).

fadtk 1.1.0 stores one mean and one covariance per backbone in a numpy `.npz`: `<backbone>.mu` (d,) and
`<backbone>.cov` (d, d) (float64; fadtk's `package` command writes them, and its wheel ships
`fadtk/stats/fma_pop.npz` for the FMA-pop reference set). FILE may also be the bare name `fma_pop` (or any
other name under that folder) when fadtk is installed; the package is located, never imported.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np

from fluxbench import FluxbenchError
from fluxbench.protocols.metrics.frechet import GaussianStats


class ReferenceStatsError(FluxbenchError):
    pass


def parse_ref_stats(spec: str, default_key: str | None = None) -> tuple[Path, str]:
    """"FILE:BACKBONE" (or "FILE" with the backbone name as the key) -> (path, key)."""
    text = str(spec)
    path, sep, key = text.rpartition(":")
    if not sep or not key or "/" in key or os.sep in key:
        path, key = text, default_key
    if not key:
        raise ReferenceStatsError(f"--ref-stats {spec!r}: expected FILE:BACKBONE, e.g. fma_pop.npz:clap-laion-music")
    return locate_stats_file(path), key


def locate_stats_file(path: str | os.PathLike) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.parent == Path(".") and candidate.suffix in ("", ".npz"):
        shipped = fadtk_stats_folder()
        if shipped is not None and (shipped / f"{candidate.stem}.npz").is_file():
            return shipped / f"{candidate.stem}.npz"
    raise ReferenceStatsError(f"reference statistics {path}: no such file"
                              + ("" if fadtk_stats_folder() else " (and fadtk, whose wheel ships fma_pop.npz, is not "
                                                                 "installed)"))


def fadtk_stats_folder() -> Path | None:
    spec = importlib.util.find_spec("fadtk")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "stats"
    return folder if folder.is_dir() else None


def available_keys(path: str | os.PathLike) -> list[str]:
    with _open(path) as data:
        return sorted(name[:-3] for name in data.files if name.endswith(".mu") and f"{name[:-3]}.cov" in data.files)


def load_reference_stats(path: str | os.PathLike, key: str) -> GaussianStats:
    """Mean and covariance of `key` from a fadtk statistics file, validated; the row count is unknown (inf)."""
    with _open(path) as data:
        if f"{key}.mu" not in data.files or f"{key}.cov" not in data.files:
            keys = sorted(n[:-3] for n in data.files if n.endswith(".mu"))
            raise ReferenceStatsError(f"{path}: no statistics for {key!r} (expected arrays '{key}.mu' and "
                                      f"'{key}.cov'); the file has: {', '.join(keys) or 'none'}")
        mean = np.asarray(data[f"{key}.mu"], dtype=np.float64)
        cov = np.asarray(data[f"{key}.cov"], dtype=np.float64)
    if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
        raise ReferenceStatsError(f"{path}: {key}.mu has shape {mean.shape} and {key}.cov {cov.shape}; expected "
                                  "(d,) and (d, d)")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise ReferenceStatsError(f"{path}: statistics for {key!r} contain NaN or infinite values")
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(cov).max()))):
        raise ReferenceStatsError(f"{path}: {key}.cov is not symmetric, so it is not a covariance matrix")
    return GaussianStats(mean, cov, float("inf"))


def write_reference_stats(path: str | os.PathLike, stats: dict[str, GaussianStats]) -> Path:
    """Write statistics in fadtk's format (for a reference set scored once and reused without its audio)."""
    from fluxbench.atomic import atomic_path

    arrays = {}
    for key, value in stats.items():
        arrays[f"{key}.mu"] = np.asarray(value.mean, dtype=np.float64)
        arrays[f"{key}.cov"] = np.asarray(value.cov, dtype=np.float64)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
    return Path(path)


def _open(path: str | os.PathLike):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ReferenceStatsError(f"{path}: not a numpy .npz statistics file ({type(error).__name__})") from None
