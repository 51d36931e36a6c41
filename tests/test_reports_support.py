"""Shared inputs and parsers for the report-table tests (no tests here): results files with known scores, the
published rows, and readers that parse the produced Markdown, LaTeX and HTML tables back into cells."""

import re
from html.parser import HTMLParser
from pathlib import Path

from fluxbench.results import write_results


SETS = ("musiccaps", "song_describer")
# model -> set -> metric -> (value, ci95 or None); best per column differs by direction and set.
SCORES = {
    "fluxmusic-small": {
        "musiccaps": {"fad": (3.412, [3.2, 3.7]), "kl_softmax": (1.371, [1.30, 1.45]), "is": (2.114, None),
                      "clap": (0.284, [0.27, 0.30])},
        "song_describer": {"fad": (2.907, [2.7, 3.1]), "kl_softmax": (1.188, None), "is": (1.972, None),
                           "clap": (0.251, None)},
    },
    "fluxmusic-base": {
        "musiccaps": {"fad": (2.875, [2.61, 3.2]), "kl_softmax": (1.402, [1.33, 1.47]), "is": (2.563, None),
                      "clap": (0.301, [0.29, 0.31])},
        "song_describer": {"fad": (3.164, [2.9, 3.4]), "kl_softmax": (1.097, None), "is": (2.245, None),
                           "clap": (0.262, None)},
    },
    "my-model": {
        "musiccaps": {"fad": (4.021, [3.8, 4.3]), "kl_softmax": (1.255, None), "is": (2.041, None),
                      "clap": (0.297, None)},
    },
}
REPORTED = [
    {"model": "MusicGen", "set": "MusicCaps", "metrics": {"FAD": 3.10, "KL": 1.28, "IS": 2.71, "CLAP": 0.31},
     "params": "1.5B", "hours": 20000, "source": "FluxMusic paper, Table 3", "reported": True},
    {"model": "MusicGen", "set": "Song Describer", "metrics": {"FAD": 2.50, "KL": 1.21}, "reported": True},
]
PM = re.compile(r"^(?P<value>-?\d+\.\d+)(?:\s*(?:±|\$\\pm\$)\s*(?P<half>\d+\.\d+))?(?: \(n=(?P<n>\d+)\))?$")


def make_runs(folder: Path) -> list[str]:
    paths = []
    for model, per_set in SCORES.items():
        for set_name, metrics in per_set.items():
            path = folder / f"{model}-{set_name}" / "results.json"
            write_results(path, {
                "model": {"name": model, "parameters": 123_456_789 if model == "my-model" else None},
                "set": {"name": set_name, "items": 8},
                "settings": {"seed": 0},
                "metrics": {k: {"value": v, "ci95": ci, "n": 8} for k, (v, ci) in metrics.items()},
            })
            paths.append(str(path))
    return paths


def parse_cell(text: str):
    text = text.strip()
    bold = False
    for pattern in (r"^\*\*(.*)\*\*$", r"^\\textbf\{(.*)\}$"):
        match = re.match(pattern, text)
        if match:
            text, bold = match.group(1), True
    if text in ("–", "--"):
        return None, None, bold
    match = PM.match(text)
    assert match, f"cannot parse table cell {text!r}"
    half = match.group("half")
    return float(match.group("value")), None if half is None else float(half), bold


def parse_markdown(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [l for l in text.splitlines() if l.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    return split(lines[0]), [split(l) for l in lines[2:]]


def parse_latex(text: str) -> tuple[list[str], list[list[str]]]:
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    header = text.split(r"\midrule")[0].strip().splitlines()[-1]
    split = lambda line: [c.strip() for c in line.strip().removesuffix(r"\\").split(" & ")]  # noqa: E731
    return split(header), [split(l) for l in body.strip().splitlines()]


class TableParser(HTMLParser):
    """Rows of (text, bold) cells of the first <table>, header rows included."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.bold, self.done = [], None, False, False

    def handle_starttag(self, tag, attrs):
        if self.done:
            return
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell, self.bold = "", False
        elif tag == "strong":
            self.bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and not self.done:
            self.rows[-1].append((self.cell.strip(), self.bold))
            self.cell = None
        elif tag == "table":
            self.done = True

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
