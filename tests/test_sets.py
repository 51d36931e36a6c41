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
    # the caption file found inside the audio folder, as datasets are often unpacked
    (audio / "musiccaps-public.csv").write_bytes(captions.read_bytes())
    assert len(list(MusicCaps(audio_dir=audio).items())) == 3


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
    valid = list(SongDescriber(audio_dir=root / "audio").items())
    assert [i.id for i in valid] == ["sdd-1", "sdd-3"]
    assert valid[0].reference is None and valid[1].reference == root / "audio" / "01" / "2001.2min.wav"
    assert len(list(SongDescriber(audio_dir=root / "audio", subset="all").items())) == 3
    with pytest.raises(FluxbenchError, match="song-describer: no caption file"):
        SongDescriber(audio_dir=tmp_path)
