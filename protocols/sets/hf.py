"""`--set hf:NAME_OR_PATH`: a Hugging Face dataset (hub id, local folder of data files, or a `save_to_disk`
folder) as a set, through the `datasets` package (`pip install 'fluxbench[datasets]'`).

The split is `--split` (or the only one); id, caption and audio columns are named or detected
(`columns.py`). Audio is never decoded by `datasets` (which would need torchcodec and FFmpeg): the audio
column is read as its stored bytes or path, and the bytes are written once per dataset revision (the
dataset's fingerprint) under $FLUXBENCH_CACHE/sets/hf/, in their own format, for fluxbench's reader. Hub
datasets load offline from the Hugging Face cache under HF_DATASETS_OFFLINE=1 / HF_HUB_OFFLINE=1; "NAME@REV"
pins a hub revision.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import SetError
from fluxbench.protocols.sets.columns import AUDIO_NAMES, Columns, detect, row_id

COMPLETE_MARKER = ".complete.json"
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"),
          (b"\xff\xf3", ".mp3"), (b"\xff\xf2", ".mp3"), (b"FORM", ".aiff"))


class HuggingFaceSet(EvalSet):
    def __init__(self, source: str, split: str | None = None, id_column: str | None = None,
                 caption_column: str | None = None, audio_column: str | None = None) -> None:
        self.source, _, self.revision = source.partition("@")
        self.name = f"hf:{self.source}"
        self.split = split
        self.requested = {"id": id_column, "caption": caption_column, "audio": audio_column}
        self.columns: Columns | None = None
        self.fingerprint: str | None = None
        self.rows: int | None = None

    # ---- loading --------------------------------------------------------------------------------------------
    def _load(self):
        try:
            import datasets
        except ImportError:
            raise SetError(f"{self.name}: Hugging Face datasets need the `datasets` package: "
                           f"pip install 'fluxbench[datasets]'") from None
        local = Path(self.source)
        try:
            if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
                loaded = datasets.load_from_disk(str(local))
            else:
                loaded = datasets.load_dataset(str(self.source), revision=self.revision or None)
        except Exception as error:  # datasets raises many types (missing files, offline, no such dataset)
            text = " ".join(str(error).split())[:300]
            offline = " (offline: is it in the Hugging Face cache?)" if os.environ.get(
                "HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise SetError(f"{self.name}: cannot load the dataset{offline}: {type(error).__name__}: {text}") from None
        if isinstance(loaded, datasets.DatasetDict):
            splits = list(loaded)
            if self.split is None:
                if len(splits) != 1:
                    raise SetError(f"{self.name}: {len(splits)} splits ({', '.join(splits)}); pick one with --split")
                self.split = splits[0]
            if self.split not in loaded:
                raise SetError(f"{self.name}: no split {self.split!r}; splits: {', '.join(splits)}")
            loaded = loaded[self.split]
        elif self.split is not None and getattr(loaded, "split", None) not in (None, self.split):
            raise SetError(f"{self.name}: the dataset holds split {loaded.split!r}, not {self.split!r}")
        return loaded

    def _audio_columns(self, dataset) -> list[str]:
        """Columns typed as audio, or structs of bytes and path (audio stored without `datasets` types)."""
        import datasets

        found = []
        for name, feature in dataset.features.items():
            if isinstance(feature, datasets.Audio):
                found.append(name)
            elif isinstance(feature, dict) and {"bytes", "path"} <= set(feature):
                found.append(name)
        return found

    # ---- items ----------------------------------------------------------------------------------------------
    def items(self) -> Iterator[SetItem]:
        import datasets

        dataset = self._load()
        names = list(dataset.column_names)
        typed_audio = self._audio_columns(dataset)
        audio_candidates = typed_audio if len(typed_audio) >= 1 else AUDIO_NAMES
        columns = detect(names, self.name, self.requested["id"], self.requested["caption"],
                         self.requested["audio"], audio_candidates)
        if columns.audio is None:
            raise SetError(f"{self.name}: no audio column found; name it with --audio-column (columns: "
                           f"{', '.join(names)})")
        self.columns = columns
        if isinstance(dataset.features[columns.audio], datasets.Audio):
            dataset = dataset.cast_column(columns.audio, datasets.Audio(decode=False))
        self.fingerprint = dataset._fingerprint
        self.rows = len(dataset)
        folder = self.reference_folder()
        folder.mkdir(parents=True, exist_ok=True)
        complete = folder / COMPLETE_MARKER
        written = json.loads(complete.read_text()) if complete.is_file() else None
        wanted = [c for c in (columns.id, columns.caption, columns.audio) if c]
        from fluxbench.inputs import safe_file_stem

        for index, row in enumerate(dataset.select_columns(wanted)):
            caption = row[columns.caption]
            if not isinstance(caption, str) or not caption.strip():
                raise SetError(f"{self.name}: row {index}: empty or missing caption in column {columns.caption!r}")
            item_id = str(row[columns.id]).strip() if columns.id else row_id(index)
            if not item_id:
                raise SetError(f"{self.name}: row {index}: empty id in column {columns.id!r}")
            stem = safe_file_stem(item_id)
            if written is not None:
                reference = folder / written[stem] if written.get(stem) else None
            else:
                reference = self._materialise(row[columns.audio], folder, stem)
            yield SetItem(item_id, caption.strip(), reference)
        if written is None:
            from fluxbench.atomic import write_json

            write_json(complete, {path.stem: path.name for path in folder.iterdir()
                                  if not path.name.startswith(".")}, sort_keys=True)

    def reference_folder(self) -> Path:
        from fluxbench.weights import cache_dir

        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.strip("/")).strip("._")[-80:] or "dataset"
        return cache_dir() / "sets" / "hf" / f"{slug}-{self.split or 'data'}-{self.fingerprint}"

    @staticmethod
    def _materialise(value: Any, folder: Path, stem: str) -> Path | None:
        """The reference file of one row: its stored bytes written once into `folder`, or its local path."""
        from fluxbench.atomic import atomic_path

        if isinstance(value, str):
            value = {"path": value, "bytes": None}
        if not isinstance(value, dict):
            return None
        data, path = value.get("bytes"), value.get("path")
        if not data:
            return Path(path) if path and Path(path).is_file() else None
        suffix = next((s for magic, s in _MAGIC if data.startswith(magic)), None) or (
            Path(path).suffix.lower() if path else ".bin")
        target = folder / f"{stem}{suffix}"
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as temporary:
                temporary.write_bytes(data)
        return target

    def describe(self) -> str:
        return (f"from {self.source} split {self.split} (fingerprint {self.fingerprint}), references cached under "
                f"{self.reference_folder()}")

    def provenance(self) -> dict[str, Any]:
        columns = self.columns
        return {"source": "huggingface", "dataset": self.source, "revision": self.revision or None,
                "split": self.split, "fingerprint": self.fingerprint, "rows": self.rows,
                "columns": None if columns is None else {"id": columns.id or "(row number)",
                                                         "caption": columns.caption, "audio": columns.audio}}
