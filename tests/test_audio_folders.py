"""The one lister of audio folders (`fluxbench.audio.list_audio`) and the callers that key clips by file stem."""

from __future__ import annotations

import pytest

from fluxbench.audio import AudioFolderError, list_audio


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return folder


def test_lists_audio_files_sorted_skipping_hidden_and_other_files(tmp_path):
    _touch(tmp_path, "b.wav", "a.FLAC", ".hidden.wav", "notes.txt", "c.m4a", "sub/d.wav", ".cache/e.wav")
    (tmp_path / "folder.wav").mkdir()  # a folder with an audio suffix is not a file
    assert [p.name for p in list_audio(tmp_path)] == ["a.FLAC", "b.wav"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_audio(tmp_path, recursive=True)] == [
        "a.FLAC", "b.wav", "sub/d.wav"]


def test_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(AudioFolderError, match=r"^reference folder .*nowhere does not exist or is not a folder$"):
        list_audio(tmp_path / "nowhere", "reference")
    _touch(tmp_path, "notes.txt")
    with pytest.raises(AudioFolderError, match=r"generated folder .* has no audio files \(looked for .wav, .flac"):
        list_audio(tmp_path, "generated")
    assert list_audio(tmp_path, required=False) == []


def test_two_files_for_one_id_are_refused_when_stems_must_be_unique(tmp_path):
    _touch(tmp_path, "a.wav", "a.flac", "b.wav")
    assert len(list_audio(tmp_path)) == 3
    with pytest.raises(AudioFolderError, match=r"audio folder .*: a.flac and a.wav have the same id 'a'"):
        list_audio(tmp_path, unique_stems=True)
    nested = _touch(tmp_path / "nested", "x/c.wav", "y/c.ogg")
    with pytest.raises(AudioFolderError, match=r"x/c.wav and y/c.ogg have the same id 'c'"):
        list_audio(nested, recursive=True, unique_stems=True)


def test_report_and_listening_test_key_clips_by_stem_through_the_lister(tmp_path):
    from fluxbench.human_eval.design import find_audio
    from fluxbench.human_eval.study import StudyError
    from fluxbench.reports.build import clips_in

    run = _touch(tmp_path / "run", "audio/p1.wav", "audio/p2.flac", "audio/.p3.wav")
    assert sorted(find_audio(run)) == ["p1", "p2"]  # a run folder's audio/ subfolder
    assert clips_in(run / "audio") == {"p1": run / "audio" / "p1.wav", "p2": run / "audio" / "p2.flac"}
    assert clips_in(_touch(tmp_path / "empty")) == {}
    _touch(run, "audio/p1.ogg")
    with pytest.raises(StudyError, match="p1.ogg and p1.wav have the same id 'p1'"):
        find_audio(run)
    with pytest.raises(AudioFolderError, match="p1.ogg and p1.wav have the same id 'p1'"):
        clips_in(run / "audio")
    with pytest.raises(StudyError, match="does not exist or is not a folder"):
        find_audio(tmp_path / "nowhere")
