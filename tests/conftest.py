import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = Path(__import__("os").environ.get("FLUXBENCH_REFERENCE", SHARED / "reference"))
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
