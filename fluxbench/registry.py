"""Name -> factory tables for models, sets, metrics and backbones, and the readers of model folders.

Entries name their factory as "module:attribute" and carry static facts for listings, so that
`fluxbench models` and `fluxbench sets` import nothing heavy. Outside code joins without an edit here:
- installed packages declare entry points in the groups `fluxbench.models` and `fluxbench.sets` (name =
  "module:factory"); they are listed and used by name like built-in entries (a built-in name wins);
- any "module:factory" (or "path/to/file.py:factory") names that factory directly, wherever a model or set
  name is accepted.
A model may also be named by a model folder, which the folder reader whose marker file it holds loads
(`model_entry`); a set by "hf:NAME_OR_PATH" (a Hugging Face dataset) or "table:FILE" (a caption table with an
audio folder) (`set_entry`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fluxbench import FluxbenchError

KINDS = ("model", "set", "metric", "backbone")
PLUGIN_GROUPS = {"model": "fluxbench.models", "set": "fluxbench.sets"}  # entry-point groups outside code uses
SET_SOURCES = {"hf": ("fluxbench.protocols.sets.hf:HuggingFaceSet", "Hugging Face dataset (hub id or local folder)"),
               "table": ("fluxbench.protocols.sets.table:TableSet", "caption table (CSV/TSV/JSON lines) + audio folder")}

log = logging.getLogger(__name__)


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
        if self.facts.get("external"):
            return load_external(self.target, self.kind)
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
    """The model `name` names: a model folder (named by the folder, its path bound as `folder`), a registered
    model (built-in or a plugin's), or a "module:factory" target (an unknown name fails with a suggestion)."""
    reader = model_folder_reader(name)
    if reader is not None:
        folder = Path(name)
        return Entry("model", folder.resolve().name, reader.target, reader.summary, dict(reader.facts),
                     {"folder": str(folder)})
    if is_external_target(name) and name not in _registered("model"):
        return external_entry("model", name)
    return get("model", name)


def set_entry(name: str) -> Entry:
    """The set `name` names: "hf:NAME_OR_PATH", "table:FILE", a registered set, or a "module:factory" target."""
    prefix, colon, source = name.partition(":")
    if colon and prefix in SET_SOURCES:
        if not source:
            raise UnknownNameError(f"set {name!r}: expected {prefix}:{'NAME_OR_PATH' if prefix == 'hf' else 'FILE'}")
        target, summary = SET_SOURCES[prefix]
        return Entry("set", name, target, summary, {"source_kind": prefix}, {"source": source})
    if is_external_target(name) and name not in _registered("set"):
        return external_entry("set", name)
    return get("set", name)


def is_external_target(name: str) -> bool:
    """A "module:factory" or "file.py:factory" name (a model folder or registered name is checked first)."""
    module, colon, attribute = name.rpartition(":")
    return bool(colon and module and attribute) and attribute.replace(".", "").replace("_", "").isalnum()


def external_entry(kind: str, target: str) -> Entry:
    short = target.rpartition(":")[2]
    return Entry(kind, short, target, f"outside factory {target}", {"family": "external", "external": True,
                                                                    "target": target})


def load_external(target: str, kind: str = "model") -> Callable[..., Any]:
    """The object "module:attribute" or "path/to/file.py:attribute" names; one-line errors when it does not
    import. Modules are looked up on sys.path and then in the working directory, as `python -m` would."""
    module_name, _, attribute = target.rpartition(":")
    where = f"--{kind} {target}"
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ImportError(f"no such file {path}")
            spec = importlib.util.spec_from_file_location(f"fluxbench_outside_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except Exception as error:  # an outside module may fail in any way while it imports
        raise UnknownNameError(f"{where}: cannot import {module_name} ({type(error).__name__}: "
                               f"{_one_line(error)})") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise UnknownNameError(f"{where}: {module_name} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise UnknownNameError(f"{where}: {attribute} is a {type(found).__name__}, expected a class or a function "
                               f"that returns the {kind}")
    return found


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def entries(kind: str) -> list[Entry]:
    _ensure_builtin()
    return list(_TABLES[kind].values())


def _registered(kind: str) -> dict[str, Entry]:
    _ensure_builtin()
    return _TABLES[kind]


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
        _register_plugins()


def _register_plugins() -> None:
    """Entries that installed packages declare in the `PLUGIN_GROUPS` entry-point groups (nothing is imported
    until one is used)."""
    from importlib.metadata import entry_points

    for kind, group in PLUGIN_GROUPS.items():
        for point in entry_points(group=group):
            package = point.dist.name if point.dist is not None else "?"
            version = point.dist.version if point.dist is not None else "?"
            if point.name in _TABLES[kind]:
                log.warning("%s %r from the package %s is left out: the name is taken by %s", kind, point.name,
                            package, _TABLES[kind][point.name].target)
                continue
            _TABLES[kind][point.name] = Entry(kind, point.name, point.value, f"plugin from {package} {version}",
                                              {"family": "plugin", "external": True, "package": package,
                                               "version": version})
