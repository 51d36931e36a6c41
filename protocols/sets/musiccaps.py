"""MusicCaps (Agostinelli et al. 2023): 5,521 ten-second AudioSet clips with expert captions.

Captions come from Google's public `musiccaps-public.csv` (columns ytid, start_s, end_s,
audioset_positive_labels, aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval), which ships
with fluxbench (CC BY-SA 4.0, Google LLC; see data/README.md) and is checked against its published sha256 on
every load; `captions=` (or $FLUXBENCH_MUSICCAPS_CAPTIONS) reads another copy instead. Subsets: "all" (5,521),
"audioset-eval" (the 2,858 clips of the AudioSet eval split) and "balanced" (1,000 genre-balanced clips).
Reference audio is a local folder of clips named by YouTube id (`<ytid>.wav`, or any suffix of
`fluxbench.audio.AUDIO_SUFFIXES`), which is how most people hold it; clips that are missing are counted and
listed in the results, never silently dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import AudioFolder, SetError, env_path, read_caption_table, truthy

CAPTIONS_FILE = "musiccaps-public.csv"
SHIPPED_CAPTIONS = Path(__file__).parent / "data" / CAPTIONS_FILE
SHIPPED_SHA256 = "bce5500709e6b129e070cbffc28caefe6b3d6977b2073493ee9b48806096c034"
COLUMNS = ("ytid", "start_s", "end_s", "caption", "is_balanced_subset", "is_audioset_eval")
SUBSETS = ("all", "audioset-eval", "balanced")


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

    def _check_shipped(self) -> None:
        from fluxbench.weights import sha256_of

        if not SHIPPED_CAPTIONS.is_file():
            raise SetError(f"musiccaps: the shipped caption file {SHIPPED_CAPTIONS} is missing (a damaged "
                           f"install: reinstall fluxbench, or pass --captions PATH/{CAPTIONS_FILE})")
        digest = sha256_of(SHIPPED_CAPTIONS)
        if digest != SHIPPED_SHA256:
            raise SetError(f"musiccaps: the shipped caption file {SHIPPED_CAPTIONS} has sha256 {digest}, expected "
                           f"{SHIPPED_SHA256} (a damaged install: reinstall fluxbench, or pass --captions)")

    def items(self) -> Iterator[SetItem]:
        if self.shipped_captions:
            self._check_shipped()
        rows = read_caption_table(self.captions_path, COLUMNS, "musiccaps")
        audio = AudioFolder(self.audio_dir)
        seen = set()
        for row in rows:
            if self.subset == "audioset-eval" and not truthy(row["is_audioset_eval"]):
                continue
            if self.subset == "balanced" and not truthy(row["is_balanced_subset"]):
                continue
            ytid = row["ytid"].strip()
            if ytid in seen:
                raise SetError(f"musiccaps: {self.captions_path}: ytid {ytid!r} appears twice")
            seen.add(ytid)
            yield SetItem(ytid, row["caption"].strip(), audio.find(ytid))
