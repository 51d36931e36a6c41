"""Checking what users hand us at the boundary: option values, text files, and ids that become file names.

Every check fails with one line naming the option, file or field and what was expected. The argparse types
below are shared by all commands, so `--batch-size 0`, `--lr nan` or a missing `--captions` file are refused
before any model, data set or backbone is touched.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from fluxbench import FluxbenchError

INT_MAX = 2**31 - 1  # counts, steps and seeds beyond this are typos, and overflow torch / numpy generators


class InputError(FluxbenchError):
    pass


@contextmanager
def errors_as(error_class: type[FluxbenchError], caught: type[FluxbenchError] = InputError) -> Iterator[None]:
    """Inside the block, a `caught` error (an InputError by default) is raised again as `error_class` with the
    same message: for the parts of the package whose callers expect their own error type."""
    try:
        yield
    except caught as error:
        raise error_class(str(error)) from None


# ---- option values (argparse types) -----------------------------------------------------------------------
def _describe(kind: str, low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return kind


def int_range(low: int | None = None, high: int | None = INT_MAX) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    expected = _describe("an integer", low, high)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the given (open or closed) interval."""
    expected = _describe("a finite number", low, high, low_open, high_open)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low))
                or (high is not None and (value >= high if high_open else value > high))):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
seed_int = int_range(0)
finite_float = float_range()
positive_float = float_range(0, low_open=True)
non_negative_float = float_range(0)
unit_interval = float_range(0, 1)
seconds = float_range(0, 3600, low_open=True)  # clip lengths: an hour is already far beyond any model here


def resample_count(text: str) -> int:
    """An argparse type: bootstrap resamples, 0 (no intervals) or at least 2."""
    value = non_negative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("expected 0 (no intervals) or at least 2 resamples, got 1")
    return value


def path_component(text: str) -> str:
    """An argparse type: a name used as one folder or file name (no separators, not '.' or '..')."""
    if not text.strip() or text in (".", "..") or any(sep in text for sep in ("/", "\\", "\0")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a plain name (no /, no \\, not . or ..)")
    return text


def existing_file(text: str) -> str:
    """An argparse type: a path to an existing regular file (not a folder)."""
    problem = file_problem(Path(text))
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def text_file(text: str) -> str:
    """An argparse type: an existing file of UTF-8 text (captions, prompts, manifests, configs)."""
    existing_file(text)
    try:
        read_text(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def existing_dir(text: str) -> str:
    """An argparse type: a path to an existing folder."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file; expected a folder")
    return text


def output_dir(text: str) -> str:
    """An argparse type: a folder to write into (created later); refuses a path that is an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file; expected a folder to write into")
    return text


def output_file(text: str) -> str:
    """An argparse type: a file to (re)write; refuses an existing folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; expected a file name to write")
    return text



def file_problem(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "is a folder; expected a file"
    if not path.is_file():
        return "not a regular file"
    return None


# ---- text files -------------------------------------------------------------------------------------------
def decode_utf8(data: bytes, where: str | os.PathLike) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or one line naming the file and the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise InputError(f"{where}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); "
                         f"save it as UTF-8") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The one reader of users' text files (captions, manifests, prompts, results, logs)."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise InputError(f"{path}: {problem} ({what})")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read the {what} ({error.strerror})") from None
    return decode_utf8(data, path)


def read_json(path: str | os.PathLike, what: str = "JSON file", allow_nan: bool = False) -> Any:
    """Parsed JSON of a UTF-8 file; NaN / Infinity literals are refused like any other invalid JSON unless
    `allow_nan` (then the caller checks the fields that must be finite, and names them)."""
    return parse_json(read_text(path, what), path, allow_nan)


def parse_json(text: str, where: str | os.PathLike, allow_nan: bool = False) -> Any:
    """`json.loads` with read_json's rules; an error names `where`."""
    try:
        return json.loads(text, **({} if allow_nan else {"parse_constant": refuse_json_constant}))
    except (json.JSONDecodeError, ValueError) as error:
        raise InputError(f"{where}: invalid JSON ({error})") from None


def refuse_json_constant(name: str) -> float:
    """A `parse_constant` for json.loads that refuses NaN / Infinity literals."""
    raise ValueError(f"{name} is not a JSON number")


# ---- ids as file names ------------------------------------------------------------------------------------
_SAFE_STEM = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}")  # YouTube ids may start with "-"


def safe_file_stem(item_id: str) -> str:
    """A file name stem for an item id that stays inside its folder on every platform.

    Ordinary ids (letters, digits, '.', '_', '-'; not starting or ending with a dot) are kept as they are;
    in anything else every run of other characters (path separators, spaces, control or non-ASCII characters)
    becomes '_', leading and trailing dots and '_' go, and the stem is cut to 120 characters. Two ids can thus
    share a stem: callers refuse that (`unique_file_stems`) rather than let one file stand for two items."""
    item_id = str(item_id)
    if _SAFE_STEM.fullmatch(item_id) and not item_id.endswith("."):
        return item_id
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:120].rstrip(".") or "clip"


def unique_file_stems(ids: list[str], where: str) -> dict[str, str]:
    """id -> safe_file_stem(id) for ids that must name different files; one line naming two ids that collide."""
    stems: dict[str, str] = {}
    owner: dict[str, str] = {}
    for item_id in ids:
        stem = safe_file_stem(item_id)
        if stem in owner and owner[stem] != item_id:
            raise InputError(f"{where}: ids {owner[stem]!r} and {item_id!r} would share the file name {stem!r}; "
                             f"give them ids that differ in letters, digits, '.', '_' or '-'")
        owner[stem] = item_id
        stems[item_id] = stem
    return stems


# ---- weight files -----------------------------------------------------------------------------------------
def load_failure(error: BaseException) -> str:
    """Why torch.load (or safetensors) refused a file, in one line: the refused class or the damage, never
    torch's advice to retry without weights_only (which would run whatever code the file carries)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and not line.startswith(
        ("Weights only load failed", "Check the documentation", "Please file an issue"))]
    reason = (useful or [type(error).__name__])[0]
    return reason.removeprefix("WeightsUnpickler error: ")[:300]
