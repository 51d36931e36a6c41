"""The command line's listings and errors, and the mapping of the wings into one import package."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fluxbench
from fluxbench.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fluxbench.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


def test_every_command_module_builds_its_parser():
    from fluxbench.cli import build_parser

    for name in COMMANDS:
        try:
            parser, module = build_parser(name)
        except ModuleNotFoundError as error:
            pytest.fail(f"command {name!r} has no module: {error}")
        assert hasattr(module, "main")
        assert parser.format_help()


def test_models_json_has_exact_counts(checkpoint_manifest):
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    for size in ("small", "base", "large", "giant", "giant_full"):
        row = listed["fluxmusic-" + size.replace("_", "-")]
        assert row["parameters"] == checkpoint_manifest[size]["parameters"]
        assert row["sample_rate"] == 16000 and row["weights"].startswith("hf://feizhengcong/FluxMusic/")


def test_models_table_and_flops():
    result = run_cli("models", "--flops")
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("fluxmusic-giant "))
    assert "2109.9M" in line and "2928.0" in line and "16000" in line


def test_listing_imports_no_heavy_library():
    code = ("import sys; from fluxbench.cli import main; main(['models', '--json']); main(['--help']);"
            "main(['metrics']);"
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'scipy', 'streamlit') if m in sys.modules];"
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_metrics_listing_names_every_metric_of_the_table_and_its_backbone(capsys):
    import json

    from fluxbench.protocols.metrics.table import METRICS

    assert main(["metrics", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listing["metrics"]] == [m.name for m in METRICS]
    backbones = {b["name"]: b for b in listing["backbones"]}
    assert {"vggish", "panns-16k", "clap", "descriptor"} <= set(backbones)
    assert all(m["backbone"] in backbones for m in listing["metrics"])
    assert next(m for m in listing["metrics"] if m["name"] == "is")["lower_is_better"] is False
    assert main(["metrics"]) == 0
    text = capsys.readouterr().out
    assert "fad     lower" in text and "descriptor  16000 Hz  none" in text


def test_unknown_command_and_unknown_model_are_one_line():
    result = run_cli("frobnicate")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "known: run" in result.stderr
    from fluxbench import registry

    with pytest.raises(registry.UnknownNameError) as info:
        registry.get("model", "fluxmusic-smal")
    assert "did you mean 'fluxmusic-small'" in str(info.value) and "fluxmusic-giant" in str(info.value)


def _package_dirs() -> dict[str, Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    dirs = {}
    for package in config["packages"]:
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in mapping:
                dirs[package] = ROOT / mapping[prefix] / Path(*parts[cut:])
                break
    return dirs


def test_every_source_package_is_declared():
    declared = {path.resolve() for path in _package_dirs().values()}
    for wing in ("fluxbench", "models", "protocols", "reports", "human_eval"):
        for init in (ROOT / wing).rglob("__init__.py"):
            assert init.parent.resolve() in declared, f"{init.parent} is not listed in pyproject packages"


def test_installed_modules_are_the_repository_files():
    import importlib

    for package, directory in _package_dirs().items():
        module = importlib.import_module(package)
        assert Path(module.__file__).resolve().parent == directory.resolve(), package
    assert Path(fluxbench.__file__).resolve().is_relative_to(ROOT)


@pytest.mark.slow
def test_wheel_contains_the_mapped_wings(tmp_path):
    import shutil

    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    source = tmp_path / "source"  # build from a copy: setuptools leaves a build/ folder beside the sources
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import zipfile

    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    for package, directory in _package_dirs().items():
        for source in directory.glob("*.py"):
            expected = "/".join(package.split(".")) + "/" + source.name
            assert expected in names, expected
    # data shipped beside the code: the MusicCaps captions and their licence note
    assert {"fluxbench/protocols/sets/data/musiccaps-public.csv", "fluxbench/protocols/sets/data/README.md"} <= set(names)


@pytest.mark.parametrize("command", [["models", "--json"], ["models"], ["sets", "--json"], ["metrics"]])
def test_a_reader_closing_the_pipe_early_is_no_error(command):
    """`fluxbench models --json | head` must not end in a BrokenPipeError traceback."""
    process = subprocess.Popen([sys.executable, "-m", "fluxbench.cli", *command], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before anything is written: every write hits a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr
