"""A folder of audio made elsewhere, standing in for a model in `fluxbench run --generated DIR`.

Files are named by item id: `<id>.<suffix>` (the id as `fluxbench.inputs.safe_file_stem` writes it, or any
other stem the set accepts for it, e.g. Song Describer's caption id without the `sdd-` prefix). The folder is
matched against the set before anything is scored: items without a file, files matching no item, and files
whose header cannot be read are counted and listed. The files are placed in the run's `generated/` folder
(hard links, else copies) and scored exactly as a model's clips are; the model record of the results names
the folder, its label, and a checksum of its file list (name and content hash of every matched file).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fluxbench import FluxbenchError
from fluxbench.audio import AUDIO_SUFFIXES, audio_problem
from fluxbench.protocols.sets.base import EvalSet, SetItem

FAMILY = "audio-folder"


@dataclass
class FolderMatch:
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # item id -> its file
    missing: list[str] = field(default_factory=list)  # item ids without a file
    extra: list[str] = field(default_factory=list)  # file names that match no item
    unreadable: dict[str, str] = field(default_factory=dict)  # item id -> why its file cannot be read
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # item id -> its several files

    def usable(self) -> dict[str, Path]:
        return {item_id: path for item_id, path in self.files.items() if item_id not in self.unreadable}


def default_label(folder: str | os.PathLike) -> str:
    """A run's `generated/` folder is named after the run's model; any other folder after itself."""
    folder = Path(folder).resolve()
    results = folder.parent / "results.json"
    if folder.name == "generated" and results.is_file():
        from fluxbench.results import ResultsError, load_results

        try:
            return str(load_results(results)["model"]["name"])
        except (ResultsError, KeyError, TypeError):
            return folder.parent.name
    return folder.name


def match_folder(folder: str | os.PathLike, items: Sequence[SetItem], eval_set: EvalSet) -> FolderMatch:
    """Pair the folder's audio files with the set's items by file stem (see the module doc)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FluxbenchError(f"--generated {folder}: not a folder")
    by_stem: dict[str, list[Path]] = {}
    others: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if path.suffix.lower() in AUDIO_SUFFIXES and (entry.is_file() or entry.is_symlink()):
                by_stem.setdefault(path.stem, []).append(path)
            elif entry.is_file():
                others.append(entry.name)
    match = FolderMatch(folder)
    claimed: set[str] = set()
    for item in items:
        stems = [stem for stem in eval_set.file_stems(item.id) if stem in by_stem]
        if not stems:
            match.missing.append(item.id)
            continue
        paths = [path for stem in stems for path in by_stem[stem]]
        claimed.update(stems)
        if len(paths) > 1:
            match.duplicates[item.id] = sorted(path.name for path in paths)
            continue
        match.files[item.id] = paths[0]
        problem = audio_problem(paths[0]) if paths[0].is_file() else "broken link or not a file"
        if problem:
            match.unreadable[item.id] = f"{paths[0].name}: {problem}"
    match.extra = sorted([path.name for stem, paths in by_stem.items() if stem not in claimed for path in paths]
                         + [name for name in others if name not in ("generation.json",)])
    return match


def files_checksum(files: dict[str, Path]) -> str:
    """sha256 over the sorted (file name, content sha256) of the matched files: what was scored."""
    from fluxbench.store import file_record

    digest = hashlib.sha256()
    for name, path in sorted((path.name, path) for path in files.values()):
        digest.update(f"{name}\t{file_record(path)['sha256']}\n".encode())
    return digest.hexdigest()


def describe(match: FolderMatch, total: int) -> tuple[bool, str]:
    """(enough to score, one pre-flight line) for a matched folder."""
    usable = len(match.usable())

    def example(names: Sequence[str]) -> str:
        return f" (e.g. {', '.join(list(names)[:3])})" if names else ""

    detail = (f"{usable} of {total} items have a readable file in {match.folder}, {len(match.missing)} without a "
              f"file{example(match.missing)}, {len(match.unreadable)} unreadable"
              f"{example(list(match.unreadable.values()))}, {len(match.extra)} file(s) matching no item"
              f"{example(match.extra)}")
    if match.duplicates:
        first = next(iter(match.duplicates.items()))
        detail += f", {len(match.duplicates)} item(s) with several files (e.g. {first[0]}: {', '.join(first[1])})"
    if usable < 2:
        detail += "; metrics need at least 2: are the files named by item id (see `fluxbench sets`)?"
    return usable >= 2, detail


def unscored_reasons(match: FolderMatch) -> dict[str, str]:
    """Item id -> why its generated clip is not scored."""
    reasons = {item_id: "no generated file" for item_id in match.missing}
    reasons.update({item_id: f"generated {why}" for item_id, why in match.unreadable.items()})
    reasons.update({item_id: f"several generated files ({', '.join(names)})"
                    for item_id, names in match.duplicates.items()})
    return reasons


def model_record(label: str, match: FolderMatch) -> dict[str, Any]:
    usable = match.usable()
    checksum = files_checksum(usable)
    return {"name": label, "family": FAMILY, "parameters": None, "training": None,
            "fingerprint": f"{FAMILY}-{checksum[:16]}", "weights": {},
            "audio_folder": {"path": str(match.folder.resolve()), "files": len(usable), "files_sha256": checksum,
                             "missing": len(match.missing), "unreadable": len(match.unreadable),
                             "extra": match.extra}}
