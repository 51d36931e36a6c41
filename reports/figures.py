"""The paper's figures: mel-spectrogram grids, training-loss curves, scaling plots.

matplotlib is used without pyplot, on the Agg canvas: no global state, no display needed. Every function
returns a `Plot`, the figure together with the arrays it draws, so callers (and tests) can see exactly what
is on the page; `Plot.save` writes PNG and PDF atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fluxbench.atomic import atomic_path
from fluxbench.protocols.metrics.table import RESULT_KEYS as METRICS
from fluxbench.reports import ReportError
from fluxbench.reports.table_model import format_parameters
from fluxbench.reports.tables import ModelRow, set_title

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "pdf")


@dataclass
class Plot:
    figure: "Figure"
    data: dict[str, Any] = field(default_factory=dict)

    def save(self, stem: str | os.PathLike, dpi: int = 150) -> list[Path]:
        """Writes <stem>.png and <stem>.pdf."""
        paths = []
        for fmt in FORMATS:
            path = Path(f"{stem}.{fmt}")
            with atomic_path(path) as tmp:
                self.figure.savefig(tmp, format=fmt, dpi=dpi)
            paths.append(path)
        return paths


def new_figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


# ---- mel-spectrogram grids ----------------------------------------------------------------------------------

def log_mel(path: str | os.PathLike) -> np.ndarray:
    """The AudioLDM 2 log-mel of an audio file (mono, 16 kHz) as [64 bins, frames]."""
    import torch

    from fluxbench.audio import MEL_SAMPLE_RATE, mel_spectrogram, read_audio, resample, to_mono

    wave, rate = read_audio(path)
    mono = resample(to_mono(wave), rate, MEL_SAMPLE_RATE)
    mel = mel_spectrogram(torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))[None])
    return mel[0].T.numpy()


def _frequency_ticks() -> tuple[list[float], list[str]]:
    """Positions (in mel-bin units, bin k spans [k, k + 1]) and labels of round frequencies."""
    from fluxbench.audio import MEL_N_FFT, MEL_SAMPLE_RATE, mel_filterbank

    bank = mel_filterbank()
    centres = np.linspace(0, MEL_SAMPLE_RATE / 2, MEL_N_FFT // 2 + 1)[bank.argmax(axis=1)]
    hertz = [f for f in (250, 500, 1000, 2000, 4000) if centres[0] <= f <= centres[-1]]
    positions = np.interp(hertz, centres, np.arange(len(centres)) + 0.5)
    return list(positions), [f"{f // 1000}k" if f >= 1000 else str(f) for f in hertz]


def mel_grid(grid: Sequence[Sequence[str | os.PathLike | np.ndarray | None]], row_labels: Sequence[str],
             column_labels: Sequence[str], title: str | None = None) -> Plot:
    """Rows (prompts) x columns (models or checkpoints) of log-mels on one shared colour scale.

    A cell is an audio file, a precomputed log-mel [64, frames], or None (drawn as "missing").
    """
    from fluxbench.audio import MEL_HOP, MEL_SAMPLE_RATE

    if not grid or any(len(row) != len(column_labels) for row in grid) or len(grid) != len(row_labels):
        raise ReportError("mel grid: need one label per row and per column, and every row as long as the columns")
    mels = [[None if cell is None else (cell if isinstance(cell, np.ndarray) else log_mel(cell)) for cell in row]
            for row in grid]
    drawn = [m for row in mels for m in row if m is not None]
    if not drawn:
        raise ReportError("mel grid: every cell is missing")
    vmin, vmax = min(float(m.min()) for m in drawn), max(float(m.max()) for m in drawn)
    rows, cols = len(mels), len(column_labels)
    figure = new_figure(2.6 * cols + 1.6, 1.9 * rows + 0.8)
    axes = figure.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    ticks, tick_labels = _frequency_ticks()
    image = None
    for r, row in enumerate(mels):
        for c, mel in enumerate(row):
            ax = axes[r][c]
            if mel is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="0.5")
            else:
                seconds = mel.shape[1] * MEL_HOP / MEL_SAMPLE_RATE
                image = ax.imshow(mel, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                                  vmin=vmin, vmax=vmax, extent=(0.0, seconds, 0.0, float(mel.shape[0])))
            ax.set_yticks(ticks, tick_labels)
            if r == 0:
                ax.set_title(column_labels[c], fontsize=10)
            if r == rows - 1:
                ax.set_xlabel("time (s)")
            if c == 0:
                ax.set_ylabel("frequency (Hz)")
                ax.annotate(textwrap.fill(row_labels[r], 28), xy=(0, 0.5), xycoords="axes fraction",
                            xytext=(-52, 0), textcoords="offset points", ha="right", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.9, label="log mel magnitude")
    if title:
        figure.suptitle(title)
    return Plot(figure, {"mels": mels, "vmin": vmin, "vmax": vmax, "rows": list(row_labels),
                         "columns": list(column_labels)})


# ---- training-loss curves -----------------------------------------------------------------------------------

@dataclass
class LossLog:
    label: str
    step: np.ndarray
    loss: np.ndarray
    path: Path | None = None


def read_loss_log(path: str | os.PathLike, label: str | None = None) -> LossLog:
    """Any CSV with `step` and `loss` columns (other columns are ignored); sorted by step, a repeated step keeps
    its last row (a resumed run that re-logged it)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no loss log")
    from fluxbench.inputs import read_text

    with io.StringIO(read_text(path, "loss log"), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("step", "loss") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReportError(f"{path}: loss log lacks column(s) {', '.join(missing)}; expected a CSV with a header "
                              f"naming at least 'step' and 'loss' (found {reader.fieldnames or 'no header'})")
        by_step: dict[float, float] = {}
        for line, record in enumerate(reader, start=2):
            try:
                by_step[float(record["step"])] = float(record["loss"])
            except (TypeError, ValueError):
                raise ReportError(f"{path}: line {line}: step and loss must be numbers, got "
                                  f"{record['step']!r}, {record['loss']!r}") from None
    if not by_step:
        raise ReportError(f"{path}: loss log has no rows")
    steps = np.array(sorted(by_step))
    return LossLog(label or path.parent.name or path.stem, steps, np.array([by_step[s] for s in steps]), path)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average; non-finite values are shown as gaps and not averaged in."""
    if not 0.0 <= weight < 1.0:
        raise ReportError(f"smoothing weight must be in [0, 1), got {weight}")
    out = np.full(len(values), np.nan)
    average, seen = 0.0, 0
    for i, value in enumerate(np.asarray(values, dtype=np.float64)):
        if not math.isfinite(value):
            continue
        average = weight * average + (1.0 - weight) * value
        seen += 1
        out[i] = average / (1.0 - weight ** seen)
    return out


def loss_curves(logs: Sequence[LossLog], smoothing: float = 0.9, log_scale: bool = False,
                title: str | None = None) -> Plot:
    """Several runs on one axis: raw losses faint, smoothed losses bold, in the same colour per run."""
    if not logs:
        raise ReportError("loss curves: no loss logs given")
    if log_scale and any((log.loss[np.isfinite(log.loss)] <= 0).any() for log in logs):
        raise ReportError("loss curves: a log scale needs positive losses; some run has loss <= 0")
    figure = new_figure(6.4, 4.0)
    ax = figure.subplots()
    data = {}
    for index, log in enumerate(logs):
        colour = f"C{index % 10}"
        smoothed = smooth(log.loss, smoothing)
        ax.plot(log.step, log.loss, color=colour, alpha=0.25, linewidth=0.8, gid=f"{log.label}:raw")
        ax.plot(log.step, smoothed, color=colour, linewidth=1.6, label=log.label, gid=f"{log.label}:smoothed")
        data[log.label] = {"step": log.step, "loss": log.loss, "smoothed": smoothed}
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss" + (" (log scale)" if log_scale else ""))
    if log_scale:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(title=f"EMA smoothing {smoothing:g}" if smoothing else None)
    if title:
        ax.set_title(title)
    return Plot(figure, data)


# ---- scaling -------------------------------------------------------------------------------------------------

SCALING_AXES = {"parameters": "parameters", "gflops": "GFLOPs per forward"}


def scaling_plot(rows: Sequence[ModelRow], x: str = "parameters", metrics: Sequence[str] | None = None,
                 sets: Sequence[str] | None = None) -> Plot:
    """One panel per metric: the metric against model size (log axis), one line per set, 95% CIs as bars."""
    if x not in SCALING_AXES:
        raise ReportError(f"scaling plot: x must be one of {', '.join(SCALING_AXES)}, got {x!r}")
    sized = [(float(getattr(r, x)), r) for r in rows
             if isinstance(getattr(r, x), (int, float)) and not isinstance(getattr(r, x), bool)]
    sized.sort(key=lambda pair: pair[0])
    present = {key for _, r in sized for key in r.scores}
    metric_keys = [m for m in (metrics or [m for m in METRICS if any(k[1] == m for k in present)])]
    set_names = list(sets or dict.fromkeys(k[0] for _, r in sized for k in r.scores))
    series: dict[str, dict[str, Any]] = {}
    for metric in metric_keys:
        for set_name in set_names:
            points = [(size, r) for size, r in sized if r.scores.get((set_name, metric), None) is not None
                      and r.scores[set_name, metric].number is not None]
            if len(points) >= 2:
                cells = [r.scores[set_name, metric] for _, r in points]
                series[f"{set_name}:{metric}"] = {
                    "x": np.array([size for size, _ in points]), "y": np.array([c.number for c in cells]),
                    "low": np.array([np.nan if c.low is None else c.low for c in cells]),
                    "high": np.array([np.nan if c.high is None else c.high for c in cells]),
                    "labels": [r.label for _, r in points], "set": set_name, "metric": metric}
    if not series:
        raise ReportError(f"scaling plot: needs at least two runs with a known {x} scored on the same set and metric")
    from matplotlib.ticker import NullFormatter

    panels = list(dict.fromkeys(s["metric"] for s in series.values()))
    figure = new_figure(3.4 * len(panels) + 0.4, 3.4)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, metric in zip(axes, panels):
        info = METRICS.get(metric)
        named: set[tuple[float, str]] = set()
        for index, set_name in enumerate(set_names):
            s = series.get(f"{set_name}:{metric}")
            if s is None:
                continue
            errors = np.vstack([s["y"] - s["low"], s["high"] - s["y"]])
            errors = None if np.isnan(errors).all() else np.nan_to_num(errors)
            ax.errorbar(s["x"], s["y"], yerr=errors, marker="o", capsize=3, color=f"C{index % 10}",
                        label=set_title(set_name), gid=f"{set_name}:{metric}")
            for size, value, label in zip(s["x"], s["y"], s["labels"]):
                if (size, label) not in named:  # one name per model, not one per set
                    named.add((size, label))
                    ax.annotate(label, (size, value), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        # Ticks at the model sizes themselves: a few sizes often fall within one decade.
        sizes = sorted({float(v) for s in series.values() if s["metric"] == metric for v in s["x"]})
        ax.set_xticks(sizes, [format_parameters(v) if x == "parameters" else f"{v:g}" for v in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=30)
        ax.margins(x=0.2)
        ax.set_xlabel(SCALING_AXES[x])
        arrow = "" if info is None else (" (lower is better)" if info.lower_is_better else " (higher is better)")
        ax.set_ylabel((info.label if info else metric) + arrow)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return Plot(figure, series)
