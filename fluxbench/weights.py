"""Where weights come from: local path, a weights directory, the Hugging Face hub or its cache, a URL.

Resolution order for every component:
1. an explicit local path (file or folder), e.g. from a CLI flag;
2. the component's environment variable (e.g. FLUXBENCH_VGGISH=/data/vggish.pth);
3. `<weights dir>/<local name>` where the weights dir is `--weights-dir` or $FLUXBENCH_WEIGHTS_DIR;
4. the Hugging Face cache (no network);
5. a download (hub or URL) unless offline mode is on ($HF_HUB_OFFLINE=1 or $FLUXBENCH_OFFLINE=1) or the
   server cannot be reached (tried once per host and process, a few seconds at most, so a machine without
   network fails at once instead of retrying every component).
When several components are missing, one error lists all of them with how to supply each.

Local copies mirror the hub: `<weights dir>/<repo name>/<subfolder or file>`, e.g.
`$FLUXBENCH_WEIGHTS_DIR/audioldm2/vae` or `$FLUXBENCH_WEIGHTS_DIR/FluxMusic/musicflow_s.pt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from fluxbench import FluxbenchError
from fluxbench.atomic import write_json

WEIGHTS_DIR_ENV = "FLUXBENCH_WEIGHTS_DIR"
CACHE_ENV = "FLUXBENCH_CACHE"


def cache_dir() -> Path:
    """fluxbench's own cache (downloads by URL, checksum memo, cached text embeddings); $FLUXBENCH_CACHE."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fluxbench")


def __getattr__(name: str):
    if name == "CACHE_DIR":  # read at use, so a changed $FLUXBENCH_CACHE takes effect
        return cache_dir()
    raise AttributeError(name)


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
    # Hub folder downloads: only these files (a repo may also hold other frameworks' copies).
    allow_patterns: tuple[str, ...] | None = None
    # Paths that a resolved folder must contain to count as this component.
    required: tuple[str, ...] = ()

    def missing_parts(self, path: Path) -> list[str]:
        return [part for part in self.required if not (path / part).exists()] if path.is_dir() else []

    @property
    def where(self) -> str:
        if self.url:
            return self.url
        part = self.filename or self.subfolder
        return f"hf://{self.hub_repo}" + (f"/{part}" if part else "")


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "FLUXBENCH_OFFLINE"))


HUB_ENDPOINT = "https://huggingface.co"
REACH_TIMEOUT_S = 3.0
_reachable: dict[tuple[str, int], bool] = {}  # (host, port) -> answer, asked once per process


def _address(source: WeightSource) -> tuple[str, int]:
    url = urllib.parse.urlsplit(source.url or os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT)
    return url.hostname or url.path, url.port or (80 if url.scheme == "http" else 443)


def server_of(source: WeightSource) -> str:
    """The host a download of `source` would contact."""
    return _address(source)[0]


def reachable(source: WeightSource) -> bool:
    """Whether the server of `source` accepts a connection; one short attempt per host and process."""
    address = _address(source)
    if address not in _reachable:
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT_S).close()
            _reachable[address] = True
        except OSError:
            _reachable[address] = False
    return _reachable[address]


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


def hf_cache_dir() -> str | None:
    """The hub cache folder as configured now ($HF_HUB_CACHE, else $HF_HOME/hub); None for the library default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _from_hf_cache(source: WeightSource) -> Path | None:
    if not source.hub_repo:
        return None
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
    except ImportError:
        return None
    if source.filename:
        hit = try_to_load_from_cache(source.hub_repo, source.filename, cache_dir=hf_cache_dir())
        return Path(hit) if isinstance(hit, str) else None
    try:
        for repo in scan_cache_dir(hf_cache_dir()).repos:
            if repo.repo_id == source.hub_repo:
                for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
                    folder = Path(revision.snapshot_path) / (source.subfolder or "")
                    if folder.is_dir() and any(folder.iterdir()) and not source.missing_parts(folder):
                        return folder
    except Exception:  # an unreadable or absent cache is the same as a miss
        return None
    return None


def _download(source: WeightSource) -> Path:
    if source.url:
        target = cache_dir() / "weights" / source.local_name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            urllib.request.urlretrieve(source.url, partial)
            os.replace(partial, target)
        return target
    from huggingface_hub import hf_hub_download, snapshot_download

    if source.filename:
        return Path(hf_hub_download(source.hub_repo, source.filename, cache_dir=hf_cache_dir()))
    patterns = list(source.allow_patterns) if source.allow_patterns else None
    if source.subfolder and not patterns:
        patterns = [f"{source.subfolder}/*"]
    root = Path(snapshot_download(source.hub_repo, allow_patterns=patterns, cache_dir=hf_cache_dir()))
    return root / (source.subfolder or "")


def how_to_supply(source: WeightSource, root: Path | None) -> str:
    """One line: the component, where it lives online, its environment variable and its weights-dir path."""
    return f"{source.name}: {supply_hint(source, root)}"


def supply_hint(source: WeightSource, root: Path | None) -> str:
    in_dir = f"{root}/{source.local_name}" if root else f"$FLUXBENCH_WEIGHTS_DIR/{source.local_name}"
    return f"{source.where} (or set {source.env_var}=PATH, or place it at {in_dir})"


def locate(source: WeightSource, explicit: str | os.PathLike | None = None, root: Path | None = None) -> Path | None:
    """A local copy of `source` (explicit path, env var, weights dir, HF cache) or None; never downloads.

    An explicit path that does not exist, or a folder lacking required parts, is an error rather than a miss.
    """
    path = next((p for p in _local_candidates(source, explicit, root) if p.exists()), None)
    if explicit and path is None:
        raise MissingWeightsError(f"{source.name}: {explicit} does not exist")
    if path is not None and source.missing_parts(path):
        raise MissingWeightsError(
            f"{source.name}: {path} lacks {', '.join(source.missing_parts(path))}; expected a copy of {source.where}")
    return path or _from_hf_cache(source)


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
        path = locate(source, explicit, root)
        if path is None and not offline():
            if not reachable(source):
                missing.append(f"{how_to_supply(source, root)} [{server_of(source)} unreachable]")
                found.append(None)
                continue
            try:
                path = _download(source)
            except Exception as error:  # no such repo, a gated repo, a dropped connection, ...
                missing.append(f"{how_to_supply(source, root)} [download failed: {type(error).__name__}]")
                found.append(None)
                continue
        if path is None:
            missing.append(how_to_supply(source, root))
        elif source.sha256 and path.is_file() and sha256_of(path) != source.sha256:
            raise MissingWeightsError(f"{source.name}: {path} has the wrong checksum; expected sha256 {source.sha256}")
        found.append(path)
    if missing:
        mode = " (offline mode)" if offline() else ""
        raise MissingWeightsError(f"missing weights{mode}: " + "; ".join(missing))
    return [p for p in found if p is not None]


def checksum(path: str | os.PathLike) -> str:
    """sha256_of(path), remembered in the cache per (path, size, mtime) so multi-GB weights are hashed once."""
    path = Path(path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = hashlib.sha256(
        json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]).encode()).hexdigest()
    memo_file = cache_dir() / "checksums.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if stamp not in memo:
        memo[stamp] = sha256_of(path)
        try:
            write_json(memo_file, memo)
        except OSError:  # a read-only cache only costs re-hashing next time
            pass
    return memo[stamp]
