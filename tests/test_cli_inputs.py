"""Every command against a generated matrix of bad inputs: exit code 2, one line on stderr, no traceback.

Commands run in-process through `fluxbench.cli.main`; each bad value must be refused before any model, data
set or backbone is touched, so a case takes milliseconds. OPTIONS declares, per command, the domain of every
option that takes a value; the bad values come from the domain, and a test checks that no option of a parser
is left out of the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from fluxbench.cli import COMMANDS, build_parser, main

NON_UTF8 = b"id,caption\nx1,caf\xe9 au lait\n"  # Latin-1: the 0xe9 byte at offset 18 is not UTF-8
HUGE_INT = "99999999999999999999"

# Bad values per domain; <missing>, <folder> and <file> stand for paths made by the `place` fixture.
BAD_VALUES: dict[str, list[str]] = {
    "file": ["<missing>", "<folder>"],
    "dir": ["<missing>", "<file>"],
    "out_dir": ["<file>"],
    "out_file": ["<folder>"],
    "count": ["-1", "0", "nan", "inf", "abc", "1.5", "", HUGE_INT],
    "non_negative": ["-1", "nan", "inf", "abc", "1.5", "", HUGE_INT],
    "resamples": ["-1", "1", "nan", "abc", "2.5", HUGE_INT],
    "seconds": ["-1", "0", "nan", "inf", "-inf", "1e999", "abc", "", "1e9"],
    "finite": ["nan", "inf", "-inf", "1e999", "abc", ""],
    "positive": ["-1", "0", "nan", "inf", "1e999", "abc", ""],
    "non_negative_float": ["-1", "nan", "inf", "abc"],
    "unit": ["-0.5", "1.5", "nan", "inf", "abc"],
    "smoothing": ["-0.1", "1", "nan", "inf", "abc"],
    "loudness": ["nan", "inf", "-inf", "5", "-100", "abc"],
    "sample_rate": ["-8000", "0", "nan", "abc", "99999999999"],
    "port": ["-1", "0", "70000", "abc"],
    "decimals": ["-1", "nan", "abc", "1000"],
    "name": ["../x", "a/b", "..", ""],
    "json_object": ["not json", "[1, 2]", "3"],
}

# command (with sub-command) -> {option: domain}
OPTIONS: dict[str, dict[str, str]] = {
    "run": {"--limit": "count", "--seed": "non_negative", "--duration": "seconds", "--batch-size": "count",
            "--steps": "count", "--guidance": "finite", "--weights-dir": "dir", "--checkpoint": "file",
            "--captions": "file", "--audio-dir": "dir", "--bootstrap": "resamples", "--out": "out_dir",
            "--name": "name", "--generated": "dir", "--label": "name"},
    "generate": {"--prompts-file": "file", "--out": "out_dir", "--duration": "seconds", "--seed": "non_negative",
                 "--steps": "count", "--guidance": "finite", "--batch-size": "count", "--weights-dir": "dir",
                 "--checkpoint": "file", "--store": "out_dir"},
    "score": {"--gen": "dir", "--ref": "dir", "--captions": "file", "--bootstrap": "resamples",
              "--backbone-weights": "dir", "--seed": "non_negative", "--out": "out_file", "--cache-dir": "out_dir",
              "--weights-dir": "dir",
              "--vggish-weights": "file", "--panns-weights": "file"},
    "train": {"--config": "file", "--manifest": "file", "--out": "out_dir", "--transformer": "json_object",
              "--init": "file", "--duration": "seconds", "--cache-dir": "out_dir", "--weights-dir": "dir",
              "--null-prob": "unit", "--time-location": "finite",
              "--steps": "count", "--global-batch": "count", "--micro-batch": "count", "--lr": "non_negative_float",
              "--weight-decay": "non_negative_float", "--warmup-steps": "non_negative", "--grad-clip": "positive",
              "--ema-decay": "unit", "--ema-every": "count", "--seed": "non_negative", "--save-every": "count",
              "--keep-checkpoints": "count", "--sample-steps": "count", "--guidance": "finite",
              "--stop-after": "count"},
    "report": {"--out": "out_dir", "--decimals": "decimals", "--reported": "file", "--listening": "file",
               "--smooth": "smoothing", "--examples": "non_negative", "--captions": "file"},
    "human-eval create": {"--ground-truth": "dir", "--captions": "file", "--ratings-per-item": "count",
                          "--prompts": "count", "--attention-checks": "non_negative", "--attention-clip": "file",
                          "--loudness": "loudness", "--sample-rate": "sample_rate", "--duration": "seconds",
                          "--seed": "non_negative"},
    "human-eval serve": {"--port": "port"},
    "verify-backbones": {"--samples": "dir", "--tolerance": "positive"},
    "human-eval results": {"--out": "out_dir", "--resamples": "count", "--max-failed-checks": "non_negative",
                           "--seed": "non_negative"},
}
# Options that take free text (names, hub ids, URLs, choices checked by argparse or by the command); --weights
# and --weights-dir are checked by their commands (verify-backbones: a missing weights folder holds nothing).
FREE_TEXT = {"--model", "--set", "--metrics", "--backbone", "--preset", "--solver", "--negative-prompt", "--device",
             "--dtype", "--subset", "--reference-crop", "--shard", "--prompt", "--t5", "--clap", "--audioldm2",
             "--vae", "--vocoder", "--panns", "--clap-model", "--clap-long-clips", "--size", "--conditioner",
             "--codec", "--objective", "--time-sampling", "--prediction", "--precision", "--format", "--sets",
             "--loss-logs", "--audio", "--prompts", "--scaling-x", "--title", "--system", "--raters", "--base-url",
             "--address", "--db", "--family", "--kad-bandwidth", "--ref-stats", "--backbones", "--stats",
             "--weights", "--weights-dir", "--split", "--id-column", "--caption-column", "--audio-column"}


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, Path]:
    import soundfile as sf

    root = tmp_path_factory.mktemp("inputs")
    paths = {"root": root, "missing": root / "no-such-thing", "folder": root / "a-folder",
             "file": root / "a-file.txt", "non_utf8": root / "latin1.csv"}
    paths["folder"].mkdir()
    paths["file"].write_text("hello\n")
    paths["non_utf8"].write_bytes(NON_UTF8)
    for name, suffix in (("non_utf8_txt", ".txt"), ("non_utf8_jsonl", ".jsonl"), ("non_utf8_json", ".json")):
        paths[name] = root / f"latin1{suffix}"
        paths[name].write_bytes(b'{"caption": "caf\xe9"}\n' if suffix != ".txt" else b"caf\xe9\n")
    paths["non_utf8_results"] = root / "latin1-run" / "results.json"
    paths["non_utf8_results"].parent.mkdir()
    paths["non_utf8_results"].write_bytes(b'{"schema": "fluxbench.results", "model": {"name": "caf\xe9"}}')
    # Two short clips: a system's audio folder and a generated folder.
    audio = root / "audio"
    audio.mkdir()
    for index in range(2):
        wave = 0.1 * np.sin(np.linspace(0, 2000 * (index + 1), 16000)).astype(np.float32)
        sf.write(audio / f"p{index}.wav", wave, 16000)
    paths["audio"] = audio
    manifest = root / "train.jsonl"
    manifest.write_text(json.dumps({"path": "missing.wav", "caption": "a calm piano"}) + "\n")
    paths["manifest"] = manifest
    paths["results"] = write_results_file(root / "ok-run" / "results.json")
    captions = root / "musiccaps.csv"
    captions.write_text("ytid,start_s,end_s,caption,is_balanced_subset,is_audioset_eval\n"
                        "a1,0,10,soft piano,1,1\na2,0,10,loud drums,1,1\n")
    paths["musiccaps"] = captions
    return paths


def write_results_file(path: Path, **changes) -> Path:
    from fluxbench.results import write_results

    document = {"model": {"name": "m"}, "set": {"name": "musiccaps", "items": 2, "captions": {"a": "x"}},
                "settings": {"seed": 0}, "metrics": {"fad": {"value": 1.5, "ci95": None, "n": 2, "backbone": "x"}}}
    document.update(changes)
    return write_results(path, document)


def base_argv(command: str, place: dict[str, Path]) -> list[str]:
    """A command line that is valid apart from the option under test (or fails fast if that option is ignored)."""
    root = place["root"]
    return {
        "run": ["run", "-q", "--set", "no-such-set"],
        "generate": ["generate", "-q", "--prompt", "a calm piano", "--out", str(root / "gen-out"),
                     "--model", "no-such-model"],
        "score": ["score", "-q", "--gen", str(place["audio"]), "--backbone", "descriptor",
                  "--out", str(root / "scores.json"), "--no-cache"],
        "train": ["train", "-q", "--manifest", str(place["manifest"]), "--out", str(root / "train-out"),
                  "--size", "no-such-size"],
        "report": ["report", "-q", str(place["results"]), "--out", str(root / "report-out"), "--format", "md"],
        "human-eval create": ["human-eval", "-q", "create", str(root / "new-study"), "--system",
                              f"a={place['missing']}"],
        "human-eval serve": ["human-eval", "-q", "serve", str(place["missing"])],
        "human-eval results": ["human-eval", "-q", "results", str(place["missing"])],
        "verify-backbones": ["verify-backbones", "-q", "--backbones", "no-such-backbone"],
    }[command]


def resolve(value: str, place: dict[str, Path]) -> str:
    for name in ("missing", "folder", "file"):
        value = value.replace(f"<{name}>", str(place[name]))
    return value


OPTION_CASES = [(command, option, value) for command, options in OPTIONS.items()
                for option, domain in options.items() for value in BAD_VALUES[domain]]


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("command, option, value", OPTION_CASES,
                         ids=[f"{c}:{o}={v}" for c, o, v in OPTION_CASES])
def test_bad_option_values_are_refused_in_one_line(command, option, value, place, capsys):
    code, err = run_main([*base_argv(command, place), option, resolve(value, place)], capsys)
    assert_one_line_error(code, err, option)


def _value_options(parser: argparse.ArgumentParser, prefix: str) -> dict[str, list[str]]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_value_options(sub, f"{prefix} {name}"))
        elif action.option_strings and action.nargs != 0 and action.dest != "help":
            found.setdefault(prefix, []).append(action.option_strings[-1])
    return found


def test_every_option_with_a_value_is_in_the_matrix():
    for command in COMMANDS:
        parser, _ = build_parser(command)
        for where, options in _value_options(parser, command).items():
            uncovered = [o for o in options if o not in OPTIONS.get(where, {}) and o not in FREE_TEXT]
            assert not uncovered, f"{where}: add {uncovered} to OPTIONS (or FREE_TEXT) in this test"


def non_utf8_cases(place: dict[str, Path]) -> list[tuple[list[str], Path]]:
    root = place["root"]
    results = str(place["results"])
    return [
        (["generate", "-q", "--prompts-file", str(place["non_utf8_txt"]), "--out", str(root / "g")],
         place["non_utf8_txt"]),
        (["generate", "-q", "--prompts-file", str(place["non_utf8_jsonl"]), "--out", str(root / "g")],
         place["non_utf8_jsonl"]),
        (["score", "-q", "--gen", str(place["audio"]), "--backbone", "descriptor", "--no-cache",
          "--captions", str(place["non_utf8"]), "--out", str(root / "s.json")], place["non_utf8"]),
        (["train", "-q", "--manifest", str(place["non_utf8_jsonl"]), "--out", str(root / "t1")],
         place["non_utf8_jsonl"]),
        (["train", "-q", "--config", str(place["non_utf8_json"])], place["non_utf8_json"]),
        (["report", "-q", str(place["non_utf8_results"]), "--out", str(root / "r")], place["non_utf8_results"]),
        (["report", "-q", results, "--loss-logs", str(place["non_utf8"]), "--out", str(root / "r")],
         place["non_utf8"]),
        (["report", "-q", results, "--listening", str(place["non_utf8_json"]), "--out", str(root / "r")],
         place["non_utf8_json"]),
        (["report", "-q", results, "--captions", str(place["non_utf8_json"]), "--out", str(root / "r")],
         place["non_utf8_json"]),
        (["report", "-q", results, "--reported", str(place["non_utf8_json"]), "--out", str(root / "r")],
         place["non_utf8_json"]),
        (["human-eval", "-q", "create", str(root / "study-u"), "--system", f"a={place['audio']}",
          "--captions", str(place["non_utf8"]), "--no-loudness"], place["non_utf8"]),
        (["run", "-q", "--set", "musiccaps", "--captions", str(place["non_utf8"]), "--out", str(root / "runs")],
         place["non_utf8"]),
        (["run", "-q", "--set", "song-describer", "--captions", str(place["non_utf8"]), "--out",
          str(root / "runs")], place["non_utf8"]),
    ]


@pytest.mark.parametrize("case", range(13))
def test_non_utf8_text_is_a_one_line_error_naming_file_and_offset(case, place, capsys):
    argv, path = non_utf8_cases(place)[case]
    code, err = run_main(argv, capsys)
    assert_one_line_error(code, err, str(path), "not UTF-8", "offset")


def odd_file_cases(place: dict[str, Path]) -> list[tuple[list[str], str]]:
    root = place["root"]
    listed = root / "list-run" / "results.json"
    listed.parent.mkdir(exist_ok=True)
    listed.write_text("[1, 2, 3]")
    bad_captions = root / "bad-captions-run" / "results.json"
    bad_captions.parent.mkdir(exist_ok=True)
    bad_captions.write_text(place["results"].read_text().replace('"captions": {\n      "a": "x"\n    }',
                                                                   '"captions": [1, 2]'))
    assert '"captions": [1, 2]' in bad_captions.read_text()
    nan_run = root / "nan-run" / "results.json"
    nan_run.parent.mkdir(exist_ok=True)
    nan_run.write_text(place["results"].read_text().replace('"value": 1.5', '"value": NaN'))
    broken_model = root / "broken-model"
    broken_model.mkdir(exist_ok=True)
    (broken_model / "fluxmusic.json").write_text('{"transformer": {')
    return [
        (["report", "-q", str(listed), "--out", str(root / "r")], str(listed)),
        (["report", "-q", str(bad_captions), "--out", str(root / "r")], "captions"),
        (["report", "-q", str(nan_run), "--out", str(root / "r")], "metrics.fad"),
        (["generate", "-q", "--prompt", "x", "--model", str(broken_model), "--out", str(root / "g2")],
         "fluxmusic.json"),
        (["generate", "-q", "--prompt", "  ", "--out", str(root / "g3")], "--prompt"),
        (["train", "-q", "--manifest", str(place["manifest"]), "--out", str(root / "t2"), "--transformer", "[]"],
         "--transformer"),
        (["run", "-q", "--shard", "x/y"], "--shard"),
        (["human-eval", "-q", "create", str(root / "s2"), "--system", "nofolder"], "--system"),
        # Command-line bytes that are not UTF-8 arrive as lone surrogates (os.fsdecode).
        (["generate", "-q", "--prompt", "caf\udce9", "--out", str(root / "g4")], "not UTF-8"),
        (["run", "-q", "--name", "\udcff"], "not UTF-8"),
        (["human-eval", "-q", "create", str(root / "s3"), "--title", "\udcfftest", "--system", "a=b"], "not UTF-8"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_odd_files_and_values_are_one_line_errors(case, place, capsys):
    argv, expected = odd_file_cases(place)[case]
    code, err = run_main(argv, capsys)
    assert_one_line_error(code, err, expected)


def test_the_case_lists_are_all_run(place):
    assert len(non_utf8_cases(place)) == 13 and len(odd_file_cases(place)) == 11


def test_run_names_a_corrupt_model_spec_in_its_preflight_list(place, capsys):
    """The pre-flight lists every missing part, a line each; the damaged model folder is one of them."""
    root = place["root"]
    broken = root / "broken-model"
    broken.mkdir(exist_ok=True)
    (broken / "fluxmusic.json").write_text('{"transformer": {')
    code = main(["run", "-q", "--set", "musiccaps", "--captions", str(place["musiccaps"]), "--model", str(broken),
                 "--out", str(root / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert any(str(broken / "fluxmusic.json") in line and "invalid JSON" in line for line in err.splitlines()), err
