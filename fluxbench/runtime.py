"""Runtime helpers every part of fluxbench shares: the compute device and dtype, torchrun's process group,
per-item seeds and canonical-JSON hashes.

torch is imported inside the functions that need it, so importing this module stays instant.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError

DTYPE_NAMES = ("float32", "bfloat16", "float16")


class DeviceError(FluxbenchError):
    pass


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(device=None):
    """A torch.device from cpu, cuda, cuda:N or auto/None (cuda when present)."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available here")
    return resolved


def resolve_dtype(dtype, device):
    """The compute dtype; auto/None is float16 on GPU (as the official samplers), float32 on CPU."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype {dtype!r}; expected auto or one of {list(DTYPE_NAMES)}")
    return getattr(torch, dtype)


def distributed(cuda: bool | None = None) -> tuple[int, int, Any]:
    """(rank, world size, torch.distributed or None): the process group torchrun set up, joined on first call
    (NCCL when the processes compute on CUDA, by default whenever it is present, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if (cuda_available() if cuda is None else cuda) else "gloo")
    return dist.get_rank(), dist.get_world_size(), dist


def derive_seed(seed: int, item_id: str) -> int:
    """A per-item seed that depends only on the run seed and the item's id, never on its position or batch."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def canonical_json(value: Any) -> str:
    """JSON with sorted keys (values JSON cannot hold written as str): equal data, equal text."""
    return json.dumps(value, sort_keys=True, default=str)


def content_hash(value: Any, length: int | None = None) -> str:
    """SHA-256 (hex, optionally cut to `length` characters) of the canonical JSON of `value`."""
    digest = hashlib.sha256(canonical_json(value).encode()).hexdigest()
    return digest[:length] if length else digest


def environment(device: str | None) -> dict[str, Any]:
    """Versions, commit, platform and device: what a results file records about where it was made."""
    import numpy
    import torch

    from fluxbench import __version__

    return {"fluxbench": __version__, "fluxbench_commit": git_commit(), "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": numpy.__version__,
            # the hub components and the baselines run through these; their versions change outputs
            "transformers": version_of("transformers"), "diffusers": version_of("diffusers"),
            "platform": platform.platform(), "device": device or "auto",
            "cuda": torch.cuda.get_device_name() if cuda_available() else None}


def version_of(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The commit of the fluxbench checkout in use (with "-dirty" for local changes); None for an installed copy."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) if commit else None
