"""MusicCaps (Agostinelli et al. 2023): 5,521 ten-second AudioSet clips with expert captions.

Captions come from the public `musiccaps-public.csv` (columns ytid, start_s, end_s, audioset_positive_labels,
aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval), from a local path or the hub dataset
`google/MusicCaps`. Reference audio is a local folder of clips named by YouTube id (`<ytid>.wav`, or any of
.flac/.mp3/.ogg/.opus/.m4a), which is how most people hold it; clips that are missing are counted and listed
in the results, never silently dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import SetError, env_path, find_audio, read_caption_table, truthy

HUB_DATASET = "google/MusicCaps"
CAPTIONS_FILE = "musiccaps-public.csv"
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
        self.captions_path = self._locate_captions(env_path(captions, "FLUXBENCH_MUSICCAPS_CAPTIONS"))

    def _locate_captions(self, explicit: Path | None) -> Path:
        if explicit is not None:
            return explicit
        if self.audio_dir is not None and (self.audio_dir / CAPTIONS_FILE).is_file():
            return self.audio_dir / CAPTIONS_FILE
        try:  # the hub dataset's file, from the cache or downloaded when online
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(HUB_DATASET, CAPTIONS_FILE, repo_type="dataset"))
        except Exception:
            raise SetError(f"musiccaps: no caption file; pass --captions PATH/{CAPTIONS_FILE} (or set "
                           f"FLUXBENCH_MUSICCAPS_CAPTIONS), or go online for the hub dataset {HUB_DATASET}") from None

    def items(self) -> Iterator[SetItem]:
        rows = read_caption_table(self.captions_path, COLUMNS, "musiccaps")
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
            yield SetItem(ytid, row["caption"].strip(), find_audio(self.audio_dir, ytid))
