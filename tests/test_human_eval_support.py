"""Shared builders for the listening-test tests: synthetic systems and a small study (no tests here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fluxbench.audio import write_wav

# Distinctive names, so that any leak into a page, URL or message is unmistakable.
SYSTEMS = {"zqalphasys": (16000, 0.5), "zqbetasys": (32000, 0.02)}  # name -> (sample rate, amplitude)
GROUND_TRUTH_FOLDER = "zqtruthfolder"
PROMPTS = {f"p{i}": f"Warm lo-fi piano loop number {i}, vinyl crackle: mellow & slow" for i in range(4)}


def make_system_folders(root: Path, seconds: float = 1.0) -> dict[str, Path]:
    """One folder per system with a sine per prompt (rates and levels differ on purpose); captions beside the
    first system only; a ground-truth folder at 44.1 kHz, longer than the rest."""
    folders = {}
    for index, (name, (rate, amplitude)) in enumerate(SYSTEMS.items()):
        folder = root / name
        t = np.arange(int(rate * seconds)) / rate
        for number, prompt in enumerate(PROMPTS):
            write_wav(folder / f"{prompt}.wav", amplitude * np.sin(2 * np.pi * (220 + 55 * number + index) * t), rate)
        folders[name] = folder
    rate = 44100
    t = np.arange(int(rate * seconds * 1.5)) / rate
    for number, prompt in enumerate(PROMPTS):
        write_wav(root / GROUND_TRUTH_FOLDER / f"{prompt}.wav", 0.3 * np.sin(2 * np.pi * (330 + 20 * number) * t), rate)
    (root / "zqalphasys" / "captions.jsonl").write_text(
        "".join(json.dumps({"id": p, "caption": c}) + "\n" for p, c in PROMPTS.items()))
    return folders


def make_study(root: Path, raters: dict | None = None, attention_checks: int = 1, **options) -> Path:
    from fluxbench.human_eval.design import GROUND_TRUTH, DesignOptions, create_study

    folders = make_system_folders(root / "inputs")
    systems = {**folders, GROUND_TRUTH: root / "inputs" / GROUND_TRUTH_FOLDER}
    design = DesignOptions(raters=raters or {"beginner": 2, "expert": 2}, attention_checks=attention_checks,
                           **options)
    create_study(root / "study", systems, design)
    return root / "study"


def secrets_of(study: Path) -> list[str]:
    """Strings that must never reach a rater: system names, source folders and file paths."""
    key = json.loads((study / "key.json").read_text())
    found = set(key["systems"]) | {GROUND_TRUTH_FOLDER, "key.json"}
    for clip in key["clips"]:
        found.add(clip["source"])
        found.add(Path(clip["source"]).parent.name)
    return sorted(found)
