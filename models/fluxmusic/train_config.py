"""The training configuration: every setting that defines a run, checked before anything starts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fluxbench import FluxbenchError

LR_SCHEDULES = ("constant", "cosine")
PREDICTIONS = ("velocity", "sample")


class TrainingError(FluxbenchError):
    pass


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the paper's (Section 4.1) where it states them."""

    manifest: str
    out: str
    size: str = "small"
    transformer: dict[str, Any] = field(default_factory=dict)  # overrides of the size's config fields
    init: str | None = None  # a checkpoint whose "ema" weights start the run (fine-tuning)
    conditioner: dict[str, Any] = field(default_factory=lambda: {"kind": "t5-clap"})
    codec: dict[str, Any] = field(default_factory=lambda: {"kind": "audioldm2"})
    duration: float = 10.24
    normalize: bool = True  # remove DC, peak 0.5, as the official data loader does
    objective: str = "rectified_flow"
    time_sampling: str = "logit_normal"
    time_location: float = 0.0  # logit-normal location: > 0 trains more at high noise
    prediction: str = "velocity"  # rectified flow's network output: "velocity" (official) or "sample"
    steps: int = 200_000
    global_batch: int = 128
    micro_batch: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # or "cosine": half-cosine decay to zero after the warm-up
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    ema_every: int = 100
    null_prob: float = 0.1
    precision: str = "auto"  # "auto" = bf16 autocast on GPU, float32 on CPU
    seed: int = 0
    save_every: int = 1000
    keep_checkpoints: int = 3
    cache_dir: str | None = None
    weights_dir: str | None = None  # where hub components are looked up first (see fluxbench.weights)
    sample_steps: int = 50  # generation defaults written into the model folder
    guidance: float = 3.5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"training config: unknown field(s) {unknown}")
        return cls(**values)

    def check(self) -> None:
        for name, value in asdict(self).items():  # a config file can hold anything JSON can
            expected = next((f.type for f in fields(self) if f.name == name), None)
            if expected in ("int", int) and (not isinstance(value, int) or isinstance(value, bool)):
                raise TrainingError(f"training config: {name} must be an integer, got {value!r}")
            if expected in ("float", float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                 or not math.isfinite(value)):
                raise TrainingError(f"training config: {name} must be a finite number, got {value!r}")
            if expected in ("str", str) and not isinstance(value, str):
                raise TrainingError(f"training config: {name} must be text, got {value!r}")
            if expected == "str | None" and value is not None and not isinstance(value, str):
                raise TrainingError(f"training config: {name} must be text, got {value!r}")
            if expected == "dict[str, Any]" and not isinstance(value, dict):
                raise TrainingError(f"training config: {name} must be a JSON object, got {value!r}")
        if self.lr < 0 or self.weight_decay < 0 or not self.grad_clip > 0:  # lr 0 keeps the initial weights
            raise TrainingError(f"training config: lr and weight_decay must be >= 0, grad_clip > 0 (got lr "
                                f"{self.lr}, grad_clip {self.grad_clip}, weight_decay {self.weight_decay})")
        if not 0 < self.duration <= 3600:
            raise TrainingError(f"training config: duration must be in (0, 3600] seconds, got {self.duration}")
        if self.warmup_steps < 0 or self.sample_steps < 1:
            raise TrainingError("training config: warmup_steps must be >= 0 and sample_steps >= 1")
        if self.steps < 1 or self.global_batch < 1 or self.micro_batch < 1:
            raise TrainingError("training config: steps, global_batch and micro_batch must be >= 1")
        if not 0 <= self.null_prob <= 1 or not 0 <= self.ema_decay <= 1 or self.ema_every < 1:
            raise TrainingError("training config: null_prob and ema_decay must be in [0, 1], ema_every >= 1")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"training config: precision {self.precision!r}; expected auto, bf16 or fp32")
        if self.prediction not in PREDICTIONS:
            raise TrainingError(f"training config: prediction {self.prediction!r}; expected one of {PREDICTIONS}")
        if self.prediction != "velocity" and self.objective != "rectified_flow":
            raise TrainingError(f"training config: prediction {self.prediction!r} needs objective rectified_flow "
                                f"(ddpm predicts the noise)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"training config: lr_schedule {self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        if self.save_every < 1 or self.keep_checkpoints < 1:
            raise TrainingError("training config: save_every and keep_checkpoints must be >= 1")

    # What must agree for a rerun to continue the same run (everything but bookkeeping of length/saving).
    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("out", "steps", "save_every", "keep_checkpoints", "cache_dir", "weights_dir", "sample_steps",
                     "guidance"):
            values.pop(name)
        return values
