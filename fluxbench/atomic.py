"""Atomic file output: readers (and a crash) see the old file or the whole new one, never a torn one.

The one place for it: results, clips, checkpoints, caches, reports and studies all write through here.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Temporary files for `path` left by writers on this machine that were killed before they finished."""
    pattern = f".{glob.escape(path.stem)}.{_HOST}-*{glob.escape(path.suffix)}"
    for leftover in path.parent.glob(pattern):
        match = re.fullmatch(rf"\.{re.escape(path.stem)}\.{re.escape(_HOST)}-(\d+)\..+", leftover.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                leftover.unlink()
            except OSError:
                pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same suffix, so writers can infer the format); it replaces `path`
    only when the block finishes without an exception.

    The temporary name carries this machine and process, so a later writer of the same file removes what a
    killed one left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.{_HOST}-{os.getpid()}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **dump_options: Any) -> Path:
    """JSON (indented, NaN refused unless `allow_nan` is passed), flushed to disk before it replaces `path`."""
    options = {"indent": 2, "allow_nan": False, **dump_options}
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, **options)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return Path(target)
