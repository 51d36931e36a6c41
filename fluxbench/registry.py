"""Name -> factory tables for models, sets, metrics and backbones, and the readers of model folders.

Entries name their factory as "module:attribute" and carry static facts for listings, so that
`fluxbench models` and `fluxbench sets` import nothing heavy. A model is named either by its registered name
or by a model folder, which the folder reader whose marker file it holds loads (`model_entry`).
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fluxbench import FluxbenchError

KINDS = ("model", "set", "metric", "backbone")


class UnknownNameError(FluxbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    target: str  # "package.module:callable"
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    bound: dict[str, Any] = field(default_factory=dict)  # keyword arguments the factory always receives

    def load(self) -> Callable[..., Any]:
        module_name, _, attribute = self.target.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):  # "Class.classmethod" targets are allowed
            target = getattr(target, part)
        return target

    def create(self, **options: Any) -> Any:
        return self.load()(**{**self.bound, **options})


_TABLES: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_FOLDER_READERS: dict[str, Entry] = {}  # marker file name -> the reader of folders that hold it


def register(kind: str, name: str, target: str, summary: str, bound: dict[str, Any] | None = None,
             **facts: Any) -> Entry:
    if kind not in _TABLES:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    if name in _TABLES[kind]:
        raise ValueError(f"{kind} {name!r} is registered twice")
    entry = Entry(kind, name, target, summary, dict(facts), dict(bound or {}))
    _TABLES[kind][name] = entry
    return entry


def register_model_folder(marker: str, target: str, summary: str, **facts: Any) -> Entry:
    """`target(folder=PATH, **options)` loads any folder holding the file `marker`."""
    if marker in _FOLDER_READERS:
        raise ValueError(f"model folders marked by {marker!r} have a reader already")
    entry = Entry("model", marker, target, summary, dict(facts))
    _FOLDER_READERS[marker] = entry
    return entry


def model_folder_reader(path: str | os.PathLike) -> Entry | None:
    """The reader of the model folder at `path`; None when it is not a folder any reader claims."""
    _ensure_builtin()
    folder = Path(path)
    return next((reader for marker, reader in _FOLDER_READERS.items() if (folder / marker).is_file()), None)


def model_entry(name: str) -> Entry:
    """The model `name` names: a model folder (named by the folder, its path bound as `folder`) or a registered
    model (an unknown name fails with a suggestion)."""
    reader = model_folder_reader(name)
    if reader is None:
        return get("model", name)
    folder = Path(name)
    return Entry("model", folder.resolve().name, reader.target, reader.summary, dict(reader.facts),
                 {"folder": str(folder)})


def entries(kind: str) -> list[Entry]:
    _ensure_builtin()
    return list(_TABLES[kind].values())


def get(kind: str, name: str) -> Entry:
    _ensure_builtin()
    table = _TABLES[kind]
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, table, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownNameError(f"unknown {kind} {name!r}{hint}; known: {', '.join(sorted(table))}")


_builtin_loaded = False


def _ensure_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        importlib.import_module("fluxbench.catalog")
