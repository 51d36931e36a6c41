"""The `demo` set: procedurally synthesised, captioned music clips that need no download.

Clips are rendered on first use into the fluxbench cache ($FLUXBENCH_CACHE/demo/...) and reused after that;
the same seed always gives the same clips. The "heldout" split (the evaluation references) and the "train"
split (what `fluxbench train --preset demo` learns from) are drawn from separate random streams.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator

from fluxbench import FluxbenchError
from fluxbench.atomic import write_text
from fluxbench.protocols.sets.base import EvalSet, LabelledClip, SetItem
from fluxbench.protocols.sets.demo_synth import DURATION, SAMPLE_RATE, SPLITS, SYNTH_VERSION, ClipSpec, make_clip

# 64 held-out clips: an attribute read right on 60% of them against a 40% chance rate is p = 0.001; on 32, 0.02
DEFAULT_SIZES = {"train": 512, "heldout": 64}
_CORPUS_FOLDER = re.compile(r"v(\d+)-seed-?\d+-.+s")  # the folder name below, which carries the synth version


def corpus_version(path: str | os.PathLike) -> int | None:
    """The synth version of the demo corpus folder that `path` (a clip or manifest) lies in, or None."""
    for part in reversed(Path(path).parts):
        match = _CORPUS_FOLDER.fullmatch(part)
        if match:
            return int(match.group(1))
    return None


def _render_clip(job: tuple[int, str, int, float, str, str]) -> None:
    """Render one clip and its description (a top-level function so worker processes can run it)."""
    from fluxbench.audio import write_wav

    seed, split, index, duration, wav, meta = job
    spec, audio = make_clip(seed, split, index, duration, SAMPLE_RATE)
    write_wav(wav, audio, SAMPLE_RATE)
    write_text(meta, json.dumps(spec.to_dict()))


class DemoSet(EvalSet):
    name = "demo"
    sample_rate = SAMPLE_RATE
    default_backbone = "descriptor"  # weight-free, so the offline default runs anywhere

    def __init__(self, split: str = "heldout", size: int | None = None, seed: int = 0,
                 duration: float = DURATION, root: str | os.PathLike | None = None) -> None:
        if split not in SPLITS:
            raise FluxbenchError(f"demo set: unknown split {split!r}; expected one of {list(SPLITS)}")
        size = DEFAULT_SIZES[split] if size is None else int(size)
        if size < 1 or duration <= 0:
            raise FluxbenchError(f"demo set: size must be >= 1 and duration > 0, got size {size}, duration {duration}")
        self.split, self.size, self.seed, self.duration = split, size, int(seed), float(duration)
        if root is None:
            from fluxbench.weights import CACHE_DIR

            root = CACHE_DIR / "demo"
        self.root = Path(root)
        self.folder = self.root / f"v{SYNTH_VERSION}-seed{self.seed}-{self.duration:g}s" / split

    def item_id(self, index: int) -> str:
        return f"demo-{self.split}-{index:05d}"

    def _paths(self, index: int) -> tuple[Path, Path]:
        item_id = self.item_id(index)
        return self.folder / f"{item_id}.wav", self.folder / f"{item_id}.json"

    def render_missing(self, workers: int | None = None) -> int:
        """Render every clip not on disk yet, on all cores; returns how many were rendered."""
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = [i for i in range(self.size) if not all(p.is_file() for p in self._paths(i))]
        workers = min(workers or os.cpu_count() or 1, len(todo))
        jobs = [(self.seed, self.split, index, self.duration, *map(str, self._paths(index))) for index in todo]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_render_clip, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
        else:
            for job in jobs:
                _render_clip(job)
        return len(todo)

    def specs(self) -> Iterator[tuple[str, ClipSpec, Path]]:
        """(id, what the clip contains, its WAV path) for every item, rendering clips not on disk yet."""
        self.render_missing()
        for index in range(self.size):
            wav, meta = self._paths(index)
            yield self.item_id(index), ClipSpec(**json.loads(meta.read_text())), wav

    def items(self) -> Iterator[SetItem]:
        for item_id, spec, wav in self.specs():
            yield SetItem(item_id, spec.caption(), wav)

    def __len__(self) -> int:
        return self.size

    def labels(self) -> dict[str, dict[str, str]]:
        """Item id -> the attributes its caption names (see `ClipSpec.labels`)."""
        return {item_id: spec.labels() for item_id, spec, _ in self.specs()}

    def anchor_training_clips(self, count: int) -> list[LabelledClip]:
        """Clips of the training split (never the held-out ones), rendered like these."""
        corpus = DemoSet("train", size=count, seed=self.seed, duration=self.duration, root=self.root)
        return [LabelledClip(wav, spec.labels()) for _, spec, wav in corpus.specs()]

    def provenance(self) -> dict[str, object]:
        return {"split": self.split, "size": self.size, "corpus_seed": self.seed, "synth_version": SYNTH_VERSION}

    def describe(self) -> str:
        return f"synthesised {self.split} split, corpus seed {self.seed}, under {self.folder}"

    def write_manifest(self, path: str | os.PathLike | None = None) -> Path:
        """A JSON-lines training manifest: {"id", "path", "caption", "captions", "attributes"} per clip."""
        path = Path(path) if path is not None else self.folder.parent / f"{self.split}-{self.size}.jsonl"
        lines = [json.dumps({"id": item_id, "path": str(wav), "caption": spec.caption(),
                             "captions": spec.paraphrases(), "attributes": spec.to_dict()})
                 for item_id, spec, wav in self.specs()]
        write_text(path, "\n".join(lines) + "\n")
        return path

