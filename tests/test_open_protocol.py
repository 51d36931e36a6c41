"""The protocol opened to outside audio, models and data: `run --generated`, `--model module:factory`, plugin
packages, `hf:` and `table:` sets, shipped Song Describer captions and the no-singing subsets."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fluxbench import FluxbenchError
from fluxbench.audio import write_wav
from fluxbench.cli import main
from fluxbench.results import load_results
from fluxbench.runner import RunConfig, Runner
from test_reliability_support import one_line_error
from test_runner import demo_options, run_config

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fluxbench.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


def tone(frequency: float, seconds: float = 1.0, rate: int = RATE, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def assert_same_numbers(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for field in ("value", "ci95", "n"):
            va, vb = a[key].get(field), b[key].get(field)
            if isinstance(va, list):
                assert np.allclose(va, vb, rtol=0, atol=1e-12), (key, field, va, vb)
            elif isinstance(va, float):
                assert abs(va - vb) <= 1e-12, (key, field, va, vb)
            else:
                assert va == vb, (key, field, va, vb)


# ---- a folder of audio made elsewhere, through the whole protocol ----------------------------------------------
def test_a_runs_generated_folder_scores_exactly_as_the_run_that_made_it(model_folder, tmp_path):
    made = Runner(run_config(model_folder, tmp_path, bootstrap=50)).run()
    generated = tmp_path / "runs" / made["model"]["name"].join(["", "-demo-seed0"]) / "generated"
    assert generated.is_dir()
    # A different --out: nothing is shared with the first run, not even the embedding cache.
    again = Runner(RunConfig(set="demo", set_options=demo_options(tmp_path), generated=str(generated),
                             bootstrap=50, out=str(tmp_path / "other"), progress=False, anchors=False))
    results = again.run()
    assert again.run_dir == tmp_path / "other" / f"{made['model']['name']}-demo-seed0"  # the run's own name
    assert_same_numbers(made["metrics"], results["metrics"])
    assert made["per_clip"].keys() == results["per_clip"].keys()
    for item_id, values in made["per_clip"].items():
        for key, value in values.items():
            assert abs(value - results["per_clip"][item_id][key]) <= 1e-12, (item_id, key)
    on_disk = load_results(again.run_dir / "results.json")
    model = on_disk["model"]
    assert model["family"] == "audio-folder" and model["audio_folder"]["files"] == 6
    assert model["audio_folder"]["path"] == str(generated.resolve())
    assert len(model["audio_folder"]["files_sha256"]) == 64
    assert on_disk["set"]["captions"] == made["set"]["captions"] and on_disk["set"]["scored_items"] == 6
    assert on_disk["timing"]["generate_s"] is None
    # Changing one file changes the recorded checksum (what was scored is pinned).
    damaged = tmp_path / "copy"
    damaged.mkdir()
    for path in generated.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    first = sorted(damaged.iterdir())[0]
    first.write_bytes(first.read_bytes()[:-2] + b"\x01\x00")
    third = Runner(RunConfig(set="demo", set_options=demo_options(tmp_path), generated=str(damaged),
                             label="edited", bootstrap=0, out=str(tmp_path / "other"), progress=False,
                             anchors=False)).run()
    assert third["model"]["name"] == "edited"
    assert third["model"]["audio_folder"]["files_sha256"] != model["audio_folder"]["files_sha256"]


def test_audio_folder_preflight_lists_missing_extra_and_broken_files(tmp_path):
    ids = ["-0Gj8-vB1q4", "-0SdAVK79lg", "-0vPFx-wRRI", "-0xzrMun0Rs", "-1LrH01Ei1w"]
    captions = tmp_path / "captions.csv"
    captions.write_text("ytid,start_s,end_s,caption,is_balanced_subset,is_audioset_eval\n" + "".join(
        f"{i},0,10,a tune number {n},False,True\n" for n, i in enumerate(ids)))
    references, generated = tmp_path / "ref", tmp_path / "gen"
    for n, item_id in enumerate(ids):
        write_wav(references / f"{item_id}.wav", tone(200 + 50 * n), RATE)
    write_wav(generated / f"{ids[0]}.wav", tone(300), RATE)
    write_wav(generated / f"{ids[1]}.flac", tone(310), RATE)
    write_wav(generated / f"{ids[2]}.wav", tone(320), 22_050)
    (generated / f"{ids[3]}.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # broken header
    write_wav(generated / "not-an-item.wav", tone(330), RATE)
    (generated / "notes.txt").write_text("seed 3")
    config = RunConfig(set="musiccaps", set_options={"captions": str(captions), "audio_dir": str(references)},
                       generated=str(generated), label="mine", backbone="descriptor", duration=1.0, bootstrap=0,
                       out=str(tmp_path / "runs"), progress=False)
    runner = Runner(config)
    eval_set, items = runner.preflight()
    match = runner.folder_match
    assert sorted(match.files) == sorted(ids[:4]) and match.missing == [ids[4]]
    assert list(match.unreadable) == [ids[3]] and "unreadable audio" in match.unreadable[ids[3]]
    assert match.extra == ["not-an-item.wav", "notes.txt"]
    results = runner.run()
    assert results["set"]["scored_items"] == 3 and results["model"]["audio_folder"]["files"] == 3
    assert results["set"]["unscored"][ids[4]] == "no generated file"
    assert results["set"]["unscored"][ids[3]].startswith("generated ")
    assert results["set"]["missing_references"] == []  # the references were all there
    assert sorted(p.name for p in (runner.run_dir / "generated").iterdir()) == \
        sorted([f"{ids[0]}.wav", f"{ids[1]}.flac", f"{ids[2]}.wav"])
    # Fewer than two usable files: the pre-flight names the folder and stops before anything is scored.
    lonely = tmp_path / "lonely"
    write_wav(lonely / f"{ids[0]}.wav", tone(300), RATE)
    with pytest.raises(FluxbenchError, match=r"generated audio \(lonely\): 1 of 5 items .* metrics need at least 2"):
        Runner(RunConfig(set="musiccaps", set_options={"captions": str(captions), "audio_dir": str(references)},
                         generated=str(lonely), backbone="descriptor", out=str(tmp_path / "runs"),
                         progress=False)).run()


def test_generated_folder_files_left_from_an_earlier_placement_are_not_scored(tmp_path):
    ids = ["a1", "b2", "c3"]
    table = tmp_path / "items.jsonl"
    table.write_text("".join(json.dumps({"id": i, "caption": f"tune {i}"}) + "\n" for i in ids))
    for n, item_id in enumerate(ids):
        write_wav(tmp_path / "ref" / f"{item_id}.wav", tone(200 + 40 * n), RATE)
        write_wav(tmp_path / "gen" / f"{item_id}.wav", tone(260 + 40 * n), RATE)
    config = dict(set=f"table:{table}", set_options={"audio_dir": str(tmp_path / "ref")}, backbone="descriptor",
                  bootstrap=0, out=str(tmp_path / "runs"), progress=False, generated=str(tmp_path / "gen"),
                  label="x", duration=1.0)
    assert Runner(RunConfig(**config)).run()["set"]["scored_items"] == 3
    (tmp_path / "gen" / "c3.wav").unlink()
    second = Runner(RunConfig(**config))
    results = second.run()
    assert results["set"]["scored_items"] == 2 and results["set"]["unscored"] == {"c3": "no generated file"}
    assert sorted(p.name for p in (second.run_dir / "generated").iterdir()) == ["a1.wav", "b2.wav"]


def test_song_describer_generated_files_may_drop_the_sdd_prefix(tmp_path):
    from fluxbench.pregenerated import match_folder
    from fluxbench.protocols.sets.song_describer import SongDescriber

    eval_set = SongDescriber(audio_dir=tmp_path)
    items = list(eval_set.items())[:3]
    write_wav(tmp_path / "gen" / f"{items[0].id}.wav", tone(300), RATE)  # sdd-<caption_id>
    write_wav(tmp_path / "gen" / f"{items[1].id.removeprefix('sdd-')}.wav", tone(300), RATE)  # <caption_id>
    match = match_folder(tmp_path / "gen", items, eval_set)
    assert sorted(match.files) == sorted([items[0].id, items[1].id]) and match.missing == [items[2].id]


@pytest.mark.parametrize("argv, expected", [
    (["--generated", "<gen>", "--model", "fluxmusic-small"], "leave out --model"),
    (["--generated", "<gen>", "--steps", "4"], "do not apply"),
    (["--label", "x"], "--label names a --generated folder"),
    (["--generated", "<gen>", "--shard", "0/2"], "leave out --shard"),
])
def test_generated_folder_option_conflicts_are_one_line_errors(argv, expected, tmp_path, capsys):
    (tmp_path / "gen").mkdir()
    argv = [a.replace("<gen>", str(tmp_path / "gen")) for a in argv]
    code = main(["run", "-q", "--out", str(tmp_path / "runs"), *argv])
    err = one_line_error(capsys, code)
    assert expected in err, err


# ---- models from outside the catalog ----------------------------------------------------------------------------
def test_the_readme_example_model_runs_by_module_and_by_file(tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("id,caption\np1,a slow piano tune\np2,a fast drum groove\np3,an organ chord\n")
    for n, item_id in enumerate(("p1", "p2", "p3")):
        write_wav(tmp_path / "ref" / f"{item_id}.wav", tone(220 * (n + 1), 2.0), RATE)
    for model in ("examples.tone_model:ToneModel", str(ROOT / "examples" / "tone_model.py") + ":ToneModel"):
        done = cli("run", "--model", model, "--set", f"table:{table}", "--audio-dir", str(tmp_path / "ref"),
                   "--backbone", "descriptor", "--duration", "2", "--bootstrap", "0", "--out", str(tmp_path / "runs"),
                   "-q")
        assert done.returncode == 0, done.stderr
        results = load_results(tmp_path / "runs" / "ToneModel-table-prompts.csv-seed0")
        assert results["model"]["family"] == "external" and results["model"]["source"]["target"] == model
        assert results["set"]["scored_items"] == 3 and results["set"]["source"]["columns"]["id"] == "id"
        assert results["set"]["captions_sha256"] and results["set"]["name"] == "table:prompts.csv"


BAD_MODELS = textwrap.dedent('''
    import numpy as np
    from fluxbench.models.base import GeneratedAudio, TextToMusicModel

    class Made(TextToMusicModel):
        name, sample_rate = "made", 16000

        def __init__(self, wave=lambda n, rows: np.zeros((rows, n), np.float32), rate=16000):
            self.wave, self.rate = wave, rate

        def generate(self, prompts, duration=10.24, seed=0, settings=None, **options):
            settings = self.settings_for(duration, settings, options)
            return GeneratedAudio(self.wave(round(settings.duration * 16000), len(prompts)), self.rate)

        def fingerprint(self):
            return "made"

    def number():
        return 42

    def raising():
        raise RuntimeError("no GPU here")

    def flat():
        return Made(lambda n, rows: np.zeros(n, np.float32))

    def wrong_rate():
        return Made(rate=22050)

    def short():
        return Made(lambda n, rows: np.zeros((rows, n // 10), np.float32))

    def integers():
        return Made(lambda n, rows: np.zeros((rows, n), np.int16))

    def nan():
        return Made(lambda n, rows: np.full((rows, n), np.nan, np.float32))

    def one_clip():
        return Made(lambda n, rows: np.zeros((1, n), np.float32))

    def no_options():
        return Made()

    not_callable = None
''')


@pytest.mark.parametrize("target, expected", [
    ("no_such_module_here:make", "cannot import no_such_module_here (ModuleNotFoundError"),
    ("bad_models:missing", "bad_models has no attribute 'missing'"),
    ("bad_models:not_callable", "not_callable is a NoneType, expected a class or a function"),
    ("bad_models:number", "the factory returned int, expected a fluxbench.models.base.TextToMusicModel"),
    ("bad_models:raising", "the factory raised RuntimeError: no GPU here"),
    ("bad_models:flat", "waveforms must be [batch, samples], got shape (32000,)"),
    ("bad_models:wrong_rate", "audio at 22050 Hz, but the model declares sample_rate 16000"),
    ("bad_models:short", "returned 3200 samples (0.200 s) per clip, expected 2 s"),
    ("bad_models:integers", "returned int16 samples, expected floats"),
    ("bad_models:nan", "NaN or infinite samples"),
    ("bad_models:one_clip", "returned 1 clip(s) for 2 prompt(s)"),
])
def test_outside_factories_fail_in_one_line(target, expected, tmp_path, monkeypatch, capsys):
    (tmp_path / "bad_models.py").write_text(BAD_MODELS)
    monkeypatch.chdir(tmp_path)  # modules are found in the working directory, as with `python -m`
    monkeypatch.delitem(sys.modules, "bad_models", raising=False)
    code = main(["generate", "-q", "--model", target, "--prompt", "a", "--prompt", "b", "--duration", "2",
                 "--batch-size", "2", "--out", str(tmp_path / "out")])
    err = one_line_error(capsys, code)
    assert expected in err, err


def test_an_option_a_factory_does_not_take_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad_models.py").write_text(BAD_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "bad_models", raising=False)
    code = main(["generate", "-q", "--model", "bad_models:no_options", "--prompt", "a", "--device", "cuda",
                 "--out", str(tmp_path / "out")])
    err = one_line_error(capsys, code)
    assert "--device given, but the factory takes no options" in err, err
    # fluxbench's own options (batch size, "auto" device) are not forced on it
    assert main(["generate", "-q", "--model", "bad_models:no_options", "--prompt", "a", "--duration", "1",
                 "--out", str(tmp_path / "out")]) == 0


def test_a_pip_installed_plugin_is_listed_and_used_by_name(tmp_path):
    package = tmp_path / "tone-plugin"
    (package / "tone_plugin").mkdir(parents=True)
    (package / "tone_plugin" / "__init__.py").write_text((ROOT / "examples" / "tone_model.py").read_text())
    (package / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tone-plugin"
        version = "0.3.1"

        [project.entry-points."fluxbench.models"]
        tone-plugin = "tone_plugin:ToneModel"
        fluxmusic-small = "tone_plugin:ToneModel"
    '''))
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                                "--no-build-isolation", "--no-index", "--target", str(site), str(package)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {"PYTHONPATH": str(site)}
    listed = cli("models", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["tone-plugin"]["family"] == "plugin" and rows["tone-plugin"]["package"] == "tone-plugin"
    assert rows["tone-plugin"]["version"] == "0.3.1"
    assert rows["fluxmusic-small"]["family"] == "fluxmusic"  # a built-in name is never taken over, and that is said
    assert "fluxmusic-small" in listed.stderr and "is left out" in listed.stderr
    assert "tone-plugin" not in {row["name"] for row in json.loads(cli("models", "--json").stdout)}
    table = tmp_path / "items.csv"
    table.write_text("id,caption\nx,a bright whistle\ny,a low hum\n")
    for n, item_id in enumerate("xy"):
        write_wav(tmp_path / "ref" / f"{item_id}.wav", tone(300 * (n + 1)), RATE)
    done = cli("run", "--model", "tone-plugin", "--set", f"table:{table}", "--audio-dir", str(tmp_path / "ref"),
               "--backbone", "descriptor", "--duration", "1", "--bootstrap", "0", "--out", str(tmp_path / "runs"),
               "-q", env=env)
    assert done.returncode == 0, done.stderr
    results = load_results(tmp_path / "runs" / "tone-plugin-table-items.csv-seed0")
    assert results["model"]["family"] == "plugin" and results["model"]["source"]["package"] == "tone-plugin"
    generated = cli("generate", "--model", "tone-plugin", "--prompt", "a tune", "--duration", "1", "--out",
                    str(tmp_path / "clips"), "-q", env=env)
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "clips" / "0000.wav").is_file()


# ---- any dataset as a set -----------------------------------------------------------------------------------------
def wav_bytes(wave: np.ndarray, rate: int = RATE, format: str = "WAV") -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format=format)
    return buffer.getvalue()


@pytest.fixture()
def parquet_dataset(tmp_path, monkeypatch):
    """A local Hugging Face dataset: parquet with audio bytes (WAV and FLAC, 16 and 44.1 kHz, mono and stereo)."""
    pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "fb-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    clips = [wav_bytes(tone(220)), wav_bytes(np.stack([tone(330, rate=44_100)] * 2, axis=1), 44_100, "FLAC"),
             wav_bytes(tone(440)), wav_bytes(tone(550))]
    table = pa.table({"clip": ["c0", "c1", "c2", "c3"],
                      "text": ["low hum", "stereo tune", "bright tone", "higher tone"],
                      "audio": [{"bytes": b, "path": f"c{n}.x"} for n, b in enumerate(clips)],
                      "duration_s": [1.0, 1.0, 1.0, 1.0]})
    root = tmp_path / "dataset"
    (root / "data").mkdir(parents=True)
    pq.write_table(table, root / "data" / "test-00000-of-00001.parquet")
    return root


def test_a_local_hugging_face_dataset_is_a_set_with_cached_references(parquet_dataset, tmp_path):
    from fluxbench.audio import read_audio
    from fluxbench.protocols.sets.hf import HuggingFaceSet

    # "clip" is no usual id name and "text" the only caption-like column: the id is named, the rest detected.
    eval_set = HuggingFaceSet(str(parquet_dataset), id_column="clip")
    items = list(eval_set.items())
    assert [i.id for i in items] == ["c0", "c1", "c2", "c3"] and items[1].caption == "stereo tune"
    assert eval_set.split == "test" and eval_set.columns.audio == "audio" and eval_set.columns.caption == "text"
    assert items[1].reference.suffix == ".flac" and items[0].reference.suffix == ".wav"
    audio, rate = read_audio(items[1].reference)
    assert rate == 44_100 and audio.shape == (2, 44_100)
    assert np.allclose(audio[0], tone(330, rate=44_100), atol=1e-4)
    folder = items[0].reference.parent
    assert (folder / ".complete.json").is_file() and eval_set.fingerprint in folder.name
    stamp = items[0].reference.stat().st_mtime_ns
    again = list(HuggingFaceSet(str(parquet_dataset), id_column="clip").items())  # the same revision: no rewrite
    assert again[0].reference == items[0].reference and again[0].reference.stat().st_mtime_ns == stamp
    # Without an id column, items are numbered by row.
    assert [i.id for i in HuggingFaceSet(str(parquet_dataset)).items()][:2] == ["row-000000", "row-000001"]


@pytest.mark.parametrize("options, expected", [
    ({"caption_column": "nope"}, "--caption-column 'nope' is not a column; columns: clip, text, audio, duration_s"),
    ({"split": "train"}, "no split 'train'; splits: test"),
    ({"audio_column": "duration_s", "caption_column": "text", "id_column": "clip"}, None),
])
def test_hf_set_column_and_split_errors_name_what_exists(parquet_dataset, options, expected):
    from fluxbench.protocols.sets.hf import HuggingFaceSet

    if expected is None:  # a column that holds no audio gives no reference, not a crash
        assert all(item.reference is None for item in HuggingFaceSet(str(parquet_dataset), **options).items())
        return
    with pytest.raises(FluxbenchError) as raised:
        list(HuggingFaceSet(str(parquet_dataset), **options).items())
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_ambiguous_columns_are_refused_with_the_column_list(tmp_path):
    from fluxbench.protocols.sets.table import TableSet

    table = tmp_path / "t.csv"
    table.write_text("id,ytid,caption\na,b,a tune\n")
    with pytest.raises(FluxbenchError, match=r"2 columns could hold the item id \(id, ytid\); pick one with "
                                             r"--id-column \(columns: id, ytid, caption\)"):
        list(TableSet(table).items())
    assert [i.id for i in TableSet(table, id_column="ytid").items()] == ["b"]


def test_hf_dataset_runs_through_the_cli_offline(parquet_dataset, tmp_path):
    done = cli("run", "--model", "examples.tone_model:ToneModel", "--set", f"hf:{parquet_dataset}",
               "--id-column", "clip", "--backbone", "descriptor", "--duration", "1", "--bootstrap", "0",
               "--out", str(tmp_path / "runs"), "-q")
    assert done.returncode == 0, done.stderr
    results = load_results(tmp_path / "runs" / "ToneModel-hf-dataset-seed0")
    source = results["set"]["source"]
    assert source["source"] == "huggingface" and source["split"] == "test" and source["rows"] == 4
    assert source["columns"] == {"id": "clip", "caption": "text", "audio": "audio"} and source["fingerprint"]
    assert results["set"]["scored_items"] == 4


def test_table_set_with_an_audio_column_and_json_lines(tmp_path):
    from fluxbench.protocols.sets.table import TableSet

    write_wav(tmp_path / "audio" / "x" / "first.flac", tone(300), RATE)
    table = tmp_path / "items.jsonl"
    table.write_text(json.dumps({"uid": "u1", "prompt": "a tune", "file": "x/first.flac"}) + "\n"
                     + json.dumps({"uid": "u2", "prompt": "another", "file": "x/absent.wav"}) + "\n")
    items = list(TableSet(table, audio_dir=tmp_path / "audio").items())
    assert [(i.id, i.caption) for i in items] == [("u1", "a tune"), ("u2", "another")]
    assert items[0].reference == tmp_path / "audio" / "x" / "first.flac" and items[1].reference is None
    table.write_text(json.dumps({"uid": "u1", "prompt": " "}) + "\n")
    with pytest.raises(FluxbenchError, match=r"items.jsonl:1: empty or missing caption in column 'prompt'"):
        list(TableSet(table, audio_dir=tmp_path).items())


def test_set_options_a_set_does_not_take_are_named(tmp_path, capsys):
    code = main(["run", "-q", "--set", "musiccaps", "--split", "test", "--out", str(tmp_path / "runs")])
    err = one_line_error(capsys, code)
    assert "--split not taken by this set (it takes --captions, --audio-dir, --subset)" in err


# ---- shipped sets -------------------------------------------------------------------------------------------------
def test_song_describer_ships_and_both_sets_have_no_singing_subsets(tmp_path, monkeypatch):
    import hashlib

    from fluxbench.protocols.sets import musiccaps, song_describer
    from fluxbench.protocols.sets.musiccaps import MusicCaps
    from fluxbench.protocols.sets.song_describer import SongDescriber

    monkeypatch.delenv("FLUXBENCH_SONG_DESCRIBER_CAPTIONS", raising=False)
    monkeypatch.delenv("FLUXBENCH_MUSICCAPS_CAPTIONS", raising=False)
    published = {song_describer.SHIPPED_CAPTIONS: "fb853b0327394cfdbdc205f712fdb64df70e6fcd3bae3a9d3f1617d54b45ad70",
                 song_describer.NO_SINGING_IDS: "5385105e980d25cc4c14e97857c1bfeea319d907ed399d1589af6265cc232b4c",
                 musiccaps.NO_SINGING_IDS: "5ad0a5fa1e93e0c9b1a882ebf2d1c2d9763fd9413ca641bc5b6b0a451c72bde0"}
    for path, digest in published.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
    counts = {subset: len(list(SongDescriber(subset=subset).items()))
              for subset in ("valid", "all", "no-singing", "valid-no-singing")}
    assert counts == {"valid": 746, "all": 1106, "no-singing": 586, "valid-no-singing": 386}
    assert len(list(MusicCaps(subset="no-singing").items())) == 2218
    note = (song_describer.SHIPPED_CAPTIONS.parent / "README.md").read_text()
    assert "Manco et al. 2023" in note and "CC BY-SA 4.0" in note and "nosinging" in note
    # a track's audio is found from the release's relative path, and the shipped file is verified on load
    first = next(SongDescriber().items())
    write_wav(tmp_path / "audio" / "34" / "1004034.mp3.wav", np.zeros(10), RATE)  # another name: not found
    assert next(SongDescriber(audio_dir=tmp_path / "audio").items()).reference is None and first.id == "sdd-859"
    damaged = tmp_path / "song_describer.csv"
    damaged.write_bytes(song_describer.SHIPPED_CAPTIONS.read_bytes().replace(b"melody", b"melodie", 1))
    monkeypatch.setattr(song_describer, "SHIPPED_CAPTIONS", damaged)
    with pytest.raises(FluxbenchError, match=r"shipped caption file .* has sha256 [0-9a-f]{64}, expected fb853b03"):
        list(SongDescriber().items())


def test_no_singing_subset_is_recorded_in_results(tmp_path, monkeypatch):
    from fluxbench.protocols.sets.musiccaps import NO_SINGING_IDS

    monkeypatch.delenv("FLUXBENCH_MUSICCAPS_CAPTIONS", raising=False)
    ids = NO_SINGING_IDS.read_text().split()[:3]
    for n, item_id in enumerate(ids):
        write_wav(tmp_path / "ref" / f"{item_id}.wav", tone(200 + 60 * n), RATE)
        write_wav(tmp_path / "gen" / f"{item_id}.wav", tone(230 + 60 * n), RATE)
    results = Runner(RunConfig(set="musiccaps", set_options={"audio_dir": str(tmp_path / "ref"),
                                                            "subset": "no-singing"},
                               generated=str(tmp_path / "gen"), backbone="descriptor", duration=1.0, bootstrap=0,
                               out=str(tmp_path / "runs"), progress=False)).run()
    assert results["set"]["subset"] == "no-singing" and results["set"]["items"] == 2218
    assert results["set"]["scored_items"] == 3 and len(results["set"]["missing_references"]) == 2215


# ---- the declared set interface ---------------------------------------------------------------------------------
def test_sets_lists_the_demo_sets_real_size_and_the_open_forms():
    from fluxbench.protocols.sets.demo import DemoSet

    listed = cli("sets", "--json")
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["demo"]["items"] == len(DemoSet()) == 64
    text = cli("sets").stdout
    assert "hf:NAME_OR_PATH" in text and "table:FILE" in text


def test_the_runner_reads_sets_only_through_the_declared_interface():
    import ast

    tree = ast.parse((ROOT / "fluxbench" / "runner.py").read_text())
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "getattr" not in calls and "hasattr" not in calls
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not strings & {"demo", "musiccaps", "song-describer"}


def test_anchors_score_with_the_runs_backbone(model_folder, tmp_path, monkeypatch):
    """`--backbone paper` on the demo set: the anchor rows are scored with the paper backbones too (they were
    scored with the descriptor whatever the run used, and their columns came out empty)."""
    from fluxbench import preflight
    from fluxbench.protocols.metrics import scoring

    asked = []
    real = scoring.score_folders

    def recording(*args, **kwargs):  # records the backbone asked for, computes with the weight-free one
        asked.append(kwargs.get("backbone"))
        return real(*args, **{**kwargs, "backbone": "descriptor"})

    monkeypatch.setattr(scoring, "score_folders", recording)
    monkeypatch.setattr(preflight, "weight_parts", lambda requests, root, role: [])  # no paper weights here
    results = Runner(run_config(model_folder, tmp_path, anchors=True, backbone="paper", bootstrap=0)).run()
    assert asked == ["paper"] * 4  # the run, then its untrained, noise and codec rows
    assert results["anchors"]["backbone"] == "paper"
    assert set(results["anchors"]["rows"]["noise"]) >= set(results["metrics"])


def test_a_set_from_outside_code_runs_by_module_and_factory(tmp_path, monkeypatch):
    (tmp_path / "my_sets.py").write_text(textwrap.dedent(f'''
        from pathlib import Path
        from fluxbench.protocols.sets import EvalSet, SetItem

        class Whistles(EvalSet):
            name = "whistles"
            duration = 1.0
            default_backbone = "descriptor"

            def items(self):
                for n in range(3):
                    yield SetItem(f"w{{n}}", f"whistle number {{n}}", Path({str(tmp_path)!r}) / "ref" / f"w{{n}}.wav")

        def not_a_set():
            return [1, 2]
    '''))
    for n in range(3):
        write_wav(tmp_path / "ref" / f"w{n}.wav", tone(500 + 100 * n), RATE)
        write_wav(tmp_path / "gen" / f"w{n}.wav", tone(520 + 100 * n), RATE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_sets", raising=False)
    results = Runner(RunConfig(set="my_sets:Whistles", generated=str(tmp_path / "gen"), bootstrap=0,
                               out=str(tmp_path / "runs"), progress=False)).run()
    assert results["set"]["name"] == "whistles" and results["set"]["scored_items"] == 3
    assert results["scoring"]["backbone"] == "descriptor" and results["settings"]["duration"] == 1.0
    with pytest.raises(FluxbenchError, match="the factory returned list, expected a fluxbench.protocols.sets.EvalSet"):
        Runner(RunConfig(set="my_sets:not_a_set", generated=str(tmp_path / "gen"), out=str(tmp_path / "runs"),
                         progress=False)).run()
