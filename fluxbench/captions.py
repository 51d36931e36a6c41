"""Caption and prompt files, and the record files they are made of (JSON lines, one JSON list, CSV/TSV tables).

The one reader of every file that pairs ids with captions: `fluxbench score --captions`, `fluxbench report
--captions`, `fluxbench human-eval create --captions` and its sidecars, `fluxbench generate --prompts-file`;
training manifests share its JSON record parsing. Every problem is one InputError naming the file, the line
(or the record of a JSON document) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxbench.inputs import InputError, parse_json, read_text, refuse_json_constant

ID_FIELDS = ("id", "item_id", "prompt_id", "ytid", "name", "file", "filename", "file_name", "path")
FILE_FIELDS = ("file", "filename", "file_name", "path")  # these name a file: the id is its base name
CAPTION_FIELDS = ("caption", "text", "prompt", "description")
FORMATS = ("CSV or TSV with a header", "JSON {id: caption}", "a JSON list of records", '{"items": [records]}',
           "JSON lines")
_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text"}


# ---- record files -----------------------------------------------------------------------------------------
def json_records(path: str | os.PathLike, what: str = "file") -> list[tuple[int, Any]]:
    """(number, value) of every record of a JSON lines file, numbered by line, or of one JSON list when the
    text starts with '[', numbered by position. Invalid JSON names the file and the line."""
    return parse_json_records(read_text(path, what), path)


def parse_json_records(text: str, path: str | os.PathLike) -> list[tuple[int, Any]]:
    """`json_records` of a file's text."""
    if text.lstrip().startswith("["):
        listed = parse_json(text, path)
        if not isinstance(listed, list):
            raise InputError(f"{path}: expected one JSON list or JSON lines")
        return list(enumerate(listed, 1))
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append((number, json.loads(line, parse_constant=refuse_json_constant)))
            except ValueError as error:
                reason = (f"{error.msg} at column {error.colno}" if isinstance(error, json.JSONDecodeError)
                          else str(error))
                raise InputError(f"{path}:{number}: invalid JSON line ({reason})") from None
    return records


