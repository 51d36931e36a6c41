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
