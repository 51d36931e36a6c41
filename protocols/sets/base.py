"""What an evaluation set yields."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class SetItem:
    id: str  # stable, filesystem-safe; generated clips are stored as <id>.wav
    caption: str
    reference: Path | None = None  # reference audio file, None when missing locally


class EvalSet(abc.ABC):
    name: str

    @abc.abstractmethod
    def items(self) -> Iterator[SetItem]:
        """All items in a fixed order."""

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def labels(self) -> dict[str, dict[str, str]] | None:
        """Item id -> attribute labels its caption names (key, tempo, ...), for sets built from labels."""
        return None