def table_records(text: str, delimiter: str = ",") -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The column names (stripped, lower case) of a CSV or TSV table with a header, and (line, row) per row."""
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [name.strip().lower() for name in reader.fieldnames or []]
    rows = [(reader.line_num, {key.strip().lower(): value for key, value in row.items() if isinstance(key, str)})
            for row in reader]
    return columns, rows


# ---- captions ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caption:
    id: str | None  # None: a caption without an id (where ids are optional)
    text: str
    number: int  # position among the file's captions, from 1
    line: int | None  # line in the file (tables, JSON lines, text); None for the entries of one JSON document

    @property
    def place(self) -> str:
        return f"line {self.line}" if self.line is not None else f"record {self.number}"

    def at(self, path: str | os.PathLike) -> str:
        return f"{path}:{self.line if self.line is not None else self.number}"


def read_caption_list(path: str | os.PathLike, what: str = "captions file", *,
                      id_fields: tuple[str, ...] = ID_FIELDS, caption_fields: tuple[str, ...] = CAPTION_FIELDS,
                      ids_required: bool = True, strip: bool = True, kind: str | None = None) -> list[Caption]:
    """Every caption of a file, in file order.

    Formats, by suffix: .csv / .tsv (a header naming an id and a caption column), .json ({id: caption}, a list
    of records, or {"items": [records]}), .jsonl / .ndjson (a record per line; a text starting with '[' is one
    JSON list), .txt (a caption per line where ids are optional); other files are told by their content. A
    record's id and caption are its first present field of `id_fields` and of `caption_fields` (names matched
    in any case); an id from a file field (file, path, ...) is the file's base name. With ids optional, a
    record without one, and a bare string in a JSON list, is a caption with id None. `strip` drops white space
    around captions and table cells. `kind` (csv, tsv, json, jsonl, text) overrides the suffix."""
    path = Path(path)
    text = read_text(path, what)
    kind = kind or _format(path, text, ids_required)
    if kind == "text":
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        captions = [Caption(None, line.strip() if strip else line, index, number)
                    for index, (number, line) in enumerate(lines, 1)]
        return captions or _no_captions(path)
    if kind in ("csv", "tsv"):
        columns, rows = table_records(text, "\t" if kind == "tsv" else ",")
        if not any(f in columns for f in caption_fields) or (ids_required and not any(f in columns for f in id_fields)):
            wanted = f"an id column ({'/'.join(id_fields)}) and " if ids_required else ""
            raise InputError(f"{path}:1: columns {columns}; expected {wanted}a caption column "
                             f"({'/'.join(caption_fields)})")
        entries = [(line, {key: value.strip() if strip and isinstance(value, str) else value
                           for key, value in row.items()}) for line, row in rows]
    elif kind == "jsonl":
        entries = parse_json_records(text, path)
    else:
        document = parse_json(text, path)
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            document = document["items"]
        if isinstance(document, dict):
            captions = [_mapping_caption(path, number, str(key), value, strip)
                        for number, (key, value) in enumerate(document.items(), 1)]
            return captions or _no_captions(path)
        if not isinstance(document, list):
            raise InputError(f"{path}: expected captions as one of: {', '.join(FORMATS)}")
        entries = [(None, value) for value in document]
    fields = Fields(id_fields, caption_fields, ids_required, strip)
    captions = [fields.caption(path, number, line, value) for number, (line, value) in enumerate(entries, 1)]
    return captions or _no_captions(path)


def read_captions(path: str | os.PathLike, what: str = "captions file", **options: Any) -> dict[str, str]:
    """id -> caption of a captions file (`read_caption_list` with ids required); an id given twice is refused."""
    table: dict[str, Caption] = {}
    for caption in read_caption_list(path, what, ids_required=True, **options):
        first = table.get(caption.id)
        if first is not None:
            raise InputError(f"{caption.at(path)}: record {caption.number} repeats the id {caption.id!r} "
                             f"({caption.place}: {caption.id!r} already has a caption, from {first.place}); "
                             f"give each id one caption")
        table[caption.id] = caption
    return {key: caption.text for key, caption in table.items()}


def _format(path: Path, text: str, ids_required: bool) -> str:
    kind = _BY_SUFFIX.get(path.suffix.lower())
    if kind is None or (kind == "text" and ids_required):
        # told by the content: JSON, JSON lines, else a table (captions need ids) or lines (prompts)
        start = text.lstrip()[:1]
        if start == "{":
            try:
                json.loads(text)
                kind = "json"
            except ValueError:
                kind = "jsonl"
        elif start == "[":
            kind = "json"
        elif not ids_required:
            kind = "text"
        else:
            header = text.lstrip().split("\n", 1)[0]
            kind = "tsv" if "\t" in header and "," not in header else "csv"
    return kind


def _no_captions(path: Path) -> list[Caption]:
    raise InputError(f"{path}: no captions found")


def _mapping_caption(path: Path, number: int, key: str, value: Any, strip: bool) -> Caption:
    if not isinstance(value, str):
        raise InputError(f"{path}: prompt {key!r}: expected caption text, got {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{path}: prompt {key!r} has an empty caption")
    return Caption(key, value.strip() if strip else value, number, None)


@dataclass(frozen=True)
class Fields:
    """Which fields of a record hold its id and caption, and what a record must have."""

    ids: tuple[str, ...]
    captions: tuple[str, ...]
    ids_required: bool
    strip: bool

    def caption(self, path: Path, number: int, line: int | None, value: Any) -> Caption:
        at = f"{path}:{line if line is not None else number}"
        named = repr(self.captions[0]) + (f" (or {', '.join(map(repr, self.captions[1:]))})"
                                          if len(self.captions) > 1 else "")
        if isinstance(value, str) and not self.ids_required:  # a bare caption in a JSON list
            if not value.strip():
                raise InputError(f"{at}: item {number} is an empty caption")
            return Caption(None, value.strip() if self.strip else value, number, line)
        if not isinstance(value, dict):
            raise InputError(f"{at}: item {number} is not an object with "
                             f"{'an id and ' if self.ids_required else ''}a {named} field")
        record = {str(key).lower(): field for key, field in value.items()}
        id_field = next((f for f in self.ids if record.get(f) is not None), None)
        item_id = None if id_field is None or record[id_field] == "" else str(record[id_field])
        if item_id is not None and id_field in FILE_FIELDS:
            item_id = Path(item_id).name
        text = next((record[f] for f in self.captions if record.get(f) is not None), None)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{at}: item {number} has no {named} text")
        if item_id is None and self.ids_required:
            raise InputError(f"{at}: item {number} has no id ({'/'.join(self.ids)})")
        return Caption(item_id, text.strip() if self.strip else text, number, line)
