"""Report tables: every number shown equals its source (results files, registry, listening rows, reported rows).

The produced Markdown, LaTeX, CSV and HTML are parsed back, not string-compared, so the checks hold whatever
the spacing; expected values are the inputs chosen here (and the paper's Table 1 from the reference facts).
"""

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fluxbench.cli import main
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


def expected(model: str, set_name: str, metric: str):
    if model == "MusicGen":
        row = {f"{r['set']}": r["metrics"] for r in REPORTED}
        names = {"musiccaps": "MusicCaps", "song_describer": "Song Describer"}
        labels = {"fad": "FAD", "kl_softmax": "KL", "is": "IS", "clap": "CLAP"}
        value = row[names[set_name]].get(labels[metric])
        return None if value is None else (value, None)
    return SCORES[model].get(set_name, {}).get(metric)


def best_models(set_name: str, metric: str, lower: bool) -> set[str]:
    values = {m: round(expected(m, set_name, metric)[0], 2) for m in ["MusicGen", *SCORES]
              if expected(m, set_name, metric) is not None}
    target = min(values.values()) if lower else max(values.values())
    return {m for m, v in values.items() if v == target}


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


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    runs = make_runs(folder / "runs")
    reported = folder / "reported.json"
    reported.write_text(json.dumps(REPORTED))
    out = folder / "out"
    assert main(["report", *runs, "--out", str(out), "--reported", str(reported), "-q"]) == 0
    return out


COLUMNS = [(s, m, lower) for s in SETS for m, lower in
           (("fad", True), ("kl_softmax", True), ("is", False), ("clap", False))]


def check_rows(rows: list[list[str]], marker: str) -> None:
    """Rows as [label, params, hours, then the 8 metric cells] in COLUMNS order."""
    labels = [r[0] for r in rows]
    assert labels == [f"MusicGen{marker}", *SCORES], "reported rows first, then measured, each marked"
    for row in rows:
        model = row[0].replace(marker, "")
        assert len(row) == 3 + len(COLUMNS)
        for (set_name, metric, lower), text in zip(COLUMNS, row[3:]):
            value, half, bold = parse_cell(text)
            want = expected(model, set_name, metric)
            if want is None:
                assert value is None, (model, set_name, metric, text)
                continue
            assert value == pytest.approx(want[0], abs=0.005 + 1e-9), (model, set_name, metric)
            if want[1] is None:
                assert half is None
            else:
                assert half == pytest.approx((want[1][1] - want[1][0]) / 2, abs=0.005 + 1e-9)
            assert bold == (model in best_models(set_name, metric, lower)), (model, set_name, metric)


def test_markdown_table3_equals_results(report):
    header, rows = parse_markdown((report / "table3.md").read_text())
    assert header[:3] == ["Model", "Params", "Hours"]
    assert header[3:] == [f"{t} {l}" for t in ("MusicCaps", "Song Describer")
                          for l in ("FAD ↓", "KL ↓", "IS ↑", "CLAP ↑")]
    check_rows(rows, "†")
    by_label = {r[0]: r for r in rows}
    assert by_label["my-model"][1] == "123.4M"  # from the results file, cut like the paper's Table 1
    assert by_label["fluxmusic-small"][1] == "142.3M"  # from the registry (reference: 142,333,984)
    assert by_label["MusicGen†"][1:3] == ["1.5B", "20k"]
    text = (report / "table3.md").read_text()
    assert "† Reported in the publication, not measured here (FluxMusic paper, Table 3)." in text


def test_latex_table3_equals_results(report):
    text = (report / "table3.tex").read_text()
    header, rows = parse_latex(text)
    assert header[3] == r"FAD $\downarrow$" and header[5] == r"IS $\uparrow$"
    check_rows(rows, r"$^\dagger$")
    assert r"\multicolumn{4}{c}{MusicCaps}" in text and r"\multicolumn{4}{c}{Song Describer}" in text
    assert "my-model" in text and r"fluxmusic-small" in text


