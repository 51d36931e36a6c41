"""What an evaluation set is: the interface the benchmark runner reads, and nothing else.

A set yields items (id, caption, reference audio) and declares, as attributes, the facts the runner needs:
where its audio and captions come from, which subset was taken, how long its clips are, how references are
cropped and which scoring backbone suits it. A new set is one subclass plus one `register("set", ...)` line
in `fluxbench/catalog.py` (or a `module:factory` name, or an installed package's `fluxbench.sets` entry point).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping


@dataclass(frozen=True)
class SetItem:
    id: str  # stable; files are named by `fluxbench.inputs.safe_file_stem(id)`
    caption: str
    reference: Path | None = None  # reference audio file, None when missing locally


@dataclass(frozen=True)
class LabelledClip:
    """A clip with the attribute labels its caption names, for fitting attribute read-back estimators."""

    path: Path
    labels: Mapping[str, str]


class EvalSet(abc.ABC):
    """Items plus the facts the runner reads. Subclasses override the attributes that differ."""

    name: str
    audio_dir: Path | None = None  # where reference audio is looked for (pre-flight messages)
    captions_path: Path | None = None  # the caption file read, None when the set makes its own captions
    shipped_captions: bool = False  # the caption file ships with fluxbench and was checked against its sha256
    subset: str | None = None  # the subset taken, recorded in results.json
    duration: float | None = None  # seconds per clip the protocol generates; None: models' default (10.24 s)
    reference_crop: str = "none"  # none | start | center: how references longer than a clip are cut
    default_backbone: str = "paper"  # what `--backbone auto` scores with (paper: VGGish/PANNs/CLAP)

    @abc.abstractmethod
    def items(self) -> Iterator[SetItem]:
        """All items in a fixed order."""

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def labels(self) -> dict[str, dict[str, str]] | None:
        """Item id -> attribute labels its caption names (key, tempo, ...), for sets built from labels."""
        return None

    def anchor_training_clips(self, count: int) -> list[LabelledClip] | None:
        """`count` labelled clips from outside the evaluation items, to fit the attribute estimators of the
        anchor rows on; None when the set has none (then no label-based anchor rows are scored)."""
        return None

    def file_stems(self, item_id: str) -> tuple[str, ...]:
        """The file names (without suffix) under which audio made elsewhere for `item_id` is accepted
        (`fluxbench run --generated DIR`): the safe file stem of the id, and set-specific aliases."""
        from fluxbench.inputs import safe_file_stem

        return (safe_file_stem(item_id),)

    def provenance(self) -> dict[str, Any]:
        """Where the items came from, for results.json (beyond name, subset and the caption file)."""
        return {}

    def describe(self) -> str:
        """One line for the pre-flight: where the captions come from."""
        if self.captions_path is None:
            return ""
        return f"from {self.captions_path}" + (" (shipped, sha256 verified)" if self.shipped_captions else "")

