"""The one reader of caption and prompt files: every accepted format, and a one-line error for every problem."""

from __future__ import annotations

import json

import pytest

from fluxbench import FluxbenchError
from fluxbench.captions import json_records, read_caption_list, read_captions
from fluxbench.inputs import InputError, errors_as

EXPECTED = {"a": "calm piano", "b": "loud drums"}


# ---- formats ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text", [
    ("captions.csv", "id,caption\na,calm piano\nb,loud drums\n"),
    ("captions.csv", "ID , Caption\n a , calm piano \nb,\"loud drums\"\n"),  # header case and cell spaces
    ("captions.tsv", "id\tcaption\na\tcalm piano\nb\tloud drums\n"),
    ("captions.csv", "ytid,start_s,caption\na,0,calm piano\nb,30,loud drums\n"),  # MusicCaps' columns
    ("captions.csv", "file,text\nclips/a,calm piano\nclips/b,loud drums\n"),  # a file column: its base name
    ("captions.json", json.dumps(EXPECTED)),
    ("captions.json", json.dumps([{"id": "a", "caption": "calm piano"}, {"id": "b", "caption": "loud drums"}])),
    ("captions.json", json.dumps({"items": [{"prompt_id": "a", "prompt": "calm piano"},
                                            {"prompt_id": "b", "description": "loud drums"}]})),
    ("captions.jsonl", '{"id": "a", "caption": "calm piano"}\n\n{"name": "b", "text": "loud drums"}\n'),
    ("captions.jsonl", json.dumps([{"id": "a", "caption": "calm piano"}, {"id": "b", "caption": "loud drums"}])),
    ("captions", json.dumps(EXPECTED)),  # no suffix: told by the content
    ("captions", '{"id": "a", "caption": "calm piano"}\n{"id": "b", "caption": "loud drums"}\n'),
    ("captions.txt", "id,caption\na,calm piano\nb,loud drums\n"),  # ids needed: a table, not lines
    ("captions.csv", "\ufeffid,caption\na,calm piano\nb,loud drums\n"),  # byte-order mark dropped
])
def test_every_format_gives_the_same_captions(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert read_captions(path) == EXPECTED


def test_id_fields_order_and_numbers_as_ids(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("id,file,caption\n1,x/one.wav,calm piano\n")
    assert read_captions(path) == {"1": "calm piano"}
    assert read_captions(path, id_fields=("file", "id")) == {"one.wav": "calm piano"}
    listed = tmp_path / "captions.json"
    listed.write_text('[{"id": 7, "caption": "x"}]')
    assert read_captions(listed) == {"7": "x"}


def test_prompt_files_take_captions_without_ids_as_written(tmp_path):
    lines = tmp_path / "prompts.txt"
    lines.write_text("  soft piano\n\nloud drums  \n")
    prompts = read_caption_list(lines, ids_required=False, strip=False)
    assert [(p.id, p.text, p.line) for p in prompts] == [(None, "  soft piano", 1), (None, "loud drums  ", 3)]
    assert [p.text for p in read_caption_list(lines, ids_required=False)] == ["soft piano", "loud drums"]
    mixed = tmp_path / "prompts.json"
    mixed.write_text(json.dumps(["a string", {"caption": "no id"}, {"id": "", "prompt": "empty id"},
                                 {"id": "x", "caption": "with id"}]))
    assert [(p.id, p.text) for p in read_caption_list(mixed, ids_required=False)] == [
        (None, "a string"), (None, "no id"), (None, "empty id"), ("x", "with id")]
    plain = tmp_path / "prompts"
    plain.write_text("[intro] calm piano\n")
    assert read_caption_list(plain, ids_required=False, kind="text")[0].text == "[intro] calm piano"


def test_json_records_number_lines_or_list_positions(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert json_records(path) == [(1, {"a": 1}), (3, {"a": 2})]
    path.write_text('[{"a": 1}, 3]')
    assert json_records(path) == [(1, {"a": 1}), (2, 3)]


# ---- errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text, message", [
    ("c.jsonl", '{"id": "a", "caption": "x"}\n{"id": "b", "caption": "y"\n', r"c.jsonl:2: invalid JSON line"),
    ("c.json", '{"a": "x",\n "b": }', r"c.json: invalid JSON \(.*line 2 column"),
    ("c.json", '{"a": NaN}', r"c.json: invalid JSON \(NaN is not a JSON number\)"),
    ("c.csv", "name,label\na,x\n", r"c.csv:1: columns \['name', 'label'\]; expected an id column .* and a caption"),
    ("c.csv", "id,caption\na,x\nb,\n", r"c.csv:3: item 2 has no 'caption' \(or 'text', 'prompt', 'description'\)"),
    ("c.jsonl", '{"id": "a", "caption": "x"}\n{"id": "b"}\n', r"c.jsonl:2: item 2 has no 'caption'"),
    ("c.jsonl", '{"id": "a", "caption": "x"}\n{"text": "y"}\n', r"c.jsonl:2: item 2 has no id \(id/item_id"),
    ("c.json", '[{"id": "a", "caption": "x"}, 3]', r"c.json:2: item 2 is not an object with an id and a 'caption'"),
    ("c.json", '{"a": "x", "b": " "}', r"c.json: prompt 'b' has an empty caption"),
    ("c.json", '{"a": "x", "b": 3}', r"c.json: prompt 'b': expected caption text, got int"),
    ("c.json", '"just text"', r"c.json: expected captions as one of"),
    ("c.json", "[]", r"c.json: no captions found"),
    ("c.csv", "id,caption\n", r"c.csv: no captions found"),
    ("c.csv", "id,caption\na,first\nb,x\na,second\n",
     r"c.csv:4: record 3 repeats the id 'a' \(line 4: 'a' already has a caption, from line 2\)"),
    ("c.json", '[{"id": "a", "caption": "x"}, {"id": "a", "caption": "y"}]',
     r"c.json:2: record 2 repeats the id 'a' \(record 2: 'a' already has a caption, from record 1\)"),
])
def test_problems_are_one_line_naming_file_and_place(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message) as raised:
        read_captions(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_missing_files_folders_and_bad_bytes_are_named(tmp_path):
    with pytest.raises(InputError, match=r"nowhere.csv: no such file \(captions file\)"):
        read_captions(tmp_path / "nowhere.csv")
    with pytest.raises(InputError, match=r"is a folder; expected a file \(prompts file\)"):
        read_caption_list(tmp_path, "prompts file", ids_required=False)
    latin = tmp_path / "c.csv"
    latin.write_bytes(b"id,caption\na,caf\xe9\n")
    with pytest.raises(InputError, match=r"c.csv: not UTF-8 text \(byte 0xe9 at offset 16\)"):
        read_captions(latin)


def test_prompt_fields_can_be_narrowed(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"caption": "ok"}, {"text": "not a prompt field here"}]))
    with pytest.raises(InputError, match=r"prompts.json:2: item 2 has no 'caption' \(or 'prompt'\) text"):
        read_caption_list(path, caption_fields=("caption", "prompt"), ids_required=False)
    path.write_text(json.dumps(["ok", "  "]))
    with pytest.raises(InputError, match=r"prompts.json:2: item 2 is an empty caption"):
        read_caption_list(path, ids_required=False)


def test_errors_as_keeps_the_message_under_the_callers_type():
    class OwnError(FluxbenchError):
        pass

    with pytest.raises(OwnError, match="^x.csv: broken$"):
        with errors_as(OwnError):
            raise InputError("x.csv: broken")
    with pytest.raises(ValueError):  # other errors pass through untouched
        with errors_as(OwnError):
            raise ValueError("not an input problem")