def test_html_table3_equals_results(report):
    parser = TableParser()
    parser.feed((report / "table3.html").read_text())
    groups, header, *body = parser.rows
    assert [t for t, _ in groups if t] == ["MusicCaps", "Song Describer"]
    assert [t for t, _ in header][:3] == ["Model", "Params", "Hours"]
    rows = [[f"**{t}**" if b else t for t, b in row] for row in body]
    check_rows(rows, "†")


def test_csv_table3_has_exact_values(report):
    records = list(csv.DictReader(io.StringIO((report / "table3.csv").read_text())))
    assert [r["model"] for r in records] == ["MusicGen", *SCORES]
    for record in records:
        model = record["model"]
        assert record["reported"] == ("true" if model == "MusicGen" else "false")
        for set_name, metric, _ in COLUMNS:
            key = f"{set_name}:{metric}"
            want = expected(model, set_name, metric)
            if want is None:
                assert record[key] == ""
                continue
            assert float(record[key]) == want[0]
            if want[1] is not None:
                assert [float(record[f"{key}:ci_low"]), float(record[f"{key}:ci_high"])] == want[1]
            elif f"{key}:ci_low" in record:
                assert record[f"{key}:ci_low"] == ""
    assert int(float(next(r for r in records if r["model"] == "my-model")["parameters"])) == 123_456_789


