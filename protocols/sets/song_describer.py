"""Song Describer (Manco et al. 2023): ~1.1k crowd-sourced captions of 706 MTG-Jamendo recordings.

Captions come from `song_describer.csv` (caption_id, track_id, caption, is_valid_subset, familiarity,
artist_id, album_id, path, duration); audio (~2 min 320 kbps MP3 excerpts) sits under the dataset's `audio/`
folder at the CSV's relative `path`. One item per caption (id `sdd-<caption_id>`); captions of one track share
its recording as reference. The valid subset (746 captions of 546 tracks) is the evaluation convention and the
default. Recordings are far longer than a generated clip, so the runner crops each reference to the
protocol length around its middle (`reference_crop`), since embedding whole 2-minute files would compare
unlike lengths; `--reference-crop none` keeps them whole (the audioldm_eval behaviour).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import SetError, env_path, read_caption_table, truthy

CAPTIONS_FILE = "song_describer.csv"
COLUMNS = ("caption_id", "track_id", "caption", "is_valid_subset", "path")


class SongDescriber(EvalSet):
    name = "song-describer"
    items_published = 746  # valid subset
    reference_crop = "center"

    def __init__(self, captions: str | os.PathLike | None = None, audio_dir: str | os.PathLike | None = None,
                 subset: str = "valid") -> None:
        if subset not in ("valid", "all"):
            raise SetError(f"song-describer: unknown subset {subset!r}; expected 'valid' or 'all'")
        self.subset = subset
        self.audio_dir = env_path(audio_dir, "FLUXBENCH_SONG_DESCRIBER_AUDIO")
        captions = env_path(captions, "FLUXBENCH_SONG_DESCRIBER_CAPTIONS")
        if captions is None and self.audio_dir is not None:
            for candidate in (self.audio_dir / CAPTIONS_FILE, self.audio_dir.parent / CAPTIONS_FILE):
                if candidate.is_file():
                    captions = candidate
                    break
        self.captions_path = captions  # None: reported when the items are read (the run's pre-flight lists it)

    def _audio(self, relative: str) -> Path | None:
        if self.audio_dir is None or not relative:
            return None
        relative = relative.strip()
        if Path(relative).is_absolute() or ".." in Path(relative).parts:  # must stay inside the audio folder
            return None
        for candidate in (self.audio_dir / relative, self.audio_dir / "audio" / relative,
                          self.audio_dir / relative.replace(".mp3", ".2min.mp3")):
            if candidate.is_file():
                return candidate
        return None

    def items(self) -> Iterator[SetItem]:
        if self.captions_path is None:
            raise SetError(f"song-describer: no caption file; pass --captions PATH/{CAPTIONS_FILE} (or set "
                           f"FLUXBENCH_SONG_DESCRIBER_CAPTIONS); the dataset is on Zenodo (record 10072001)")
        for row in read_caption_table(self.captions_path, COLUMNS, "song-describer"):
            if self.subset == "valid" and not truthy(row["is_valid_subset"]):
                continue
            yield SetItem(f"sdd-{row['caption_id'].strip()}", row["caption"].strip(), self._audio(row["path"]))
