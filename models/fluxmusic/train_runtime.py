"""Where and how training runs: processes (DDP), the loss log, progress reporting."""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fluxbench.atomic import write_text
from fluxbench.models.fluxmusic.train_config import TrainingError
from fluxbench.runtime import cuda_available, distributed

log = logging.getLogger("fluxbench.train")

LOSS_FILE = "loss.csv"
LOSS_COLUMNS = ["step", "loss", "grad_norm", "lr", "samples", "seconds"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.item() / self.world


def setup_distributed(device_choice: str) -> tuple[Dist, torch.device]:
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and cuda_available())
    if device_choice == "cuda" and not cuda_available():
        raise TrainingError("--device cuda: no CUDA device is available")
    rank, world, _ = distributed(cuda=use_cuda)
    dist = Dist(rank, world, int(os.environ.get("LOCAL_RANK", "0"))) if world > 1 else Dist()
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
        return dist, torch.device("cuda", dist.local_rank)
    return dist, torch.device("cpu")


class LossLog:
    """loss.csv (rank 0), truncated to the resumed step so a resumed run continues one clean curve."""

    def __init__(self, out: Path, resume_step: int) -> None:
        self.path = out / LOSS_FILE
        rows = []
        if self.path.is_file() and resume_step > 0:
            with self.path.open(encoding="utf-8", errors="replace", newline="") as handle:
                rows = [row for row in csv.DictReader(handle)
                        if _whole_row(row) and int(row["step"]) <= resume_step]
        self.seconds_before = float(rows[-1]["seconds"]) if rows else 0.0  # time spent before the resume
        kept = io.StringIO()
        writer = csv.DictWriter(kept, LOSS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, kept.getvalue())  # the resumed curve replaces the old file in one step
        self._handle = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, LOSS_COLUMNS)
        self._board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # TensorBoard is optional
            pass

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._handle.flush()
        if self._board is not None:
            for key in ("loss", "grad_norm", "lr"):
                self._board.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        self._handle.close()
        if self._board is not None:
            self._board.close()


class TrainingProgress:
    """Step, loss, steps/s and time left: a bar on a terminal, otherwise a log line about every 5%."""

    def __init__(self, start: int, last: int, bar: bool) -> None:
        self.start, self.last = start, last
        self.started = time.perf_counter()
        self.every = max(1, (last - start) // 20)
        self.bar = None
        if bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=last, initial=start, desc="training", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        if (step - self.start) % self.every and step != self.last:
            return
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        left = (self.last - step) / rate if rate > 0 else 0.0
        log.info("training step %d/%d  loss %.4f  %.2f steps/s  %s left", step, self.last, loss, rate,
                 _clock(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s"


def _whole_row(row: dict[str, str | None]) -> bool:
    """False for a row cut short (a kill during the append) or otherwise unreadable; it is dropped on resume."""
    try:
        int(row["step"])
        for column in LOSS_COLUMNS[1:]:
            float(row[column])
        return True
    except (TypeError, ValueError, KeyError):
        return False


def read_losses(out: str | os.PathLike) -> list[dict[str, float]]:
    with (Path(out) / LOSS_FILE).open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
