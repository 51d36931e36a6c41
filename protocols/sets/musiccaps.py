"""MusicCaps (Agostinelli et al. 2023): 5,521 ten-second AudioSet clips with expert captions.

Captions come from Google's public `musiccaps-public.csv` (columns ytid, start_s, end_s,
audioset_positive_labels, aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval), which ships
with fluxbench (CC BY-SA 4.0, Google LLC; see data/README.md) and is checked against its published sha256 on
every load; `captions=` (or $FLUXBENCH_MUSICCAPS_CAPTIONS) reads another copy instead. Subsets: "all" (5,521),
"audioset-eval" (the 2,858 clips of the AudioSet eval split), "balanced" (1,000 genre-balanced clips) and
"no-singing" (the 2,218 clips whose captions mention no singing or vocals, as Stable Audio Open and
stable-audio-metrics report; the id list ships beside the captions and is checked against its sha256).
Reference audio is a local folder of clips named by YouTube id (`<ytid>.wav`, or any suffix of
`fluxbench.audio.AUDIO_SUFFIXES`), which is how most people hold it; clips that are missing are counted and
listed in the results, never silently dropped.
"""

from __future__ import annotations

import os
from typing import Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import (DATA_DIR, AudioFolder, SetError, env_path, read_caption_table,
                                                  shipped_file, shipped_ids, truthy)

CAPTIONS_FILE = "musiccaps-public.csv"
SHIPPED_CAPTIONS = DATA_DIR / CAPTIONS_FILE
SHIPPED_SHA256 = "bce5500709e6b129e070cbffc28caefe6b3d6977b2073493ee9b48806096c034"
NO_SINGING_IDS = DATA_DIR / "musiccaps-nosinging-ytids.txt"
NO_SINGING_SHA256 = "5ad0a5fa1e93e0c9b1a882ebf2d1c2d9763fd9413ca641bc5b6b0a451c72bde0"
COLUMNS = ("ytid", "start_s", "end_s", "caption", "is_balanced_subset", "is_audioset_eval")
SUBSETS = ("all", "audioset-eval", "balanced", "no-singing")


class MusicCaps(EvalSet):
    name = "musiccaps"
    items_published = 5521

    def __init__(self, captions: str | os.PathLike | None = None, audio_dir: str | os.PathLike | None = None,
                 subset: str = "all") -> None:
        if subset not in SUBSETS:
            raise SetError(f"musiccaps: unknown subset {subset!r}; expected one of {list(SUBSETS)}")
        self.subset = subset
        self.audio_dir = env_path(audio_dir, "FLUXBENCH_MUSICCAPS_AUDIO")
        explicit = env_path(captions, "FLUXBENCH_MUSICCAPS_CAPTIONS")
        self.captions_path = explicit if explicit is not None else SHIPPED_CAPTIONS
        self.shipped_captions = explicit is None

    def items(self) -> Iterator[SetItem]:
        if self.shipped_captions:
            shipped_file(SHIPPED_CAPTIONS, SHIPPED_SHA256, "musiccaps")
        keep = shipped_ids(NO_SINGING_IDS, NO_SINGING_SHA256, "musiccaps") if self.subset == "no-singing" else None
        rows = read_caption_table(self.captions_path, COLUMNS, "musiccaps")
        audio = AudioFolder(self.audio_dir)
        seen = set()
        for row in rows:
            if self.subset == "audioset-eval" and not truthy(row["is_audioset_eval"]):
                continue
            if self.subset == "balanced" and not truthy(row["is_balanced_subset"]):
                continue
            ytid = row["ytid"].strip()
            if keep is not None and ytid not in keep:
                continue
            if ytid in seen:
                raise SetError(f"musiccaps: {self.captions_path}: ytid {ytid!r} appears twice")
            seen.add(ytid)
            yield SetItem(ytid, row["caption"].strip(), audio.find(ytid))
