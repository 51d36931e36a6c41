"""Hostile ids, odd files and fields: what a careless or hostile input must not do.

Ids from caption and prompt files are data, not paths; text and fields are checked, not coerced; a killed
writer leaves no temporary file behind for good; refusing a pickle never suggests loading it unsafely.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fluxbench import FluxbenchError
from fluxbench.cli import main as cli
from fluxbench.inputs import InputError, read_text, safe_file_stem
from test_reliability_support import one_line_error
from test_train import manifest, tiny_config  # noqa: F401  (manifest is a fixture)


# ---- ids from caption and prompt files are data, not paths -------------------------------------------------
def test_safe_file_stem_keeps_plain_ids_and_confines_the_rest():
    from fluxbench.inputs import unique_file_stems

    for plain in ("yt-0Gj8-vB1q4", "-abc_DEF.1", "sdd-123"):
        assert safe_file_stem(plain) == plain
    hostile = ["../../../../tmp/x/victim", "sub/dir", "..", ".", "", "a\\b", "caf\u00e9", "x" * 300, "a b", ".hidden",
               "trailing.", "\x00nul", "CR\rLF\n"]
    for stem in map(safe_file_stem, hostile):
        assert "/" not in stem and "\\" not in stem and not stem.startswith(".") and not stem.endswith(".")
        assert 0 < len(stem) <= 120 and Path(stem).name == stem and stem.isascii() and stem.isprintable()
    assert safe_file_stem("../../../../tmp/x/victim") == "tmp_x_victim"
    with pytest.raises(InputError, match="ids 'a b' and 'a/b' would share the file name 'a_b'"):
        unique_file_stems(["a b", "ok", "a/b"], "set 'x'")
    assert unique_file_stems(["a b", "ok"], "set 'x'") == {"a b": "a_b", "ok": "ok"}


def test_song_describer_paths_stay_inside_the_audio_folder(tmp_path):
    from fluxbench.protocols.sets.song_describer import SongDescriber

    audio = tmp_path / "sdd" / "audio"
    (audio / "00").mkdir(parents=True)
    (audio / "00" / "1.mp3").write_bytes(b"inside")
    (tmp_path / "outside.mp3").write_bytes(b"outside")
    table = tmp_path / "song_describer.csv"
    table.write_text("caption_id,track_id,caption,is_valid_subset,path\n1,1,calm piano,True,00/1.mp3\n"
                     f"2,2,loud drums,True,../../outside.mp3\n3,3,an organ,True,{tmp_path / 'outside.mp3'}\n")
    items = list(SongDescriber(captions=table, audio_dir=tmp_path / "sdd").items())
    assert [item.reference for item in items] == [audio / "00" / "1.mp3", None, None]


def test_generate_prompt_ids_name_safe_files_and_keep_the_given_id(tmp_path):
    import argparse

    from fluxbench.commands.generate import read_prompts

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(row) for row in (
        {"id": "yt-abc_1", "caption": "soft piano"}, {"id": "../../escape", "caption": "loud drums"},
        {"id": "a b", "caption": "an organ"})))
    items = read_prompts(argparse.Namespace(prompt=[], prompts_file=str(prompts)))
    assert items == [{"id": "yt-abc_1", "prompt": "soft piano"},
                     {"id": "escape", "prompt": "loud drums", "source_id": "../../escape"},
                     {"id": "a_b", "prompt": "an organ", "source_id": "a b"}]
    prompts.write_text('{"id": "a b", "caption": "a"}\n{"id": "a_b", "caption": "b"}\n')
    with pytest.raises(FluxbenchError, match="ids 'a b' and 'a_b' would share the file name 'a_b'"):
        read_prompts(argparse.Namespace(prompt=[], prompts_file=str(prompts)))
    prompts.write_text('{"id": "x", "caption": "a"}\n{"id": "x", "caption": "b"}\n')
    with pytest.raises(FluxbenchError, match="prompt id 'x' appears twice"):
        read_prompts(argparse.Namespace(prompt=[], prompts_file=str(prompts)))


# ---- text and fields ---------------------------------------------------------------------------------------
def test_read_text_names_the_file_and_the_byte_offset(tmp_path):
    path = tmp_path / "captions.csv"
    data = "id,caption\nx,na\u00efve\n".encode("utf-8") + b"y,caf\xe9\n"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"captions.csv: not UTF-8 text \(byte 0xe9 at offset {data.index(0xe9)}\)"):
        read_text(path)
    path.write_bytes(b"\xef\xbb\xbfid,caption\n")  # a byte-order mark is dropped, not an error
    assert read_text(path) == "id,caption\n"


def test_manifest_fields_are_not_coerced(tmp_path):
    from fluxbench.models.fluxmusic.train import read_manifest

    bad = tmp_path / "m.jsonl"
    for row, message in (({"path": "a.wav", "captions": "a string"}, "must be a non-empty list"),
                         ({"path": "a.wav", "caption": "   "}, "non-empty text"),
                         ({"path": "a.wav", "captions": ["ok", ""]}, "non-empty text"),
                         ({"path": "a.wav", "captions": []}, "must be a non-empty list")):
        bad.write_text(json.dumps(row) + "\n")
        with pytest.raises(FluxbenchError, match=message):
            read_manifest(bad)
    bad.write_text('{"wav": "a.wav", "label": "x"}')  # one JSON object is not the official list layout
    assert read_manifest(bad)[0].captions == ("x",)
    bad.write_text('[{"wav": "a.wav", "label": "x"}, 3]')
    with pytest.raises(FluxbenchError, match=r"m.jsonl:2: missing field 'path'"):
        read_manifest(bad)


def test_training_config_values_are_checked(tmp_path, manifest):  # noqa: F811
    from fluxbench.models.fluxmusic.train import TrainConfig, TrainingError

    for field, value in (("lr", float("nan")), ("lr", -1.0), ("duration", 0.0), ("steps", "10"),
                         ("grad_clip", float("inf")), ("transformer", "depth 4"), ("seed", 1.5)):
        config = tiny_config(manifest, tmp_path / "run")
        setattr(config, field, value)
        with pytest.raises(TrainingError, match=field):
            config.check()
    assert TrainConfig.check(tiny_config(manifest, tmp_path / "run")) is None


def test_duplicate_and_empty_captions_are_refused(tmp_path, capsys):
    from fluxbench.human_eval.design import StudyError, read_captions as study_captions
    from fluxbench.protocols.metrics.scoring import ScoreError, read_captions

    table = tmp_path / "captions.csv"
    table.write_text("id,caption\na,first\na,second\n")
    with pytest.raises(ScoreError, match="line 3: 'a' already has a caption"):
        read_captions(table)
    with pytest.raises(StudyError, match="record 2 repeats the id 'a'"):
        study_captions(table)
    as_json = tmp_path / "captions.json"
    as_json.write_text('{"a": "first", "b": "  "}')
    with pytest.raises(StudyError, match="prompt 'b' has an empty caption"):
        study_captions(as_json)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "caption": "x"}\n{"id": "b", "caption": ""}\n')
    err = one_line_error(capsys, cli(["generate", "-q", "--prompts-file", str(prompts), "--out", str(tmp_path / "g")]))
    assert "item 2 has no 'caption'" in err


def test_design_options_refuse_silent_fallbacks(tmp_path):
    from fluxbench.human_eval.design import DesignOptions, StudyError, create_study

    for options, message in (({"ratings_per_prompt": 0}, "--ratings-per-item 0"),
                             ({"sample_rate": 0}, "--sample-rate 0"),
                             ({"attention_checks": -1}, "--attention-checks -1"),
                             ({"loudness_lufs": float("nan")}, "--loudness nan")):
        with pytest.raises(StudyError, match=message):
            create_study(tmp_path / "study", {"a": tmp_path}, DesignOptions(raters={"beginner": 2}, **options))


# ---- smaller -----------------------------------------------------------------------------------------------
def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    from fluxbench import atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f".results.{atomic._HOST}-{dead_pid}.abc123.json"
    orphan.write_text("{half")
    living = tmp_path / f".results.{atomic._HOST}-{os.getppid()}.def456.json"  # a writer still at work
    living.write_text("{")
    other_file = tmp_path / f".other.{atomic._HOST}-{dead_pid}.abc123.json"
    other_file.write_text("{")
    atomic.write_json(tmp_path / "results.json", {"a": 1})
    assert not orphan.exists() and living.exists() and other_file.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["results.json", living.name, other_file.name])


def test_refused_pickle_never_suggests_unsafe_loading(tmp_path):
    from fluxbench.models.fluxmusic.checkpoint import CheckpointError, load_state_dict

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    path = tmp_path / "evil.pt"
    torch.save({"ema": Payload()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert "system" in message and "\n" not in message
    assert "weights_only" not in message and "likely succeed" not in message


def test_storage_refuses_a_clip_outside_the_raters_playlist(tmp_path):
    pytest.importorskip("sqlalchemy")
    from fluxbench.human_eval.storage import Responses, StorageError
    from fluxbench.human_eval.study import Study
    from test_human_eval_support import make_study

    study = Study.load(make_study(tmp_path, ratings_per_prompt=1))  # each prompt goes to one rater per group
    first, second = [plan for plan in study.raters.values() if plan.group == "beginner"][:2]
    foreign = next(c for c in second.order if c not in first.order)
    responses = Responses(f"sqlite:///{tmp_path / 'r.sqlite'}", study=study)
    responses.register_rater(first.token, first.group or "beginner", {})
    responses.save_rating(first.token, first.order[0], 3, 4)
    with pytest.raises(StorageError, match="not in the playlist"):
        responses.save_rating(first.token, foreign, 3, 4)
    assert set(responses.ratings_of(first.token)) == {first.order[0]}


def test_max_failed_checks_must_not_be_negative(tmp_path):
    from fluxbench.human_eval.analysis import analyse
    from fluxbench.human_eval.study import Key, Study, StudyError
    from test_human_eval_support import make_study

    root = make_study(tmp_path)
    with pytest.raises(StudyError, match="--max-failed-checks -1: expected an integer >= 0"):
        analyse(Study.load(root), Key.load(root), {}, {}, max_failed_checks=-1)
