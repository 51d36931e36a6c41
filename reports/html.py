"""The report page: tables, figures and audio players in one HTML file that opens from disk.

Styles are inline; figures and audio are referenced by paths relative to the page, so the report folder can
be moved or zipped as a whole.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from urllib.parse import quote

from fluxbench import __version__
from fluxbench.reports.render import to_html
from fluxbench.reports.table_model import Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.fb-table { border-collapse: collapse; margin: 1em 0 0.3em; font-variant-numeric: tabular-nums; }
.fb-table caption { font-weight: 600; text-align: left; padding-bottom: 0.4em; }
.fb-table th, .fb-table td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
.fb-table th[scope=row], .fb-table thead th:first-child { text-align: left; }
.fb-table thead th { border-bottom: 2px solid #999; } .fb-table th.group { text-align: center; }
.fb-table tr.reported { color: #555; font-style: italic; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.examples td, .examples th { padding: 0.4em 0.6em; vertical-align: top; text-align: left; }
.examples audio { width: 14em; } .missing { color: #999; }
"""


@dataclass(frozen=True)
class FigureRef:
    title: str
    png: str  # path relative to the page
    pdf: str | None = None


@dataclass(frozen=True)
class Example:
    prompt_id: str
    caption: str
    clips: list[str | None]  # one relative path per audio source, None when that source lacks the prompt


@dataclass
class Page:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # column labels of the audio examples
    examples: list[Example] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)


def url(relative: str) -> str:
    return quote(PurePosixPath(relative).as_posix())


def render_page(page: Page) -> str:
    e = html.escape
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{e(page.title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             f"<h1>{e(page.title)}</h1>", f'<p class="note">fluxbench {e(__version__)}, {e(created)}</p>']
    if page.inputs:
        parts += ["<details><summary>Inputs</summary><ul>"]
        parts += [f"<li><code>{e(i)}</code></li>" for i in page.inputs]
        parts += ["</ul></details>"]
    if page.tables:
        parts.append("<h2>Tables</h2>")
        parts += [to_html(table) for table in page.tables]
    if page.figures:
        parts.append("<h2>Figures</h2>")
        for fig in page.figures:
            pdf = f' (<a href="{e(url(fig.pdf))}">PDF</a>)' if fig.pdf else ""
            parts.append(f'<figure><img src="{e(url(fig.png))}" alt="{e(fig.title)}">'
                         f"<figcaption>{e(fig.title)}{pdf}</figcaption></figure>")
    if page.examples:
        parts += ["<h2>Audio examples</h2>", '<table class="examples">',
                  "<thead><tr><th>Prompt</th>" + "".join(f"<th>{e(s)}</th>" for s in page.sources) + "</tr></thead>",
                  "<tbody>"]
        for example in page.examples:
            cells = [f'<th scope="row">{e(example.caption)}<br><small><code>{e(example.prompt_id)}</code></small></th>']
            for clip in example.clips:
                cells.append('<td class="missing">missing</td>' if clip is None else
                             f'<td><audio controls preload="none" src="{e(url(clip))}"></audio></td>')
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts += ["</tbody>", "</table>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def standalone(table: Table) -> str:
    """One table as its own page (the `html` table format)."""
    return render_page(Page(table.title, tables=[table]))
