"""Everything `fluxbench report` writes, from its inputs to the files in the output folder.

Output layout:
    table1.*, table3.*, table4.*   one file per table and format (md, tex, csv, html)
    figures/<name>.png + .pdf      mel grid, loss curves, scaling plot
    audio/<source>/<id>.<ext>      copies of the example clips the page plays
    index.html                     the report page (with the html format)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fluxbench.atomic import copy_file, write_text
# AUDIO_SUFFIXES: the one list of audio suffixes, by which list_audio picks the clips a report shows.
from fluxbench.audio import AUDIO_SUFFIXES, list_audio  # noqa: F401
from fluxbench.captions import read_captions
from fluxbench.reports import ReportError
from fluxbench.reports.listening import listening_table, load_listening
from fluxbench.reports.render import RENDERERS
from fluxbench.reports.table_model import Table
from fluxbench.reports.tables import Run, architecture_table, comparison_table, load_runs, measured_rows, split_label

log = logging.getLogger(__name__)

FORMATS = tuple(RENDERERS)


@dataclass
class ReportOptions:
    runs: list[str] = field(default_factory=list)  # results files or run folders, optionally LABEL=PATH
    formats: tuple[str, ...] = FORMATS
    sets: list[str] | None = None
    metrics: list[str] | None = None
    decimals: int = 2
    reported: str | None = None  # a JSON file of reported rows instead of the packaged ones
    include_reported: bool = True
    listening: str | None = None
    loss_logs: list[str] = field(default_factory=list)  # CSV files, optionally LABEL=PATH
    smoothing: float = 0.9
    log_loss: bool = False
    audio: list[str] = field(default_factory=list)  # folders of <id>.wav, optionally LABEL=DIR
    examples: int = 4
    prompts: list[str] | None = None
    captions: str | None = None
    scaling_x: str = "parameters"
    title: str = "fluxbench report"


@dataclass
class AudioSource:
    label: str
    clips: dict[str, Path]  # prompt id -> file


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ReportError(f"--format {text!r}: expected a comma-separated subset of {','.join(FORMATS)}")
    return formats


def clips_in(folder: Path) -> dict[str, Path]:
    """Prompt id (file stem) -> clip of an audio folder; empty when it holds none."""
    return {p.stem: p for p in list_audio(folder, "audio", unique_stems=True, required=False)}


def run_folder(run: Run) -> Path:
    return run.path if run.path.is_dir() else run.path.parent


def audio_sources(runs: list[Run], explicit: list[str]) -> list[AudioSource]:
    """Explicit folders, or else the generated clips of the runs on the first set that has any (the runner
    keeps them in <run>/generated), with that run's references first."""
    if explicit:
        sources = []
        for spec in explicit:
            label, folder = split_label(spec)
            folder_path = Path(folder)
            sources.append(AudioSource(label or folder_path.resolve().name, clips_in(folder_path)))
        return sources
    with_audio = [r for r in runs if (run_folder(r) / "generated").is_dir()]
    if not with_audio:
        return []
    first_set = with_audio[0].document["set"].get("name")
    chosen = [r for r in with_audio if r.document["set"].get("name") == first_set]
    sources = []
    reference = run_folder(chosen[0]) / "reference"
    if reference.is_dir() and clips_in(reference):
        sources.append(AudioSource("reference", clips_in(reference)))
    sources += [AudioSource(r.label, clips_in(run_folder(r) / "generated")) for r in chosen]
    return sources


def choose_examples(sources: list[AudioSource], count: int, wanted: list[str] | None) -> list[str]:
    if wanted:
        unknown = [w for w in wanted if not any(w in s.clips for s in sources)]
        if unknown:
            raise ReportError(f"--prompts: no clip named {unknown[0]!r} in any audio source")
        return list(wanted)
    generated = [s for s in sources if s.label != "reference"] or sources
    common = set.intersection(*(set(s.clips) for s in generated))
    if not common:
        raise ReportError("audio sources share no prompt id (clips are matched by file name); pick them with --prompts")
    return sorted(common)[:count]


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "source"


def write_tables(tables: list[Table], out: Path, formats: tuple[str, ...]) -> list[Path]:
    from fluxbench.reports.html import standalone

    written = []
    for table in tables:
        for fmt in formats:
            render, suffix = RENDERERS[fmt]
            text = standalone(table) if fmt == "html" else render(table)
            written.append(write_text(out / f"{table.name}{suffix}", text))
    return written


