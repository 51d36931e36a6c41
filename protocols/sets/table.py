"""`--set table:FILE --audio-dir DIR`: any caption table with a folder of reference audio as a set.

FILE is CSV or TSV with a header, JSON lines, or one JSON list of records. The id, caption and audio columns
are named by the options or detected (`columns.py`); the audio column holds a path (relative to the audio
folder, or absolute), and without one each item's audio is `<id>.<suffix>` in the audio folder, as for
MusicCaps. The table's sha256 goes into the results like a published set's caption file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.protocols.sets.captions_csv import AudioFolder, SetError
from fluxbench.protocols.sets.columns import Columns, detect, row_id

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class TableSet(EvalSet):
    def __init__(self, source: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
                 id_column: str | None = None, caption_column: str | None = None,
                 audio_column: str | None = None) -> None:
        self.captions_path = Path(source)
        self.name = f"table:{self.captions_path.name}"
        self.audio_dir = Path(audio_dir) if audio_dir else None
        self.requested = {"id": id_column, "caption": caption_column, "audio": audio_column}
        self.columns: Columns | None = None

    def _records(self) -> list[tuple[int, dict[str, Any]]]:
        from fluxbench.captions import parse_json_records, table_records
        from fluxbench.inputs import read_text

        path = self.captions_path
        kind = TABLE_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise SetError(f"{self.name}: unknown table type {path.suffix!r}; expected "
                           f"{', '.join(TABLE_SUFFIXES)}")
        if not path.is_file():
            raise SetError(f"{self.name}: table {path} not found")
        text = read_text(path, "set table")
        if kind in ("csv", "tsv"):
            _, rows = table_records(text, "\t" if kind == "tsv" else ",")
            return rows
        records = parse_json_records(text, path)
        for number, record in records:
            if not isinstance(record, dict):
                raise SetError(f"{path}:{number}: expected a JSON object per record, got {type(record).__name__}")
        return records

    def items(self) -> Iterator[SetItem]:
        records = self._records()
        if not records:
            raise SetError(f"{self.name}: {self.captions_path} has no rows")
        names = list(dict.fromkeys(key for _, record in records for key in record))
        columns = detect(names, f"{self.name}", self.requested["id"], self.requested["caption"],
                         self.requested["audio"])
        self.columns = columns
        folder = AudioFolder(self.audio_dir) if columns.audio is None else None
        for index, (line, record) in enumerate(records):
            caption = record.get(columns.caption)
            if not isinstance(caption, str) or not caption.strip():
                raise SetError(f"{self.captions_path}:{line}: empty or missing caption in column {columns.caption!r}")
            item_id = str(record.get(columns.id) or "").strip() if columns.id else row_id(index)
            if not item_id:
                raise SetError(f"{self.captions_path}:{line}: empty id in column {columns.id!r}")
            if folder is not None:
                from fluxbench.inputs import safe_file_stem

                reference = folder.find(item_id) or folder.find(safe_file_stem(item_id))
            else:
                reference = self._audio_path(record.get(columns.audio))
            yield SetItem(item_id, caption.strip(), reference)

    def _audio_path(self, value: Any) -> Path | None:
        if not isinstance(value, str) or not value.strip():
            return None
        path = Path(value.strip())
        if not path.is_absolute():
            if self.audio_dir is None:
                path = self.captions_path.parent / path  # relative to the table when no folder is given
            else:
                path = self.audio_dir / path
        return path if path.is_file() else None

    def provenance(self) -> dict[str, Any]:
        columns = self.columns
        return {"source": "table", "table": str(self.captions_path),
                "audio_dir": str(self.audio_dir) if self.audio_dir else None,
                "columns": None if columns is None else {"id": columns.id or "(row number)",
                                                         "caption": columns.caption, "audio": columns.audio}}