def test_table1_matches_the_paper_sizes(report, reference_dir):
    # Oracle: the reference facts' size table (hidden, heads, blocks, parameters as printed in paper Table 1).
    facts = {}
    for line in (reference_dir / "fluxmusic-reference.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] in ("small", "base", "large", "giant"):
            facts["fluxmusic-" + cells[0]] = cells
    assert len(facts) == 4
    header, rows = parse_markdown((report / "table1.md").read_text())
    assert header == ["Model", "Params", "Double blocks", "Single blocks", "Hidden", "Heads", "GFLOPs"]
    shown = {r[0]: r for r in rows}
    for name, (_, hidden, heads, double, single, _, _, paper) in facts.items():
        assert shown[name][1:6] == [paper, double, single, hidden, heads]
    assert shown["fluxmusic-giant"][6] == "2928.0"  # paper Table 1
    records = {r["model"]: r for r in csv.DictReader(io.StringIO((report / "table1.csv").read_text()))}
    for name, cells in facts.items():
        assert int(records[name]["parameters"]) == int(cells[6].replace(",", ""))


def test_duplicate_runs_need_labels(tmp_path, capsys):
    first = tmp_path / "a" / "results.json"
    second = tmp_path / "b" / "results.json"
    for path, fad in ((first, 1.0), (second, 2.0)):
        write_results(path, {"model": {"name": "m"}, "set": {"name": "musiccaps"}, "settings": {},
                             "metrics": {"fad": {"value": fad}}})
    assert main(["report", str(first), str(second), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LABEL=PATH" in err and str(first) in err
    out = tmp_path / "labelled"
    assert main(["report", f"seed0={first}", f"seed1={second}", "--out", str(out), "--no-reported",
                 "--format", "csv", "-q"]) == 0
    records = {r["model"]: r for r in csv.DictReader(io.StringIO((out / "table3.csv").read_text()))}
    assert float(records["seed0"]["musiccaps:fad"]) == 1.0 and float(records["seed1"]["musiccaps:fad"]) == 2.0
    assert not (out / "table3.md").exists()


def test_metric_and_set_selection(report, tmp_path):
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "out"
    assert main(["report", *runs, "--out", str(out), "--no-reported", "--sets", "song_describer",
                 "--metrics", "IS,fad", "--decimals", "3", "--format", "md", "-q"]) == 0
    header, rows = parse_markdown((out / "table3.md").read_text())
    assert header[3:] == ["Song Describer IS ↑", "Song Describer FAD ↓"]
    for row in rows:
        want = [expected(row[0], "song_describer", m) for m in ("is", "fad")]
        got = [parse_cell(t)[0] for t in row[3:]]
        assert got == [None if w is None else pytest.approx(w[0], abs=5e-4 + 1e-12) for w in want]


def test_ties_share_emphasis_and_all_equal_emphasises_none():
    from fluxbench.reports.render import to_markdown
    from fluxbench.reports.table_model import Cell
    from fluxbench.reports.tables import ModelRow, comparison_table

    rows = [ModelRow(name, {("musiccaps", "fad"): Cell(fad), ("musiccaps", "kl_softmax"): Cell(1.5)})
            for name, fad in (("a", 2.004), ("b", 1.996), ("c", 2.5))]
    _, parsed = parse_markdown(to_markdown(comparison_table(rows)))
    assert [parse_cell(r[3])[2] for r in parsed] == [True, True, False]  # 2.00 == 2.00 as displayed
    assert [parse_cell(r[4])[2] for r in parsed] == [False, False, False]


def test_reported_rows_without_a_shown_number_are_left_out():
    from fluxbench.reports.render import to_markdown
    from fluxbench.reports.table_model import Cell
    from fluxbench.reports.tables import ModelRow, comparison_table

    rows = [ModelRow("paper-mc", {("musiccaps", "fad"): Cell(1.4)}, reported=True, source="paper"),
            ModelRow("paper-demo", {("demo", "descriptor_fd"): Cell(7.0)}, reported=True, source="paper"),
            ModelRow("measured", {("demo", "descriptor_fd"): Cell(9.0)})]
    _, parsed = parse_markdown(to_markdown(comparison_table(rows)))
    assert [row[0].rstrip("†").strip() for row in parsed] == ["paper-demo", "measured"]


def test_reported_shapes_and_packaged_rows():
    from fluxbench.reports.reported import load_reported_listening_rows, load_reported_rows, parse_reported

    models, listening = parse_reported({"table3": [
        {"model": "AudioLDM 2", "sets": {"MusicCaps": {"fad": {"value": 3.1, "ci95": [3.0, 3.2]}, "Inception score": 2.2}},
         "params": 712e6, "citation": "AudioLDM 2 paper"},
        {"model": "skipped", "set": "musiccaps", "fad": 9.0, "reported": False},
        {"model": "Flat", "set": "song-describer", "fad": 1.5, "clap": 0.3},
    ], "table4": [{"system": "MusicGen", "group": "Expert", "ovl": 3.1, "rel": 3.4, "ovl_ci95": 0.1}]}, "data")
    assert [m.label for m in models] == ["AudioLDM 2", "Flat"] and all(m.reported for m in models)
    cell = models[0].scores["musiccaps", "fad"]
    assert (cell.value, cell.low, cell.high) == (3.1, 3.0, 3.2)
    assert models[0].scores["musiccaps", "is"].value == 2.2 and models[0].source == "AudioLDM 2 paper"
    assert models[1].scores["song_describer", "fad"].value == 1.5 and models[1].scores["song_describer", "clap"].value == 0.3
    assert listening[0].group == "expert" and listening[0].ovl_ci95 == (3.0, 3.2) and listening[0].reported
    # What the baselines ship (nothing yet is fine) must load without error and be marked as reported.
    assert all(row.reported for row in load_reported_rows() + load_reported_listening_rows())


def test_bad_reported_data_is_one_line_error(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs")
    bad = tmp_path / "reported.json"
    bad.write_text(json.dumps([{"model": "X", "set": "musiccaps", "metrics": {"fad": "low"}}]))
    assert main(["report", *runs, "--reported", str(bad), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "fad" in err and "expected a number" in err


# ---- Table 4 ------------------------------------------------------------------------------------------------

LISTENING = [
    {"system": "FluxMusic", "group": "expert", "ovl": 3.614, "ovl_ci95": 0.21, "rel": 3.702, "rel_ci95": [3.5, 3.9],
     "n": 60},
    {"system": "FluxMusic", "group": "beginner", "ovl": 3.35, "ovl_ci95": 0.3, "rel": 3.48, "rel_ci95": 0.25, "n": 45},
    {"system": "MusicGen", "group": "expert", "ovl": 3.402, "ovl_ci95": [3.2, 3.6], "rel": 3.811, "rel_ci95": None,
     "n": 60},
    {"system": "MusicGen", "group": "beginner", "ovl": 3.55, "ovl_ci95": 0.2, "rel": 3.41, "rel_ci95": 0.2, "n": 45},
]


def listening_interval(row: dict, aspect: str):
    ci = row.get(f"{aspect}_ci95")
    if ci is None:
        return None
    return tuple(ci) if isinstance(ci, list) else (row[aspect] - ci, row[aspect] + ci)


def check_table4(markdown: str, rows: list[dict]) -> None:
    header, shown = parse_markdown(markdown)
    assert header == ["System", "Beginner OVL ↑", "Beginner REL ↑", "Expert OVL ↑", "Expert REL ↑"]
    columns = [(g, a) for g in ("beginner", "expert") for a in ("ovl", "rel")]
    for line in shown:
        for (group, aspect), text in zip(columns, line[1:]):
            source = next(r for r in rows if r["system"] == line[0] and r["group"] == group)
            value, half, bold = parse_cell(text)
            assert value == pytest.approx(source[aspect], abs=0.005 + 1e-9)
            assert text.endswith(f"(n={source['n']})") or text.endswith(f"(n={source['n']})**")  # n beside every mean
            interval = listening_interval(source, aspect)
            assert half == (None if interval is None else pytest.approx((interval[1] - interval[0]) / 2, abs=0.005))
            column = [r[aspect] for r in rows if r["group"] == group]
            assert bold == (round(source[aspect], 2) == max(round(v, 2) for v in column))
    assert {line[0] for line in shown} == {r["system"] for r in rows}


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_table4_from_plain_rows(tmp_path, kind):
    if kind == "json":
        path = tmp_path / "listening.json"
        path.write_text(json.dumps({"rows": LISTENING}))
    else:
        path = tmp_path / "listening.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["system", "group", "ovl", "ovl_ci95", "rel", "rel_ci95", "n"])
            writer.writeheader()
            for row in LISTENING:
                writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                                 for k, v in row.items()})
    out = tmp_path / "out"
    assert main(["report", "--listening", str(path), "--out", str(out), "--no-reported", "-q"]) == 0
    check_table4((out / "table4.md").read_text(), LISTENING)
    records = {(r["system"]): r for r in csv.DictReader(io.StringIO((out / "table4.csv").read_text()))}
    assert float(records["MusicGen"]["expert:rel"]) == 3.811 and records["MusicGen"]["expert:rel:ci_low"] == ""
    assert [float(records["FluxMusic"]["expert:rel:ci_low"]), float(records["FluxMusic"]["expert:rel:ci_high"])] == [3.5, 3.9]
    assert int(records["FluxMusic"]["beginner:ovl:n"]) == 45
    assert "Ratings per mean: 45 to 60." in (out / "table4.md").read_text()
    assert (out / "table4.tex").read_text().count(r"\textbf{") == 4


def test_table4_from_human_eval_analysis_outputs(tmp_path):
    """The listening-test analysis writes human_eval.json and table4.csv; both load as Table-4 rows."""
    from fluxbench.human_eval.analysis import Estimate, RatingTable, Results

    estimates = {}
    for row in LISTENING:
        for aspect in ("ovl", "rel"):
            low, high = listening_interval(row, aspect) or (row[aspect] - 0.1, row[aspect] + 0.1)
            estimates[row["system"], row["group"], aspect] = Estimate(row[aspect], low, high, row["n"], 5, 12)
    estimates["FluxMusic", "all", "ovl"] = Estimate(9.0, 8.0, 10.0, 105, 10, 12)  # pooled: not a Table-4 column
    results = Results(RatingTable("t", ["FluxMusic", "MusicGen"], ["beginner", "expert"],
                                  {k: v for k, v in estimates.items() if k[1] != "all"}), estimates, {}, [], {})
    as_json = tmp_path / "human_eval.json"
    as_json.write_text(json.dumps(results.to_json()))
    as_csv = tmp_path / "table4.csv"
    as_csv.write_text(results.table.to_csv())
    rows = [{**r, **{f"{a}_ci95": list(listening_interval(r, a) or (r[a] - 0.1, r[a] + 0.1)) for a in ("ovl", "rel")}}
            for r in LISTENING]
    for path in (as_json, as_csv):
        out = tmp_path / path.stem
        assert main(["report", "--listening", str(path), "--out", str(out), "--format", "md", "--no-reported",
                     "-q"]) == 0
        check_table4((out / "table4.md").read_text(), rows)


def test_table4_with_reported_rows_marked(tmp_path):
    listening = tmp_path / "listening.json"
    listening.write_text(json.dumps(LISTENING))
    reported = tmp_path / "reported.json"
    reported.write_text(json.dumps([{"system": "AudioLDM 2", "group": "expert", "ovl": 3.9, "rel": 3.1,
                                     "source": "paper, Table 4"}]))
    out = tmp_path / "out"
    assert main(["report", "--listening", str(listening), "--reported", str(reported), "--out", str(out),
                 "--format", "md,csv", "-q"]) == 0
    _, shown = parse_markdown((out / "table4.md").read_text())
    assert shown[0][0] == "AudioLDM 2†" and shown[0][1:3] == ["–", "–"]
    assert parse_cell(shown[0][3]) == (3.9, None, True)  # the best expert OVL, reported or not
    records = list(csv.DictReader(io.StringIO((out / "table4.csv").read_text())))
    assert [r["reported"] for r in records] == ["true", "false", "false"]


@pytest.mark.parametrize("content, message", [
    ([{"system": "A", "group": "expert", "ovl": 3.0}], "lacks rel"),
    ([{"system": "A", "group": "novice", "ovl": 3.0, "rel": 3.0}], "'novice' is not one of beginner, expert"),
    ([{"system": "A", "group": "expert", "ovl": "good", "rel": 3.0}], "ovl: expected a number"),
    ([{"system": "A", "group": "expert", "ovl": 3.0, "rel": 3.0, "rel_ci95": [1, 2, 3]}], "rel_ci95"),
    ({"estimates": [{"system": "A"}]}, "needs system, group, aspect and mean"),
])
def test_bad_listening_file_is_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "listening.json"
    path.write_text(json.dumps(content))
    assert main(["report", "--listening", str(path), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err


def test_nothing_to_report_and_bad_format(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path)]) == 2
    assert "nothing to report" in capsys.readouterr().err
    runs = make_runs(tmp_path / "runs")
    assert main(["report", runs[0], "--format", "md,docx", "--out", str(tmp_path)]) == 2
    assert "--format" in capsys.readouterr().err


def test_runs_folder_expands_and_reported_rows_add_no_columns(tmp_path):
    make_runs(tmp_path / "runs")
    reported = tmp_path / "reported.json"
    reported.write_text(json.dumps(REPORTED + [{"model": "Jen-1", "set": "mtt", "metrics": {"FD": 9.9}},
                                               {"model": "Jen-1", "set": "musiccaps", "metrics": {"FAD": 2.0}}]))
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "runs"), "--reported", str(reported), "--out", str(out),
                 "--format", "md", "-q"]) == 0
    header, rows = parse_markdown((out / "table3.md").read_text())
    assert len(header) == 3 + 8 and not any("mtt" in h or "FD ↓" in h for h in header)
    assert sorted(r[0] for r in rows) == sorted(["MusicGen†", "Jen-1†", *SCORES])
    jen = next(r for r in rows if r[0] == "Jen-1†")
    assert parse_cell(jen[3]) == (2.0, None, True)  # the best MusicCaps FAD is a reported one


def test_packaged_reported_rows_join_the_table(tmp_path, monkeypatch, caplog):
    from fluxbench.reports import reported

    runs = make_runs(tmp_path / "runs")
    monkeypatch.setattr(reported, "packaged_data", lambda: [(REPORTED[:1], "fluxbench.models.baselines.reported.TABLE3")])
    out = tmp_path / "out"
    assert main(["report", *runs, "--out", str(out), "--format", "csv", "-q"]) == 0
    records = list(csv.DictReader(io.StringIO((out / "table3.csv").read_text())))
    assert records[0]["model"] == "MusicGen" and records[0]["reported"] == "true"
    assert float(records[0]["musiccaps:clap"]) == 0.31 and records[0]["source"] == "FluxMusic paper, Table 3"
    assert main(["report", *runs, "--out", str(out), "--format", "csv", "--no-reported", "-q"]) == 0
    assert "MusicGen" not in (out / "table3.csv").read_text()

    # Malformed shipped data leaves the published rows out with a warning instead of failing the report.
    monkeypatch.setattr(reported, "packaged_data", lambda: [({"bogus": []}, "shipped.json")])
    with caplog.at_level("WARNING"):
        assert main(["report", *runs, "--out", str(out), "--format", "csv", "-q"]) == 0
    assert "published rows left out: shipped.json: unexpected key(s) ['bogus']" in caplog.text
    assert "MusicGen" not in (out / "table3.csv").read_text()


def test_special_characters_are_escaped_in_latex_and_html():
    from fluxbench.reports.render import to_html, to_latex
    from fluxbench.reports.table_model import Cell
    from fluxbench.reports.tables import ModelRow, comparison_table

    rows = [ModelRow("a_b & 50% <x>", {("musiccaps", "fad"): Cell(1.0)}, reported=True, source="S#1"),
            ModelRow("plain", {("musiccaps", "fad"): Cell(2.0)})]
    table = comparison_table(rows)
    latex = to_latex(table)
    assert r"a\_b \& 50\% <x>$^\dagger$ & -- & -- & \textbf{1.00} \\" in latex
    assert r"(S\#1)" in latex
    parser = TableParser()
    parser.feed(to_html(table))
    assert parser.rows[-2][0] == ("a_b & 50% <x>†", False) and "&lt;x&gt;" in to_html(table)


def test_the_papers_rows_shipped_with_the_baselines_join_table3_and_table4(tmp_path):
    shipped = json.loads((Path(__file__).resolve().parents[1] / "models/baselines/reported_results.json").read_text())
    runs = make_runs(tmp_path / "runs")
    listening = tmp_path / "listening.json"
    listening.write_text(json.dumps(LISTENING))
    out = tmp_path / "out"
    assert main(["report", *runs, "--listening", str(listening), "--out", str(out), "--format", "csv", "-q"]) == 0
    table3 = {r["model"]: r for r in csv.DictReader(io.StringIO((out / "table3.csv").read_text()))}
    for row in shipped["table3"]:
        record = table3[row["model"]]
        assert record["reported"] == "true" and record["source"] == row["source"]
        labels = {"FAD": "fad", "KL": "kl_softmax", "IS": "is", "CLAP": "clap"}
        for set_name, metrics in row["sets"].items():
            for label, value in metrics.items():
                assert float(record[f"{set_name}:{labels[label]}"]) == value
    assert [r["reported"] for r in table3.values()] == ["true"] * len(shipped["table3"]) + ["false"] * len(SCORES)
    table4 = list(csv.DictReader(io.StringIO((out / "table4.csv").read_text())))
    for row in shipped["table4"]:
        record = next(r for r in table4 if r["system"] == row["system"] and r["reported"] == "true")
        assert float(record[f"{row['group']}:ovl"]) == row["ovl"] and float(record[f"{row['group']}:rel"]) == row["rel"]
    assert {r["system"] for r in table4 if r["reported"] == "false"} == {"FluxMusic", "MusicGen"}


def test_ground_truth_is_shown_but_not_ranked(tmp_path):
    listening = tmp_path / "listening.json"
    listening.write_text(json.dumps(LISTENING + [
        {"system": "Ground truth", "group": g, "ovl": 4.5, "rel": 4.4, "n": 40} for g in ("expert", "beginner")]))
    out = tmp_path / "out"
    assert main(["report", "--listening", str(listening), "--out", str(out), "--format", "md", "--no-reported",
                 "-q"]) == 0
    text = (out / "table4.md").read_text()
    _, shown = parse_markdown(text)
    truth = next(r for r in shown if r[0] == "Ground truth")
    assert [parse_cell(c) for c in truth[1:]] == [(4.5, None, False), (4.4, None, False)] * 2
    without_truth = "\n".join(line for line in text.splitlines() if not line.startswith("| Ground truth |"))
    check_table4(without_truth, LISTENING)  # emphasis among the systems only
    assert "Ground truth (the real recordings) is shown for reference and not ranked." in text


def test_listening_means_from_too_few_ratings_get_no_interval_and_no_bold(tmp_path):
    """One rating of 4 must not read as `4.00 ± 0.00` and be emphasised above the published rows."""
    listening = tmp_path / "listening.json"
    listening.write_text(json.dumps([
        {"system": "one-rating", "group": "expert", "ovl": 4.0, "ovl_ci95": [4.0, 4.0], "rel": 4.0, "rel_ci95": 0,
         "n": 1},
        {"system": "many", "group": "expert", "ovl": 3.0, "ovl_ci95": [2.8, 3.2], "rel": 2.5, "rel_ci95": 0.2, "n": 40},
    ]))
    reported = tmp_path / "reported.json"
    reported.write_text(json.dumps([{"system": "Paper model", "group": "expert", "ovl": 3.5, "rel": 3.6}]))
    out = tmp_path / "out"
    assert main(["report", "--listening", str(listening), "--reported", str(reported), "--out", str(out),
                 "--format", "md", "-q"]) == 0
    text = (out / "table4.md").read_text()
    _, shown = parse_markdown(text)
    cells = {row[0].rstrip(" †"): row[1:] for row in shown}
    assert cells["one-rating"] == ["4.00 (n=1)", "4.00 (n=1)"]  # no interval, no bold
    assert cells["many"] == ["3.00 ± 0.20 (n=40)", "2.50 ± 0.20 (n=40)"]
    assert [parse_cell(c)[2] for c in cells["Paper model"]] == [True, True]  # the best among rankable means
    assert "below 4 no interval and never bold" in text


def test_a_runs_folder_reports_what_it_skipped_and_why(tmp_path, caplog):
    from fluxbench.reports.tables import load_runs
    from fluxbench.results import write_results

    runs = tmp_path / "runs"
    document = {"model": {"name": "m"}, "set": {"name": "musiccaps"}, "settings": {},
                "metrics": {"fad": {"value": 1.0}}}
    write_results(runs / "finished" / "results.json", document)
    (runs / "unfinished").mkdir()
    (runs / "unfinished" / "run.json").write_text("{}")
    write_results(runs / "runs" / "nested" / "results.json", document)  # what older versions wrote for runs/<name>
    (runs / "store" / "clips").mkdir(parents=True)  # the clip store and the embedding cache are no runs
    with caplog.at_level("WARNING", logger="fluxbench.report"):
        loaded = load_runs([str(runs)])
    assert [run.path for run in loaded] == [runs / "finished" / "results.json"]
    messages = [record.getMessage() for record in caplog.records]
    assert any(str(runs / "unfinished") in m and "unfinished run" in m for m in messages), messages
    assert any(str(runs / "runs") in m and f"pass {runs / 'runs'} itself" in m for m in messages), messages
    assert len(messages) == 2