def build_report(options: ReportOptions, out: str | os.PathLike) -> dict[str, list[Path]]:
    """Writes the report into `out`; returns the written files by kind (tables, figures, audio, page)."""
    from fluxbench.reports import figures
    from fluxbench.reports.html import Example, FigureRef, Page, render_page
    from fluxbench.reports.reported import load_reported_listening_rows, load_reported_rows

    out = Path(out)
    if not (options.runs or options.loss_logs or options.listening or options.audio):
        raise ReportError("nothing to report: give results files, --loss-logs, --listening or --audio")
    if options.decimals < 0 or options.examples < 1:
        raise ReportError(f"--decimals must be >= 0 and --examples >= 1, got {options.decimals} and {options.examples}")
    if not 0.0 <= options.smoothing < 1.0:
        raise ReportError(f"--smooth must be in [0, 1), got {options.smoothing}")
    runs = load_runs(options.runs)
    listening = load_listening(options.listening) if options.listening else []
    logs = [figures.read_loss_log(path, label) for label, path in map(split_label, options.loss_logs)]
    sources = audio_sources(runs, options.audio)
    captions = {item: caption for run in runs for item, caption in run.document["set"].get("captions", {}).items()}
    if options.captions:
        captions.update(read_captions(options.captions))  # an explicit file wins

    measured = measured_rows(runs)
    reported, reported_listening = [], []
    if options.include_reported and options.reported:
        reported = load_reported_rows(options.reported)
        reported_listening = load_reported_listening_rows(options.reported)
    elif options.include_reported:
        try:  # the numbers shipped with the baselines: a problem there should not stop a report
            reported, reported_listening = load_reported_rows(), load_reported_listening_rows()
        except ReportError as error:
            log.warning("published rows left out: %s", error)

    tables = []
    if measured:
        tables.append(comparison_table(reported + measured, options.sets, options.metrics, options.decimals))
    tables.append(architecture_table())
    if listening:
        tables.append(listening_table(reported_listening + listening, options.decimals))
    written: dict[str, list[Path]] = {"tables": write_tables(tables, out, options.formats), "figures": [],
                                      "audio": [], "page": []}

    figure_refs = []

    def add_figure(plot: figures.Plot, name: str, title: str) -> None:
        paths = plot.save(out / "figures" / name)
        written["figures"] += paths
        figure_refs.append(FigureRef(title, f"figures/{name}.png", f"figures/{name}.pdf"))

    examples = choose_examples(sources, options.examples, options.prompts) if sources else []
    if examples:
        grid = [[s.clips.get(i) for s in sources] for i in examples]
        plot = figures.mel_grid(grid, [captions.get(i, i) for i in examples], [s.label for s in sources])
        add_figure(plot, "mel_grid", "Log-mel spectrograms (rows: prompts; columns: audio sources; one colour scale)")
    if logs:
        plot = figures.loss_curves(logs, options.smoothing, options.log_loss)
        add_figure(plot, "loss_curves", "Training loss" + (" (log scale)" if options.log_loss else ""))
    sized = [r for r in measured if isinstance(getattr(r, options.scaling_x, None), (int, float))]
    if len(sized) >= 2:
        try:
            plot = figures.scaling_plot(measured, options.scaling_x, options.metrics, options.sets)
        except ReportError as error:
            log.info("no scaling plot: %s", error)
        else:
            add_figure(plot, f"scaling_{options.scaling_x}", f"Metrics against model {options.scaling_x}")

    if "html" in options.formats:
        page_examples = []
        for prompt_id in examples:
            clips = []
            for source in sources:
                clip = source.clips.get(prompt_id)
                if clip is None:
                    clips.append(None)
                    continue
                relative = f"audio/{_safe(source.label)}/{_safe(prompt_id)}{clip.suffix.lower()}"
                written["audio"].append(copy_file(clip, out / relative))
                clips.append(relative)
            page_examples.append(Example(prompt_id, captions.get(prompt_id, prompt_id), clips))
        inputs = [str(r.path) for r in runs] + [str(log.path) for log in logs] + (
            [options.listening] if options.listening else [])
        page = Page(options.title, tables, figure_refs, [s.label for s in sources], page_examples, inputs)
        written["page"].append(write_text(out / "index.html", render_page(page)))
    return written
