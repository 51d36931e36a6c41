"""The paper's tables, built from results files, the registry and listening-test results.

Table 3: model, params, hours, then FAD / KL / IS / CLAP per evaluation set, measured runs beside reported rows.
Table 1: the FluxMusic sizes (params, blocks, hidden, heads, GFLOPs) from the registry.
Table 4: OVL / REL mean opinion scores per rater group.

Every table is first built as plain data (`Table`), then rendered as Markdown, LaTeX, CSV or HTML; the
emphasis of the best value per column is decided once, on the values as displayed, so ties are all emphasised.
Confidence intervals are shown as "value ± half-width" (half the 95% interval's width; bootstrap intervals may
be asymmetric, so the CSV keeps the exact bounds).
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fluxbench import FluxbenchError
from fluxbench.results import METRICS, load_results

PAPER_METRICS = ("fad", "kl_softmax", "is", "clap")
SET_TITLES = {"musiccaps": "MusicCaps", "song_describer": "Song Describer"}
MISSING = "–"
REPORTED_MARK = "†"

log = logging.getLogger("fluxbench.report")


class ReportError(FluxbenchError):
    pass


# ---- plain table data -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    value: float | int | str | None
    low: float | None = None
    high: float | None = None
    n: int | None = None

    @property
    def number(self) -> float | None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            return None
        return float(self.value) if math.isfinite(self.value) else None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Column:
    key: str  # machine name, also the CSV header
    label: str
    group: str = ""  # spanning header (an evaluation set, a rater group)
    lower_is_better: bool | None = None  # None: the column is not ranked
    style: str = "number"  # number | count (parameters) | hours | integer
    decimals: int = 2
    min_n: int | None = None  # shown with "(n=...)"; a cell of fewer ratings is never marked best

    @property
    def header(self) -> str:
        arrow = {True: " ↓", False: " ↑", None: ""}[self.lower_is_better]
        return f"{self.label}{arrow}"


@dataclass
class TableRow:
    label: str
    cells: dict[str, Cell]  # column key -> cell
    reported: bool = False
    source: str = ""
    ranked: bool = True  # False: shown for reference (real recordings), never emphasised


@dataclass
class Table:
    name: str  # file stem: table1, table3, table4
    title: str
    label_header: str  # "Model", "System"
    columns: list[Column]
    rows: list[TableRow]
    notes: list[str] = field(default_factory=list)

    def cell(self, row: TableRow, column: Column) -> Cell:
        return row.cells.get(column.key, Cell(None))

    def text(self, row: TableRow, column: Column, pm: str = "±", missing: str = MISSING) -> str:
        cell = self.cell(row, column)
        if cell.value is None or (cell.number is None and not isinstance(cell.value, str)):
            return missing
        if isinstance(cell.value, str):  # reported as written in a publication ("1.5B", "20k")
            return cell.value
        if column.style == "count":
            return format_parameters(cell.value)
        if column.style == "hours":
            return format_hours(cell.value)
        if column.style == "integer":
            return str(int(cell.value))
        text = f"{cell.value:.{column.decimals}f}"
        if cell.half_width is not None:
            text += f" {pm} {cell.half_width:.{column.decimals}f}"
        if column.min_n is not None and cell.n is not None:
            text += f" (n={cell.n})"
        return text

    def rankable(self, row: TableRow, column: Column) -> bool:
        cell = self.cell(row, column)
        too_few = column.min_n is not None and cell.n is not None and cell.n < column.min_n
        return row.ranked and cell.number is not None and not too_few

    def best(self) -> dict[str, set[int]]:
        """Column key -> indices of the rows whose displayed value is the best (ties share it)."""
        best: dict[str, set[int]] = {}
        for column in self.columns:
            if column.lower_is_better is None:
                continue
            shown = {i: round(self.cell(row, column).number, column.decimals)
                     for i, row in enumerate(self.rows) if self.rankable(row, column)}
            if len(set(shown.values())) < 2:  # a single value, or all tied: nothing stands out
                continue
            target = (min if column.lower_is_better else max)(shown.values())
            best[column.key] = {i for i, v in shown.items() if v == target}
        return best

    def all_notes(self) -> list[str]:
        notes = list(self.notes)
        if any(self.cell(r, c).half_width is not None for r in self.rows for c in self.columns):
            notes.append("± is half the width of the 95% confidence interval (exact bounds in the CSV).")
        if any(self.best().values()):
            notes.append("Bold: best value per column (↓ lower is better, ↑ higher is better).")
        reported = [r for r in self.rows if r.reported]
        if reported:
            sources = sorted({r.source for r in reported if r.source})
            notes.append(f"{REPORTED_MARK} Reported in the publication, not measured here"
                         + (f" ({'; '.join(sources)})." if sources else "."))
        return notes


def format_parameters(count: float) -> str:
    # Cut, not rounded, like the paper's Table 1 (473,971,232 -> 473.9M).
    return f"{math.floor(count / 1e5) / 10:.1f}M"


def format_hours(hours: float) -> str:
    return f"{hours / 1000:g}k" if hours >= 1000 else f"{hours:g}"


# ---- renderers --------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    best = table.best()
    headers = [table.label_header] + [f"{c.group} {c.header}".strip() for c in table.columns]
    lines = [f"**{table.title}**", "", "| " + " | ".join(headers) + " |",
             "|:---|" + "|".join("---:" for _ in table.columns) + "|"]
    for index, row in enumerate(table.rows):
        cells = [row.label + (REPORTED_MARK if row.reported else "")]
        for column in table.columns:
            text = table.text(row, column)
            cells.append(f"**{text}**" if index in best.get(column.key, ()) else text)
        lines.append("| " + " | ".join(cells) + " |")
    for note in table.all_notes():
        lines += ["", note]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "–": "--", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "†": r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); set or rater-group names span their columns."""
    best = table.best()
    spec = "l" + "r" * len(table.columns)
    lines = ["% " + table.title, r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    groups = _column_groups(table.columns)
    if any(name for name, _, _ in groups):
        spans, rules = [""], []
        for name, first, count in groups:
            if name:
                spans.append(rf"\multicolumn{{{count}}}{{c}}{{{latex_escape(name)}}}")
                rules.append(rf"\cmidrule(lr){{{first + 2}-{first + count + 1}}}")
            else:
                spans += [""] * count
        lines += [" & ".join(spans) + r" \\", "".join(rules)]
    lines.append(" & ".join(latex_escape(h) for h in [table.label_header] + [c.header for c in table.columns])
                 + r" \\")
    lines.append(r"\midrule")
    for index, row in enumerate(table.rows):
        cells = [latex_escape(row.label + (REPORTED_MARK if row.reported else ""))]
        for column in table.columns:
            text = latex_escape(table.text(row, column))
            cells.append(rf"\textbf{{{text}}}" if index in best.get(column.key, ()) else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.all_notes():
        lines.append(r"\par\footnotesize " + latex_escape(note))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """One line per row with every number at full precision: value, CI bounds and n where present."""
    header = [table.label_header.lower(), "reported", "source"]
    layout: list[tuple[Column, str]] = []
    for column in table.columns:
        layout.append((column, "value"))
        cells = [table.cell(r, column) for r in table.rows]
        if any(c.low is not None for c in cells):
            layout += [(column, "ci_low"), (column, "ci_high")]
        if any(c.n is not None for c in cells):
            layout.append((column, "n"))
    header += [column.key if part == "value" else f"{column.key}:{part}" for column, part in layout]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line: list[Any] = [row.label, "true" if row.reported else "false", row.source]
        for column, part in layout:
            cell = table.cell(row, column)
            value = {"value": cell.value, "ci_low": cell.low, "ci_high": cell.high, "n": cell.n}[part]
            line.append("" if value is None else value)
        writer.writerow(line)
    return buffer.getvalue()


def to_html(table: Table) -> str:
    """An HTML fragment: the table with its caption and notes."""
    best = table.best()
    out = [f'<table class="fb-table" id="{html.escape(table.name)}">',
           f"<caption>{html.escape(table.title)}</caption>", "<thead>"]
    groups = _column_groups(table.columns)
    if any(name for name, _, _ in groups):
        out.append("<tr><th></th>" + "".join(
            f'<th colspan="{count}" class="group">{html.escape(name)}</th>' for name, _, count in groups) + "</tr>")
    out.append(f"<tr><th>{html.escape(table.label_header)}</th>"
               + "".join(f"<th>{html.escape(c.header)}</th>" for c in table.columns) + "</tr>")
    out += ["</thead>", "<tbody>"]
    for index, row in enumerate(table.rows):
        mark = f"<sup>{REPORTED_MARK}</sup>" if row.reported else ""
        cells = [f'<th scope="row">{html.escape(row.label)}{mark}</th>']
        for column in table.columns:
            text = html.escape(table.text(row, column))
            if index in best.get(column.key, ()):
                text = f"<strong>{text}</strong>"
            cells.append(f"<td>{text}</td>")
        css = ' class="reported"' if row.reported else ""
        out.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    out += [f'<p class="note">{html.escape(note)}</p>' for note in table.all_notes()]
    return "\n".join(out) + "\n"


def _column_groups(columns: list[Column]) -> list[tuple[str, int, int]]:
    """Runs of neighbouring columns sharing a group: (group, first index, count)."""
    groups: list[tuple[str, int, int]] = []
    for index, column in enumerate(columns):
        if groups and groups[-1][0] == column.group:
            name, first, count = groups[-1]
            groups[-1] = (name, first, count + 1)
        else:
            groups.append((column.group, index, 1))
    return groups


RENDERERS = {"md": (to_markdown, ".md"), "latex": (to_latex, ".tex"), "csv": (to_csv, ".csv"),
             "html": (to_html, ".html")}


# ---- Table 3: measured runs and reported rows ---------------------------------------------------------------

@dataclass
class ModelRow:
    """One model's scores on one or more sets, measured here or reported in a publication."""

    label: str
    scores: dict[tuple[str, str], Cell]  # (set, metric key) -> cell
    parameters: int | float | str | None = None
    hours: float | str | None = None  # hours of training audio
    gflops: float | None = None
    reported: bool = False
    source: str = ""


@dataclass(frozen=True)
class Run:
    label: str
    path: Path
    document: dict[str, Any]


def split_label(spec: str) -> tuple[str | None, str]:
    """"LABEL=PATH" -> (LABEL, PATH); a plain path (even one containing '=') -> (None, PATH)."""
    label, sep, path = spec.partition("=")
    if not sep or os.path.exists(spec) or not label:
        return None, spec
    return label, path


def load_runs(specs: Iterable[str]) -> list[Run]:
    """Results files or run folders; a folder without results.json stands for every run folder inside it.

    Sub-folders of such a folder that are not used are logged with why: a run that has not finished (run.json
    but no results.json yet) and a folder holding runs one level further down.
    """
    runs = []
    for spec in specs:
        label, path = split_label(spec)
        paths = [Path(path)]
        if paths[0].is_dir() and not (paths[0] / "results.json").is_file():
            for reason in skipped_run_folders(paths[0]):
                log.warning("skipped %s", reason)
            paths = sorted(paths[0].glob("*/results.json")) or paths
            if label and len(paths) > 1:
                raise ReportError(f"{spec}: a label names one run, but {path} holds {len(paths)}")
        for one in paths:
            document = load_results(one)
            runs.append(Run(label or str(document["model"].get("name") or one.stem), one, document))
    return runs


def skipped_run_folders(folder: Path) -> list[str]:
    """Each sub-folder of a runs folder that holds no results.json although it looks like a run, with why."""
    skipped = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not (p / "results.json").is_file()):
        if (sub / "run.json").is_file():
            skipped.append(f"{sub}: an unfinished run (run.json but no results.json; rerun it to finish)")
        elif any(sub.glob("*/results.json")):
            skipped.append(f"{sub}: holds runs one level further down; pass {sub} itself")
    return skipped


def normalise_set(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def set_title(name: str) -> str:
    return SET_TITLES.get(name, name)


def measured_rows(runs: list[Run]) -> list[ModelRow]:
    """One row per label, merging that label's runs on different sets; two runs on one set are an error."""
    from fluxbench import registry

    facts = {e.name: e.facts for e in registry.entries("model")}
    rows: dict[str, ModelRow] = {}
    origin: dict[tuple[str, str], Path] = {}
    for run in runs:
        model = run.document["model"]
        known = facts.get(model.get("name"), {})
        fact = lambda key: model.get(key) if model.get(key) is not None else known.get(key)  # noqa: E731
        row = rows.setdefault(run.label, ModelRow(run.label, {}, fact("parameters"), fact("training_hours"),
                                                  fact("gflops"), source=str(run.path)))
        set_name = normalise_set(run.document["set"].get("name", ""))
        if (run.label, set_name) in origin:
            raise ReportError(f"{run.path}: {run.label!r} on set {set_name!r} is also in "
                              f"{origin[run.label, set_name]}; label the runs apart as LABEL=PATH")
        origin[run.label, set_name] = run.path
        if row.source != str(run.path):
            row.source += f"; {run.path}"
        for key, metric in run.document["metrics"].items():
            row.scores[set_name, key] = _metric_cell(metric, f"{run.path}: metrics.{key}")
    return list(rows.values())


def _metric_cell(metric: dict[str, Any], where: str) -> Cell:
    value, ci = metric.get("value"), metric.get("ci95")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ReportError(f"{where}: 'value' must be a number or null, got {value!r}")
    if ci is not None and not (isinstance(ci, (list, tuple)) and len(ci) == 2
                               and all(isinstance(v, (int, float)) for v in ci)):
        raise ReportError(f"{where}: 'ci95' must be [low, high] or null, got {ci!r}")
    n = metric.get("n")
    low, high = (float(ci[0]), float(ci[1])) if ci else (None, None)
    return Cell(value, low, high, int(n) if n is not None else None)


def metric_key(name: str) -> str:
    """Canonical metric key for a key or a table label ("KL" -> kl_softmax, "Inception score" -> is)."""
    text = str(name).strip()
    if text in METRICS:
        return text
    lowered = text.lower()
    by_label = {info.label.lower(): key for key, info in METRICS.items()}
    aliases = {"kl": "kl_softmax", "inception_score": "is", "clap_score": "clap", "fad_vggish": "fad"}
    return by_label.get(lowered) or aliases.get(lowered.replace(" ", "_")) or lowered


def comparison_table(rows: list[ModelRow], sets: list[str] | None = None, metrics: list[str] | None = None,
                     decimals: int = 2, title: str | None = None) -> Table:
    """Table 3: reported rows first (as the paper lists its baselines), then the measured ones."""
    # Columns default to what was measured here (published numbers sit beside them, they do not add columns).
    basis = [r for r in rows if not r.reported] or rows
    chosen_sets = [normalise_set(s) for s in sets] if sets else list(dict.fromkeys(s for r in basis for s, _ in r.scores))
    present = {m for r in basis for _, m in r.scores}
    order = list(METRICS) + sorted(present - set(METRICS))
    chosen_metrics = [metric_key(m) for m in metrics] if metrics else [m for m in order if m in present]
    columns = [Column("parameters", "Params", style="count"), Column("hours", "Hours", style="hours")]
    for set_name in chosen_sets:
        for key in chosen_metrics:
            info = METRICS.get(key)
            columns.append(Column(f"{set_name}:{key}", info.label if info else key, set_title(set_name),
                                  info.lower_is_better if info else None, decimals=decimals))
    shown = {(s, m) for s in chosen_sets for m in chosen_metrics}
    # A published row with no number in any shown column (e.g. on the offline demo set) would be noise.
    ordered = [r for r in rows if r.reported and shown & set(r.scores)] + [r for r in rows if not r.reported]
    table_rows = []
    for row in ordered:
        cells = {"parameters": Cell(row.parameters), "hours": Cell(row.hours)}
        for set_name in chosen_sets:
            for key in chosen_metrics:
                if (set_name, key) in row.scores:
                    cells[f"{set_name}:{key}"] = row.scores[set_name, key]
        table_rows.append(TableRow(row.label, cells, row.reported, row.source))
    title = title or "Text-to-music results per evaluation set (paper Table 3 layout)"
    return Table("table3", title, "Model", columns, table_rows)


# ---- Table 1: model sizes from the registry -----------------------------------------------------------------

ARCHITECTURE_FACTS = ("parameters", "double_blocks", "single_blocks", "hidden", "heads", "gflops")


def architecture_table(family: str | None = "fluxmusic") -> Table:
    from fluxbench import registry

    columns = [Column("parameters", "Params", style="count"),
               Column("double_blocks", "Double blocks", style="integer"),
               Column("single_blocks", "Single blocks", style="integer"),
               Column("hidden", "Hidden", style="integer"), Column("heads", "Heads", style="integer"),
               Column("gflops", "GFLOPs", decimals=1)]
    rows = [TableRow(e.name, {key: Cell(e.facts[key]) for key in ARCHITECTURE_FACTS}, source="registry")
            for e in registry.entries("model")
            if all(key in e.facts for key in ARCHITECTURE_FACTS) and (family is None or e.facts.get("family") == family)]
    notes = ["GFLOPs: one forward at batch 1 over 1024 music and 256 text tokens (2 x multiply-accumulates of the "
             "linear layers and norms, as in the paper)."]
    return Table("table1", "Model sizes (paper Table 1 layout)", "Model", columns, rows, notes)


# ---- Table 4: listening tests -------------------------------------------------------------------------------

LISTENING_GROUPS = ("beginner", "expert")
GROUND_TRUTH = "ground truth"  # the listening tests' name for the real recordings
ASPECT_LABELS = {"ovl": "OVL", "rel": "REL"}


@dataclass(frozen=True)
class ListeningRow:
    system: str
    group: str  # "expert" | "beginner"
    ovl: float
    rel: float
    ovl_ci95: tuple[float, float] | None = None
    rel_ci95: tuple[float, float] | None = None
    n: int | None = None  # ratings behind each mean
    reported: bool = False
    source: str = ""


def listening_row(data: dict[str, Any], where: str, reported: bool = False, source: str = "") -> ListeningRow:
    """A row from {system, group, ovl, ovl_ci95, rel, rel_ci95, n}; a CI is [low, high] or a ± half-width."""
    missing = [k for k in ("system", "group", "ovl", "rel") if data.get(k) in (None, "")]
    if missing:
        raise ReportError(f"{where}: listening row lacks {', '.join(missing)}; expected system, group, ovl, rel "
                          f"(and optionally ovl_ci95, rel_ci95, n)")
    group = str(data["group"]).strip().lower()
    if group not in LISTENING_GROUPS:
        raise ReportError(f"{where}: group {data['group']!r} is not one of {', '.join(LISTENING_GROUPS)}")
    values = {aspect: _number(data[aspect], f"{where}: {aspect}") for aspect in ASPECT_LABELS}
    intervals = {aspect: _interval(data.get(f"{aspect}_ci95"), values[aspect], f"{where}: {aspect}_ci95")
                 for aspect in ASPECT_LABELS}
    n = data.get("n")
    return ListeningRow(str(data["system"]), group, values["ovl"], values["rel"], intervals["ovl"], intervals["rel"],
                        int(_number(n, f"{where}: n")) if n not in (None, "") else None, reported, source)


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ReportError(f"{where}: expected a finite number, got {value!r}")
    return number


def _interval(value: Any, centre: float, where: str) -> tuple[float, float] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\[?\s*[^,;\s\]]+\s*[,;]\s*[^,;\s\]]+\s*\]?\s*", value):
        value = re.split(r"[,;]", value.strip(" []"))
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ReportError(f"{where}: expected [low, high] or a half-width, got {value!r}")
        low, high = (_number(v, where) for v in value)
        return low, high
    half = _number(value, where)
    return centre - half, centre + half


