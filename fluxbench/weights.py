"""Where weights come from: local path, a weights directory, the Hugging Face hub or its cache, a URL.

Resolution order for every component:
1. an explicit local path (file or folder), e.g. from a CLI flag;
2. the component's environment variable (e.g. FLUXBENCH_VGGISH=/data/vggish.pth);
3. `<weights dir>/<local name>` where the weights dir is `--weights-dir` or $FLUXBENCH_WEIGHTS_DIR;
4. the Hugging Face cache (no network);
5. a download (hub or URL) unless offline mode is on ($HF_HUB_OFFLINE=1 or $FLUXBENCH_OFFLINE=1).
When several components are missing, one error lists all of them with how to supply each.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from fluxbench import FluxbenchError

WEIGHTS_DIR_ENV = "FLUXBENCH_WEIGHTS_DIR"
CACHE_DIR = Path(os.environ.get("FLUXBENCH_CACHE", Path.home() / ".cache" / "fluxbench"))


class MissingWeightsError(FluxbenchError):
    pass


@dataclass(frozen=True)
class WeightSource:
    """One downloadable component.

    Exactly one of `hub_repo` (with optional `filename` for a single file, or `subfolder` for a
    save_pretrained folder) or `url` (a single file) says where it lives online.
    """

    name: str  # short human name, e.g. "AudioLDM 2 VAE"
    env_var: str  # e.g. "FLUXBENCH_AUDIOLDM2_VAE"
    local_name: str  # file or folder name looked up under the weights dir
    hub_repo: str | None = None
    filename: str | None = None
    subfolder: str | None = None
    url: str | None = None
    sha256: str | None = None

    @property
    def where(self) -> str:
        if self.url:
            return self.url
        part = self.filename or self.subfolder
        return f"hf://{self.hub_repo}" + (f"/{part}" if part else "")


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "FLUXBENCH_OFFLINE"))


def weights_dir(override: str | os.PathLike | None = None) -> Path | None:
    value = override or os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value) if value else None


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Checksum of a file, or of a folder's files (names and contents, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _local_candidates(source: WeightSource, explicit: str | os.PathLike | None, root: Path | None) -> list[Path]:
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get(source.env_var):
        candidates.append(Path(os.environ[source.env_var]))
    if root is not None:
        candidates.append(root / source.local_name)
    return candidates


def _from_hf_cache(source: WeightSource) -> Path | None:
    if not source.hub_repo:
        return None
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
    except ImportError:
        return None
    if source.filename:
        hit = try_to_load_from_cache(source.hub_repo, source.filename)
        return Path(hit) if isinstance(hit, str) else None
    try:
        for repo in scan_cache_dir().repos:
            if repo.repo_id == source.hub_repo:
                for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
                    folder = Path(revision.snapshot_path) / (source.subfolder or "")
                    if folder.is_dir() and any(folder.iterdir()):
                        return folder
    except Exception:  # an unreadable or absent cache is the same as a miss
        return None
    return None


def _download(source: WeightSource) -> Path:
    if source.url:
        target = CACHE_DIR / "weights" / source.local_name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            urllib.request.urlretrieve(source.url, partial)
            os.replace(partial, target)
        return target
    from huggingface_hub import hf_hub_download, snapshot_download

    if source.filename:
        return Path(hf_hub_download(source.hub_repo, source.filename))
    pattern = f"{source.subfolder}/*" if source.subfolder else None
    root = Path(snapshot_download(source.hub_repo, allow_patterns=pattern))
    return root / (source.subfolder or "")


def _how_to_supply(source: WeightSource, root: Path | None) -> str:
    in_dir = f"{root}/{source.local_name}" if root else f"$FLUXBENCH_WEIGHTS_DIR/{source.local_name}"
    return f"{source.name}: {source.where} (or set {source.env_var}=PATH, or place it at {in_dir})"


def resolve(source: WeightSource, explicit: str | os.PathLike | None = None,
            weights_root: str | os.PathLike | None = None) -> Path:
    return resolve_all([(source, explicit)], weights_root)[0]


def resolve_all(requests: Iterable[tuple[WeightSource, str | os.PathLike | None]],
                weights_root: str | os.PathLike | None = None) -> list[Path]:
    """Resolve several components; if any is missing, one error lists every missing one."""
    root = weights_dir(weights_root)
    found: list[Path | None] = []
    missing: list[str] = []
    for source, explicit in requests:
        path = next((p for p in _local_candidates(source, explicit, root) if p.exists()), None)
        if explicit and path is None:
            raise MissingWeightsError(f"{source.name}: {explicit} does not exist")
        path = path or _from_hf_cache(source)
        if path is None and not offline():
            try:
                path = _download(source)
            except Exception as error:  # no network, no such repo, ...
                missing.append(f"{_how_to_supply(source, root)} [download failed: {type(error).__name__}]")
                found.append(None)
                continue
        if path is None:
            missing.append(_how_to_supply(source, root))
        elif source.sha256 and path.is_file() and sha256_of(path) != source.sha256:
            raise MissingWeightsError(f"{source.name}: {path} has the wrong checksum; expected sha256 {source.sha256}")
        found.append(path)
    if missing:
        mode = " (offline mode)" if offline() else ""
        raise MissingWeightsError(f"missing weights{mode}: " + "; ".join(missing))
    return [p for p in found if p is not None]
