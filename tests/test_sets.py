"""MusicCaps and Song Describer loaders on caption files in the published column layout."""

import csv

import pytest

from fluxbench import FluxbenchError
from fluxbench.audio import write_wav
from fluxbench.protocols.sets.musiccaps import MusicCaps
from fluxbench.protocols.sets.song_describer import SongDescriber

import numpy as np

MUSICCAPS_COLUMNS = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption", "author_id",
                     "is_balanced_subset", "is_audioset_eval"]
SDD_COLUMNS = ["caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id", "album_id", "path",
               "duration"]


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def musiccaps_rows():
    return [
        {"ytid": "-0Gj8-vB1q4", "start_s": 30, "end_s": 40, "audioset_positive_labels": "/m/0140xf",
         "aspect_list": "['low quality']", "caption": "A low quality recording of a song with a flute melody.",
         "author_id": 4, "is_balanced_subset": "False", "is_audioset_eval": "True"},
        {"ytid": "-0SdAVK79lg", "start_s": 30, "end_s": 40, "audioset_positive_labels": "/m/0155w",
         "aspect_list": "['guitar']", "caption": "An acoustic guitar strums a slow folk progression.",
         "author_id": 0, "is_balanced_subset": "True", "is_audioset_eval": "False"},
        {"ytid": "-0vPFx-wRRI", "start_s": 30, "end_s": 40, "audioset_positive_labels": "/m/025_jnm",
         "aspect_list": "['drums']", "caption": "Energetic drums and bass in a fast dance beat.",
         "author_id": 6, "is_balanced_subset": "True", "is_audioset_eval": "True"},
    ]


def test_musiccaps_items_subsets_and_audio(tmp_path):
    captions = write_csv(tmp_path / "musiccaps-public.csv", MUSICCAPS_COLUMNS, musiccaps_rows())
    audio = tmp_path / "audio"
    write_wav(audio / "-0Gj8-vB1q4.wav", np.zeros(160), 16000)
    write_wav(audio / "-0vPFx-wRRI.wav", np.zeros(160), 16000)
    items = list(MusicCaps(captions=captions, audio_dir=audio).items())
    assert [i.id for i in items] == ["-0Gj8-vB1q4", "-0SdAVK79lg", "-0vPFx-wRRI"]
    assert items[1].caption == "An acoustic guitar strums a slow folk progression."
    assert items[0].reference == audio / "-0Gj8-vB1q4.wav" and items[1].reference is None
    assert [i.id for i in MusicCaps(captions=captions, subset="audioset-eval").items()] == ["-0Gj8-vB1q4", "-0vPFx-wRRI"]
    assert [i.id for i in MusicCaps(captions=captions, subset="balanced").items()] == ["-0SdAVK79lg", "-0vPFx-wRRI"]


def test_shipped_musiccaps_captions_need_only_the_audio(tmp_path, monkeypatch):
    """The published file ships with the package: 5,521 rows, 2,858 AudioSet-eval, 1,000 balanced."""
    import hashlib

    from fluxbench.protocols.sets import musiccaps

    monkeypatch.delenv("FLUXBENCH_MUSICCAPS_CAPTIONS", raising=False)
    shipped = musiccaps.SHIPPED_CAPTIONS
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == \
        "bce5500709e6b129e070cbffc28caefe6b3d6977b2073493ee9b48806096c034"
    license_note = (shipped.parent / "README.md").read_text()
    assert "CC BY-SA 4.0" in license_note and "Google LLC" in license_note and "Agostinelli" in license_note
    write_wav(tmp_path / "-0Gj8-vB1q4.flac", np.zeros(160), 16000)
    counts = {}
    for subset in ("all", "audioset-eval", "balanced"):
        eval_set = MusicCaps(audio_dir=tmp_path, subset=subset)
        items = list(eval_set.items())
        counts[subset] = len(items)
        assert eval_set.captions_path == shipped and len({i.id for i in items}) == len(items)
    assert counts == {"all": 5521, "audioset-eval": 2858, "balanced": 1000}
    first = next(MusicCaps(audio_dir=tmp_path).items())
    assert first.id == "-0Gj8-vB1q4" and first.reference == tmp_path / "-0Gj8-vB1q4.flac"
    assert first.caption.startswith("The low quality recording features a ballad song")


def test_shipped_captions_are_checked_against_their_sha256(tmp_path, monkeypatch):
    from fluxbench.protocols.sets import musiccaps

    monkeypatch.delenv("FLUXBENCH_MUSICCAPS_CAPTIONS", raising=False)
    damaged = tmp_path / "musiccaps-public.csv"
    damaged.write_bytes(musiccaps.SHIPPED_CAPTIONS.read_bytes().replace(b"ballad", b"ballet", 1))
    monkeypatch.setattr(musiccaps, "SHIPPED_CAPTIONS", damaged)
    with pytest.raises(FluxbenchError, match=r"shipped caption file .* has sha256 [0-9a-f]{64}, expected bce55007"):
        list(MusicCaps().items())
    # an explicit caption file is read as given (its checksum goes into the results instead)
    assert len(list(MusicCaps(captions=damaged).items())) == 5521


