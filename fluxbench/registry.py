"""Name -> factory tables for models, sets, metrics and backbones.

Entries name their factory as "module:attribute" and carry static facts for listings, so that
`fluxbench models` and `fluxbench sets` import nothing heavy.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
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


def register(kind: str, name: str, target: str, summary: str, bound: dict[str, Any] | None = None,
             **facts: Any) -> Entry:
    if kind not in _TABLES:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    if name in _TABLES[kind]:
        raise ValueError(f"{kind} {name!r} is registered twice")
    entry = Entry(kind, name, target, summary, dict(facts), dict(bound or {}))
    _TABLES[kind][name] = entry
    return entry


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
