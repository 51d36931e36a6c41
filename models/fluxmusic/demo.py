"""The offline demo model: a small FluxMusic (the `demo` size) trained on the synthetic demo corpus on first
use."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

DEMO_MODEL_ENV = "FLUXBENCH_DEMO_MODEL"


def _finished(spec_path: Path) -> bool:
    """A model folder exists from the first checkpoint on; it is finished once training reached its last step."""
    from fluxbench.inputs import read_json

    if not spec_path.is_file():
        return False
    training = read_json(spec_path, "model folder spec").get("training", {})
    return training.get("step", 0) >= training.get("steps", 0)


def _recipe_changes(folder: Path) -> list[str]:
    """What today's demo recipe changed since the finished model in `folder` was trained (empty if nothing)."""
    from fluxbench.inputs import read_json
    from fluxbench.models.fluxmusic.train import CONFIG_FILE, demo_config
    from fluxbench.models.fluxmusic.train_loop import settings_differences
    from fluxbench.protocols.sets.demo import corpus_version
    from fluxbench.protocols.sets.demo_synth import DURATION, SYNTH_VERSION

    path = folder / CONFIG_FILE
    if not path.is_file():
        return []
    saved = read_json(path, "training config")
    manifest = str(saved.get("manifest", ""))
    # passing the saved manifest keeps the corpus from being rendered for a check; its folder names the version
    changes = [k for k in settings_differences(saved, demo_config(out=str(folder), manifest=manifest,
                                                                  duration=DURATION)) if k != "manifest"]
    if corpus_version(manifest) != SYNTH_VERSION:
        changes.append("demo corpus version")
    return changes


def demo_model_folder() -> Path:
    from fluxbench.models.fluxmusic.train import DEMO_OUT

    return Path(os.environ.get(DEMO_MODEL_ENV, DEMO_OUT))


def load_demo_model(folder: str | os.PathLike | None = None, train_if_missing: bool = True,
                    progress: bool = True, device: str | None = None, **options: Any):
    """The trained demo model folder as a FluxMusicModel; trains it (a few CPU minutes) when absent."""
    from fluxbench import FluxbenchError
    from fluxbench.models.fluxmusic.checkpoint import SPEC_FILE
    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel

    folder = Path(folder) if folder else demo_model_folder()
    if _finished(folder / SPEC_FILE):
        changes = _recipe_changes(folder)
        if changes:
            logging.getLogger(__name__).warning(
                "%s holds a demo model trained before the demo recipe changed (%s); its numbers are not today's "
                "demo: remove the folder to train the current one", folder, ", ".join(changes))
    else:
        if not train_if_missing:
            raise FluxbenchError(f"no finished demo model at {folder}; run `fluxbench train --preset demo` first")
        from fluxbench.models.fluxmusic.train import demo_config, train

        logging.getLogger(__name__).info("no finished demo model at %s: training it on the demo corpus (CPU, "
                                         "minutes; an interrupted run resumes)", folder)
        train(demo_config(out=str(folder)), device_choice=device or "auto", progress=progress)
    model = FluxMusicModel.from_folder(folder, device=device, **options)
    model.name = "fluxmusic-demo"
    return model