def test_reference_lookup_prefers_readable_formats_and_keeps_unsupported_ones(tmp_path):
    from fluxbench.protocols.sets.captions_csv import AudioFolder

    for name in ("a.m4a", "a.flac", "b.m4a", "c.wav", ".d.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    folder = AudioFolder(tmp_path)
    assert folder.find("a") == tmp_path / "a.flac"  # readable beats unsupported
    assert folder.find("b") == tmp_path / "b.m4a"  # kept, so the run reports it as unsupported, not missing
    assert folder.find("c") == tmp_path / "c.wav" and folder.find("d") is None and folder.find("e") is None
    assert AudioFolder(None).find("a") is None and AudioFolder(tmp_path / "absent").find("a") is None


def test_one_list_of_audio_suffixes():
    """Set lookup, scoring, reports and listening tests share one list, and it is what read_audio accepts."""
    import fluxbench.audio as audio
    import fluxbench.human_eval.design as design
    import fluxbench.protocols.metrics.clips as clips
    import fluxbench.protocols.sets.captions_csv as captions_csv
    import fluxbench.reports.build as build

    for module in (design, clips, captions_csv, build):
        assert module.AUDIO_SUFFIXES is audio.AUDIO_SUFFIXES, module.__name__
    assert ".m4a" not in audio.AUDIO_SUFFIXES
    assert audio.unsupported_format("x.M4A").startswith("unsupported format .m4a")


def test_musiccaps_bad_files_are_one_line_errors(tmp_path):
    rows = musiccaps_rows()
    bad = write_csv(tmp_path / "bad.csv", [c for c in MUSICCAPS_COLUMNS if c != "caption"],
                    [{k: v for k, v in r.items() if k != "caption"} for r in rows])
    with pytest.raises(FluxbenchError, match=r"bad.csv lacks column\(s\) \['caption'\]"):
        list(MusicCaps(captions=bad).items())
    rows[2]["caption"] = "  "
    empty = write_csv(tmp_path / "empty.csv", MUSICCAPS_COLUMNS, rows)
    with pytest.raises(FluxbenchError, match="empty.csv line 4: empty caption"):
        list(MusicCaps(captions=empty).items())
    rows[2]["caption"], rows[2]["ytid"] = "x", rows[0]["ytid"]
    duplicate = write_csv(tmp_path / "dup.csv", MUSICCAPS_COLUMNS, rows)
    with pytest.raises(FluxbenchError, match="appears twice"):
        list(MusicCaps(captions=duplicate).items())
    with pytest.raises(FluxbenchError, match="caption file .* not found"):
        list(MusicCaps(captions=tmp_path / "nope.csv").items())


def test_song_describer_valid_subset_and_paths(tmp_path):
    root = tmp_path / "song-describer"
    write_wav(root / "audio" / "00" / "1000.2min.mp3.wav", np.zeros(10), 16000)  # not the right name: missing
    write_wav(root / "audio" / "01" / "2001.2min.wav", np.zeros(10), 16000)
    rows = [
        {"caption_id": 1, "track_id": 1000, "caption": "Dreamy synth pads.", "is_valid_subset": "True",
         "familiarity": 0, "artist_id": 1, "album_id": 1, "path": "00/1000.2min.mp3", "duration": 200},
        {"caption_id": 2, "track_id": 2001, "caption": "A punk song.", "is_valid_subset": "False",
         "familiarity": 1, "artist_id": 2, "album_id": 2, "path": "01/2001.2min.wav", "duration": 150},
        {"caption_id": 3, "track_id": 2001, "caption": "Loud guitars and shouting.", "is_valid_subset": "True",
         "familiarity": 1, "artist_id": 2, "album_id": 2, "path": "01/2001.2min.wav", "duration": 150},
    ]
    write_csv(root / "song_describer.csv", SDD_COLUMNS, rows)
    captions = root / "song_describer.csv"
    valid = list(SongDescriber(captions=captions, audio_dir=root / "audio").items())
    assert [i.id for i in valid] == ["sdd-1", "sdd-3"]
    assert valid[0].reference is None and valid[1].reference == root / "audio" / "01" / "2001.2min.wav"
    assert len(list(SongDescriber(captions=captions, audio_dir=root / "audio", subset="all").items())) == 3
    with pytest.raises(FluxbenchError, match="song-describer: caption file .*nope.csv not found"):
        list(SongDescriber(captions=tmp_path / "nope.csv", audio_dir=tmp_path).items())