def load_listening(path: str | os.PathLike) -> list[ListeningRow]:
    """Listening-test rows from JSON or CSV.

    Accepted: a JSON list of rows (or {"rows": [...]}); a CSV with columns system, group, ovl, rel and optionally
    ovl_ci95, rel_ci95 (half-width or "low;high"), n; and the human-evaluation analysis outputs (human_eval.json
    with "estimates", or the long CSV with system, group, aspect, mean, ci_low, ci_high, n_ratings).
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no listening-test results file")
    from fluxbench.inputs import read_text

    text = read_text(path, "listening-test results")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}: not valid JSON ({error})") from None
        if isinstance(data, dict) and "estimates" in data:
            return _from_estimates(data["estimates"], str(path))
        records = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ReportError(f"{path}: expected a list of rows (or {{'rows': [...]}}) of system, group, ovl, rel")
    elif path.suffix.lower() == ".csv":
        records = list(csv.DictReader(io.StringIO(text)))
        if records and "aspect" in records[0]:
            return _from_estimates([{**r, "low": r.get("ci_low"), "high": r.get("ci_high")} for r in records],
                                   str(path))
    else:
        raise ReportError(f"{path}: expected a .json or .csv listening-test results file")
    rows = [listening_row(r, f"{path}: row {i + 1}", source=str(path)) for i, r in enumerate(records)]
    if not rows:
        raise ReportError(f"{path}: no listening-test rows")
    return rows


def _from_estimates(estimates: Any, where: str) -> list[ListeningRow]:
    """Per (system, group, aspect) estimates -> rows; the pooled group is left out (Table 4 splits by group)."""
    if not isinstance(estimates, list):
        raise ReportError(f"{where}: 'estimates' must be a list")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for i, e in enumerate(estimates):
        if not isinstance(e, dict) or not {"system", "group", "aspect", "mean"} <= set(e):
            raise ReportError(f"{where}: estimate {i + 1} needs system, group, aspect and mean")
        if str(e["group"]).lower() not in LISTENING_GROUPS:
            continue
        aspect = str(e["aspect"]).lower()
        row = merged.setdefault((str(e["system"]), str(e["group"]).lower()),
                                {"system": e["system"], "group": e["group"]})
        row[aspect] = e["mean"]
        if e.get("low") not in (None, "") and e.get("high") not in (None, ""):
            row[f"{aspect}_ci95"] = [e["low"], e["high"]]
        if e.get("n_ratings") not in (None, ""):
            row["n"] = e["n_ratings"]
    rows = [listening_row(r, f"{where}: {system}/{group}", source=where) for (system, group), r in merged.items()]
    if not rows:
        raise ReportError(f"{where}: no estimates for the groups {', '.join(LISTENING_GROUPS)}")
    return rows


def listening_table(rows: list[ListeningRow], decimals: int = 2) -> Table:
    """Table 4: one row per system, OVL and REL per rater group; higher is better."""
    duplicates = [k for k in {(r.system, r.group, r.reported) for r in rows}
                  if sum((r.system, r.group, r.reported) == k for r in rows) > 1]
    if duplicates:
        system, group, _ = duplicates[0]
        raise ReportError(f"listening results: system {system!r} has more than one {group} row")
    from fluxbench.human_eval.analysis import MIN_RATINGS_FOR_INTERVAL

    groups = [g for g in LISTENING_GROUPS if any(r.group == g for r in rows)]
    columns = [Column(f"{g}:{aspect}", label, g.capitalize(), lower_is_better=False, decimals=decimals,
                      min_n=MIN_RATINGS_FOR_INTERVAL)
               for g in groups for aspect, label in ASPECT_LABELS.items()]
    systems = list(dict.fromkeys((r.system, r.reported) for r in sorted(rows, key=lambda r: not r.reported)))
    table_rows = []
    for system, reported in systems:
        own = [r for r in rows if r.system == system and r.reported == reported]
        cells = {}
        for r in own:
            for aspect in ASPECT_LABELS:
                ci = getattr(r, f"{aspect}_ci95")
                if r.n is not None and r.n < MIN_RATINGS_FOR_INTERVAL:
                    ci = None  # too few ratings for an interval to mean anything
                cells[f"{r.group}:{aspect}"] = Cell(getattr(r, aspect), *(ci or (None, None)), n=r.n)
        table_rows.append(TableRow(system, cells, reported, "; ".join(sorted({r.source for r in own if r.source})),
                                   ranked=system.strip().lower() != GROUND_TRUTH))
    counts = sorted({r.n for r in rows if r.n is not None and not r.reported})
    notes = ["OVL: overall quality; REL: relevance to the caption; mean opinion scores on a 1-5 scale."]
    if not all(row.ranked for row in table_rows):
        notes.append("Ground truth (the real recordings) is shown for reference and not ranked.")
    if counts:
        notes.append(f"Ratings per mean: {counts[0]}" + (f" to {counts[-1]}." if len(counts) > 1 else ".")
                     + f" n: ratings behind a mean; below {MIN_RATINGS_FOR_INTERVAL} no interval and never bold.")
    return Table("table4", "Listening test (paper Table 4 layout)", "System", columns, table_rows, notes)
