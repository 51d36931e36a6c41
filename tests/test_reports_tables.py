"""Report Tables 1 and 3: every number shown equals its source (results files, registry, reported rows).

The produced Markdown, LaTeX, CSV and HTML are parsed back, not string-compared, so the checks hold whatever
the spacing; expected values are the inputs chosen here (and the paper's Table 1 from the reference facts).
"""

import csv
import io
import json

import pytest

from fluxbench.cli import main
from fluxbench.results import write_results
from test_reports_support import (REPORTED, SCORES, SETS, TableParser, make_runs, parse_cell, parse_latex,
                                  parse_markdown)


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
