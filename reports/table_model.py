"""A table as plain data (`Table`: columns, rows of cells, notes), before it is rendered (`render.py`).

The emphasis of the best value per column is decided once, on the values as displayed, so ties are all
emphasised. Confidence intervals are shown as "value ± half-width" (half the 95% interval's width; bootstrap
intervals may be asymmetric, so the CSV keeps the exact bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MISSING = "–"
REPORTED_MARK = "†"


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
