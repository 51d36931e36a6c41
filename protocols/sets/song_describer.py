"""Song Describer (Manco et al. 2023): 1,106 crowd-sourced captions of 706 MTG-Jamendo recordings.

Captions come from `song_describer.csv` (caption_id, track_id, caption, is_valid_subset, familiarity,
artist_id, album_id, path, duration), which ships with fluxbench (the dataset's Zenodo release, record
10072001; CC BY-SA 4.0, the dataset's authors; see data/README.md) and is checked against its sha256 on every
load; `captions=` (or $FLUXBENCH_SONG_DESCRIBER_CAPTIONS) reads another copy instead. Audio (~2 min 320 kbps
MP3 excerpts) sits under the release's `audio/` folder at the CSV's relative `path`. One item per caption (id
`sdd-<caption_id>`); captions of one track share its recording as reference. Subsets: "valid" (746 captions of
546 tracks, the evaluation convention and the default), "all" (1,106), "no-singing" (the 586 captions that
mention no singing or vocals, as stable-audio-metrics lists them) and "valid-no-singing" (their 386 in the
valid subset). Recordings are far longer than a generated clip, so the runner crops each reference to the
protocol length around its middle (`reference_crop`), since embedding whole 2-minute files would compare unlike
lengths; `--reference-crop none` keeps them whole (the audioldm_eval behaviour).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import (DATA_DIR, SetError, env_path, read_caption_table, shipped_file,
                                                  shipped_ids, truthy)

CAPTIONS_FILE = "song_describer.csv"
SHIPPED_CAPTIONS = DATA_DIR / CAPTIONS_FILE
SHIPPED_SHA256 = "fb853b0327394cfdbdc205f712fdb64df70e6fcd3bae3a9d3f1617d54b45ad70"
NO_SINGING_IDS = DATA_DIR / "song_describer-nosinging-caption_ids.txt"
NO_SINGING_SHA256 = "5385105e980d25cc4c14e97857c1bfeea319d907ed399d1589af6265cc232b4c"
COLUMNS = ("caption_id", "track_id", "caption", "is_valid_subset", "path")
SUBSETS = ("valid", "all", "no-singing", "valid-no-singing")
ID_PREFIX = "sdd-"


class SongDescriber(EvalSet):
    name = "song-describer"
    items_published = 746  # valid subset
    reference_crop = "center"

    def __init__(self, captions: str | os.PathLike | None = None, audio_dir: str | os.PathLike | None = None,
                 subset: str = "valid") -> None:
        if subset not in SUBSETS:
            raise SetError(f"song-describer: unknown subset {subset!r}; expected one of {list(SUBSETS)}")
        self.subset = subset
        self.audio_dir = env_path(audio_dir, "FLUXBENCH_SONG_DESCRIBER_AUDIO")
        explicit = env_path(captions, "FLUXBENCH_SONG_DESCRIBER_CAPTIONS")
        self.captions_path = explicit if explicit is not None else SHIPPED_CAPTIONS
        self.shipped_captions = explicit is None

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

    def file_stems(self, item_id: str) -> tuple[str, ...]:
        """`sdd-<caption_id>` or the bare `<caption_id>` (the dataset's own naming)."""
        return (*super().file_stems(item_id), item_id.removeprefix(ID_PREFIX))

    def items(self) -> Iterator[SetItem]:
        if self.shipped_captions:
            shipped_file(SHIPPED_CAPTIONS, SHIPPED_SHA256, "song-describer")
        keep = (shipped_ids(NO_SINGING_IDS, NO_SINGING_SHA256, "song-describer")
                if self.subset.endswith("no-singing") else None)
        for row in read_caption_table(self.captions_path, COLUMNS, "song-describer"):
            caption_id = row["caption_id"].strip()
            if self.subset.startswith("valid") and not truthy(row["is_valid_subset"]):
                continue
            if keep is not None and caption_id not in keep:
                continue
            yield SetItem(f"{ID_PREFIX}{caption_id}", row["caption"].strip(), self._audio(row["path"]))
