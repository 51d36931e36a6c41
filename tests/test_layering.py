"""The direction of imports, read from the source with `ast`: wings never import the top of the spine, and the
ground of the spine imports no wing.

The spine is `fluxbench/`: its ground (leaf modules any part may import) and its top (the commands and the
benchmark pipeline, which put the wings together). The wings are the folders `models/`, `protocols/`,
`reports/`, `human_eval/`, which pyproject.toml maps to `fluxbench.models`, ... . Imports inside functions count
as well as those at the top of a module; imports by name at run time (the registry loading the catalog, lazy
attribute tables) are not imports here.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINGS = ("fluxbench.models", "fluxbench.protocols", "fluxbench.reports", "fluxbench.human_eval")
TOP = ("fluxbench.cli", "fluxbench.commands", "fluxbench.runner", "fluxbench.generation", "fluxbench.preflight",
       "fluxbench.anchors", "fluxbench.catalog", "fluxbench.pregenerated")
GROUND = ("fluxbench", "fluxbench.atomic", "fluxbench.audio", "fluxbench.captions", "fluxbench.inputs",
          "fluxbench.registry", "fluxbench.results", "fluxbench.runtime", "fluxbench.store", "fluxbench.weights")


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _modules() -> dict[str, Path]:
    """Every module of the import package, by dotted name, from the package-dir mapping of pyproject.toml."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = {}
    for package, folder in mapping.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            modules[".".join((package, *parts)).removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (for `from X import y`, both X and X.y, since y may be a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if _within(module, ("fluxbench",))}


MODULES = _modules()


def test_the_mapping_covers_every_wing_and_the_spine():
    assert {name for name in MODULES if "." not in name.removeprefix("fluxbench.")} >= {"fluxbench", *WINGS}
    assert "fluxbench.models.base" in MODULES and MODULES["fluxbench.models.base"] == ROOT / "models" / "base.py"


def test_every_spine_module_is_ground_or_top():
    spine = [name for name in MODULES if not _within(name, WINGS)]
    unplaced = [name for name in spine if not (name in GROUND or _within(name, TOP))]
    assert not unplaced, f"add {unplaced} to GROUND or TOP in this test (and to the README's layout)"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if _within(name, WINGS)))
def test_wings_never_import_the_top(name):
    wrong = sorted(module for module in _imports(name, MODULES[name]) if _within(module, TOP))
    assert not wrong, f"{name} imports {wrong}: the top puts the wings together, not the other way round"


@pytest.mark.parametrize("name", GROUND)
def test_the_ground_imports_no_wing_and_no_top(name):
    wrong = sorted(module for module in _imports(name, MODULES[name]) if _within(module, WINGS + TOP))
    assert not wrong, f"{name} imports {wrong}: the ground may be imported by every part, so it imports none"


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from . import audio\nfrom .models import base\n\ndef f():\n    import fluxbench.runner\n")
    assert _imports("fluxbench.probe", module) >= {"fluxbench.audio", "fluxbench.models.base", "fluxbench.runner"}


def test_preflight_knows_no_model_family():
    """What a model needs before a run is asked of the model interface (models/base.py), not of a family."""
    wings = {m for m in _imports("fluxbench.preflight", MODULES["fluxbench.preflight"]) if _within(m, WINGS)}
    assert wings and all(_within(module, ("fluxbench.models.base",)) for module in wings), wings
