import json
import os
from pathlib import Path

import pytest

# Fixtures ship with the tests (tests/data/reference, provenance in its README); FLUXBENCH_REFERENCE may point
# at another copy, e.g. a newer export of the same vectors.
REFERENCE = Path(os.environ.get("FLUXBENCH_REFERENCE", Path(__file__).resolve().parent / "data" / "reference"))
GOLDEN = REFERENCE / "golden"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE}; set FLUXBENCH_REFERENCE")
    return REFERENCE


@pytest.fixture(scope="session")
def golden_dir(reference_dir) -> Path:
    return reference_dir / "golden"


@pytest.fixture(scope="session")
def checkpoint_manifest(reference_dir) -> dict:
    return json.loads((reference_dir / "fluxmusic_checkpoint_keys.json").read_text())


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    """A real FluxMusic model folder (mel codec, vocabulary text encoder), trained for two steps; shared by every
    module that runs the benchmark end to end."""
    from fluxbench.models.fluxmusic.train import demo_config, train

    root = tmp_path_factory.mktemp("model")
    config = demo_config(out=str(root / "model"), clips=8, steps=2, global_batch=4, micro_batch=4, save_every=2)
    return train(config, device_choice="cpu", progress=False)
