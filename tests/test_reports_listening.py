"""Report Table 4 (listening tests): every mean, interval and rating count shown equals its source (plain
rows, the listening-test analysis's own files, reported rows).

The produced Markdown and CSV are parsed back, not string-compared, so the checks hold whatever the spacing.
"""

import csv
import io
import json
from pathlib import Path

import pytest

from fluxbench.cli import main
from test_reports_support import SCORES, make_runs, parse_cell, parse_markdown


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
