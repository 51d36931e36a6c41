"""Report figures and the report page: the arrays drawn equal their inputs, rendering needs no display."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fluxbench.cli import main
from fluxbench.results import write_results

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def tone(path: Path, hertz: float, seconds: float = 1.5, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * np.sin(2 * np.pi * hertz * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype="FLOAT")
    return wave


def reference_mel(wave: np.ndarray) -> np.ndarray:
    """The front-end as specified (fluxbench.audio, AudioLDM 2 convention), [64, frames]."""
    import torch

    from fluxbench.audio import mel_spectrogram

    return mel_spectrogram(torch.tensor(wave, dtype=torch.float32)[None])[0].T.numpy()


def strongest_band(hertz: float) -> int:
    from fluxbench.audio import mel_filterbank

    bank = mel_filterbank()
    return int(bank[:, int(round(hertz / (RATE / 1024)))].argmax())


# ---- mel grid ------------------------------------------------------------------------------------------------

def test_mel_grid_draws_the_inputs_on_one_colour_scale(tmp_path):
    from scipy.signal import resample_poly

    from fluxbench.reports.figures import mel_grid

    low = tone(tmp_path / "low.wav", 440.0)
    high_32k = tone(tmp_path / "high.wav", 2000.0, seconds=1.0, rate=32_000, channels=2)
    plot = mel_grid([[tmp_path / "low.wav", tmp_path / "high.wav"], [tmp_path / "high.wav", None]],
                    ["a slow melody", "drums"], ["model A", "model B"])
    mels = plot.data["mels"]
    np.testing.assert_allclose(mels[0][0], reference_mel(low), atol=1e-5)
    # Stereo 32 kHz input: channels averaged, resampled to 16 kHz before the mel front-end.
    np.testing.assert_allclose(mels[0][1], reference_mel(resample_poly(high_32k, 1, 2)), atol=1e-3)
    assert mels[0][1].shape == (64, 16_000 // 160 + 1) and mels[1][1] is None

    axes = np.array(plot.figure.axes[:4]).reshape(2, 2)
    for r, c in ((0, 0), (0, 1), (1, 0)):
        image = axes[r, c].images[0]
        np.testing.assert_array_equal(np.asarray(image.get_array()), mels[r][c])
        drawn = [m for row in mels for m in row if m is not None]
        assert image.get_clim() == (min(m.min() for m in drawn), max(m.max() for m in drawn))
        assert image.get_extent()[1] == pytest.approx(mels[r][c].shape[1] * 160 / RATE)
    assert not axes[1, 1].images and axes[1, 1].texts[0].get_text() == "missing"
    assert [axes[0, c].get_title() for c in range(2)] == ["model A", "model B"]
    assert axes[1, 0].get_xlabel() == "time (s)" and axes[0, 0].get_ylabel() == "frequency (Hz)"
    assert [a.get_text() for a in axes[0, 0].texts] == ["a slow melody"]

    # The tones sit in the right mel band, and the frequency ticks are placed where those frequencies are drawn.
    for mel, hertz in ((mels[0][0], 440.0), (mels[0][1], 2000.0)):
        band = int(mel.mean(axis=1).argmax())
        assert abs(band - strongest_band(hertz)) <= 1
    ticks = dict(zip([t.get_text() for t in axes[0, 0].get_yticklabels()], axes[0, 0].get_yticks()))
    assert abs(ticks["2k"] - (int(mels[0][1].mean(axis=1).argmax()) + 0.5)) <= 1.5

    paths = plot.save(tmp_path / "figures" / "grid")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_mel_grid_rejects_ragged_input():
    from fluxbench import FluxbenchError
    from fluxbench.reports.figures import mel_grid

    with pytest.raises(FluxbenchError, match="one label per row"):
        mel_grid([[np.zeros((64, 10))]], ["p"], ["a", "b"])


# ---- loss curves ---------------------------------------------------------------------------------------------

def write_loss_log(path: Path, rows: list[dict]) -> None:
    from fluxbench.models.fluxmusic.train import LOSS_COLUMNS  # the trainer's own loss.csv header

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOSS_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, 0) for column in LOSS_COLUMNS})


def ema(values, weight):
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** i))
    return np.array(out)


def test_loss_curves_draw_the_logged_losses(tmp_path):
    from fluxbench.reports.figures import loss_curves, read_loss_log

    rng = np.random.default_rng(0)
    small = [{"step": s, "loss": 1.0 / (1 + 0.1 * s) + 0.05 * rng.random()} for s in range(1, 41)]
    logged = small[::-1] + [{"step": 20, "loss": 0.123}]  # any row order; a resumed run re-logged step 20
    write_loss_log(tmp_path / "small" / "loss.csv", logged)
    base = [{"step": s, "loss": 0.8 / (1 + 0.2 * s)} for s in range(10, 200, 10)]
    write_loss_log(tmp_path / "base.csv", base)

    logs = [read_loss_log(tmp_path / "small" / "loss.csv"), read_loss_log(tmp_path / "base.csv", "FluxMusic-B")]
    assert [log.label for log in logs] == ["small", "FluxMusic-B"]
    plot = loss_curves(logs, smoothing=0.8, log_scale=True)
    ax = plot.figure.axes[0]
    lines = {line.get_gid(): line for line in ax.lines}
    want_small = {r["step"]: r["loss"] for r in small} | {20: 0.123}
    steps = sorted(want_small)
    np.testing.assert_array_equal(lines["small:raw"].get_xdata(), steps)
    np.testing.assert_allclose(lines["small:raw"].get_ydata(), [want_small[s] for s in steps], rtol=1e-12)
    np.testing.assert_allclose(lines["small:smoothed"].get_ydata(), ema([want_small[s] for s in steps], 0.8),
                               rtol=1e-12)
    np.testing.assert_allclose(lines["FluxMusic-B:raw"].get_ydata(), [r["loss"] for r in base], rtol=1e-12)
    np.testing.assert_allclose(plot.data["FluxMusic-B"]["smoothed"], ema([r["loss"] for r in base], 0.8), rtol=1e-12)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "training step"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["small", "FluxMusic-B"]
    flat = loss_curves(logs[1:], smoothing=0.0).figure.axes[0]
    assert flat.get_yscale() == "linear"
    np.testing.assert_allclose(flat.lines[1].get_ydata(), [r["loss"] for r in base], rtol=1e-12)


@pytest.mark.parametrize("content, message", [
    ("step,lr\n1,0.1\n", "lacks column(s) loss"),
    ("", "lacks column(s) step, loss"),
    ("step,loss\n1,0.5\n2,oops\n", "line 3: step and loss must be numbers"),
    ("step,loss\n", "has no rows"),
])
def test_bad_loss_log_is_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "loss.csv"
    path.write_text(content)
    assert main(["report", "--loss-logs", str(path), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err


# ---- scaling -------------------------------------------------------------------------------------------------

def test_scaling_plot_draws_metric_against_size():
    from fluxbench.reports.figures import scaling_plot
    from fluxbench.reports.table_model import Cell
    from fluxbench.reports.tables import ModelRow

    rows = [ModelRow("L", {("musiccaps", "fad"): Cell(2.0, 1.8, 2.3), ("musiccaps", "clap"): Cell(0.33)}, 840_628_256),
            ModelRow("S", {("musiccaps", "fad"): Cell(3.0, 2.9, 3.2), ("musiccaps", "clap"): Cell(0.30)}, 142_333_984),
            ModelRow("B", {("musiccaps", "fad"): Cell(2.5, 2.4, 2.7)}, 473_971_232),
            ModelRow("no size", {("musiccaps", "fad"): Cell(1.0)}, "1.5B", reported=True)]
    plot = scaling_plot(rows)
    fad_ax, clap_ax = plot.figure.axes
    line = next(c for c in fad_ax.containers if c.get_label() == "MusicCaps").lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [142_333_984, 473_971_232, 840_628_256])
    np.testing.assert_array_equal(line.get_ydata(), [3.0, 2.5, 2.0])
    np.testing.assert_array_equal(plot.data["musiccaps:fad"]["low"], [2.9, 2.4, 1.8])
    assert plot.data["musiccaps:fad"]["labels"] == ["S", "B", "L"]
    np.testing.assert_array_equal(clap_ax.containers[0].lines[0].get_ydata(), [0.30, 0.33])
    assert fad_ax.get_xscale() == "log" and fad_ax.get_ylabel() == "FAD (lower is better)"
    assert [t.get_text() for t in fad_ax.get_xticklabels()] == ["142.3M", "473.9M", "840.6M"]
    assert clap_ax.get_ylabel() == "CLAP (higher is better)"

    for row, gflops in zip(rows, (1162.6, 194.5, 654.4, None)):
        row.gflops = gflops
    by_flops = scaling_plot(rows, x="gflops", metrics=["fad"])
    assert len(by_flops.figure.axes) == 1 and by_flops.figure.axes[0].get_xlabel() == "GFLOPs per forward"
    np.testing.assert_array_equal(by_flops.data["musiccaps:fad"]["x"], [194.5, 654.4, 1162.6])
    np.testing.assert_array_equal(by_flops.data["musiccaps:fad"]["y"], [3.0, 2.5, 2.0])


# ---- headless, and the page ----------------------------------------------------------------------------------

def test_rendering_needs_no_display_and_help_imports_nothing_heavy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"  # a GUI backend: only pyplot would try it, and the reports never use pyplot
    code = ("import sys, numpy as np; from fluxbench.reports.figures import LossLog, loss_curves;"
            "p = loss_curves([LossLog('a', np.arange(5.0), np.linspace(1, 0.5, 5))]);"
            f"p.save({str(tmp_path / 'loss')!r});"
            "assert 'matplotlib.pyplot' not in sys.modules; print('OK')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "loss.pdf").stat().st_size > 1000

    code = ("import sys; from fluxbench.cli import main;\ntry: main(['report', '--help'])\nexcept SystemExit: pass\n"
            "print('HEAVY', [m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.audio, self.tables, self.text = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        self.audio += tag == "audio"
        if tag == "table" and "id" in attrs:
            self.tables.append(attrs["id"])

    def handle_data(self, data):
        self.text.append(data)


def make_run(folder: Path, model: str, fad: float, base_hertz: float) -> Path:
    write_results(folder / "results.json", {
        "model": {"name": model}, "set": {"name": "demo", "items": 3}, "settings": {},
        "metrics": {"descriptor_fd": {"value": fad, "ci95": [fad - 0.1, fad + 0.2], "n": 3}}})
    for index in range(3):
        tone(folder / "generated" / f"demo-{index:05d}.wav", base_hertz * (index + 1), seconds=0.5)
        tone(folder / "reference" / f"demo-{index:05d}.wav", 300.0 * (index + 1), seconds=0.5)
    return folder


def test_report_page_from_run_folders(tmp_path, capsys):
    small = make_run(tmp_path / "runs" / "small", "fluxmusic-small", 1.5, 250.0)
    base = make_run(tmp_path / "runs" / "base", "fluxmusic-base", 1.2, 350.0)
    write_loss_log(tmp_path / "loss.csv", [{"step": s, "loss": 1.0 / s} for s in range(1, 30)])
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"demo-00000": "a calm piano melody", "demo-00001": "fast drums"}))
    out = tmp_path / "report"
    assert main(["report", str(small), str(base / "results.json"), "--out", str(out), "--examples", "2",
                 "--loss-logs", f"small={tmp_path / 'loss.csv'}", "--captions", str(captions),
                 "--title", "Demo report", "-q"]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("table3.md", "table3.tex", "table3.csv", "table3.html", "table1.md", "index.html",
                 "figures/mel_grid.png", "figures/mel_grid.pdf", "figures/loss_curves.png",
                 "figures/scaling_parameters.pdf"):
        assert str(out / name) in printed and (out / name).is_file()

    moved = tmp_path / "moved"
    shutil.move(out, moved)  # relative links keep working when the folder moves
    page = Links()
    page.feed((moved / "index.html").read_text())
    assert page.tables == ["table3", "table1"]
    assert page.audio == 2 * 3  # two prompts x (reference, small, base)
    assert page.links and all(not link.startswith(("/", "file:")) for link in page.links)
    for link in page.links:
        assert (moved / link).is_file(), link
    audio = [link for link in page.links if link.startswith("audio/")]
    assert sorted(audio) == sorted(f"audio/{source}/demo-0000{i}.wav" for source in ("reference", "fluxmusic-small",
                                                                                         "fluxmusic-base") for i in (0, 1))
    assert sf.read(moved / "audio" / "fluxmusic-base" / "demo-00001.wav")[0].shape == (8000,)
    text = " ".join(page.text)
    assert "a calm piano melody" in text and "fast drums" in text and "Demo report" in text
    fd_cells = re.findall(r"\d+\.\d+ ± \d+\.\d+", text)
    assert "1.50 ± 0.15" in fd_cells and "1.20 ± 0.15" in fd_cells


def test_audio_folders_as_checkpoint_columns(tmp_path):
    """Figure 4 style: one column per training checkpoint, given as labelled folders."""
    for step, hertz in (("step 1000", 200.0), ("step 2000", 400.0)):
        for index in range(2):
            tone(tmp_path / step / f"p{index}.wav", hertz + 100 * index, seconds=0.3)
    tone(tmp_path / "step 2000" / "extra.wav", 500.0, seconds=0.3)
    out = tmp_path / "out"
    assert main(["report", "--audio", f"1k={tmp_path / 'step 1000'}", str(tmp_path / "step 2000"),
                 "--out", str(out), "--format", "html", "-q"]) == 0
    page = Links()
    page.feed((out / "index.html").read_text())
    assert sorted(link for link in page.links if link.startswith("audio/")) == [
        "audio/1k/p0.wav", "audio/1k/p1.wav", "audio/step_2000/p0.wav", "audio/step_2000/p1.wav"]
    assert "step 2000" in " ".join(page.text) and "figures/mel_grid.png" in page.links


def test_report_page_takes_captions_from_results(tmp_path):
    run = make_run(tmp_path / "runs" / "small", "fluxmusic-small", 1.5, 250.0)
    document = json.loads((run / "results.json").read_text())
    document["set"]["captions"] = {"demo-00000": "a bright marimba loop", "demo-00001": "slow strings"}
    (run / "results.json").write_text(json.dumps(document))
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out), "--examples", "2", "-q"]) == 0
    page = Links()
    page.feed((out / "index.html").read_text())
    text = " ".join(page.text)
    assert "a bright marimba loop" in text and "slow strings" in text
