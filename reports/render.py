"""A `Table` rendered as Markdown, LaTeX (booktabs), CSV (every number at full precision) or an HTML fragment."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from fluxbench.reports.table_model import REPORTED_MARK, Column, Table


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
