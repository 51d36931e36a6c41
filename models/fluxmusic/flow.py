"""Training objectives and samplers for FluxMusic, in token space [batch, tokens, in_channels].

Two objectives share one interface (`training_loss`, `sample`), so the paper's Table 2 ablation (rectified
flow vs DDPM/DDIM, same network and budget) is a one-flag switch:

- `RectifiedFlow`: the official training rule. t in [0, 1] with t = 1 pure noise; z_t = (1 - t) x + t eps; the
  network predicts the velocity eps - x (or, with `prediction="sample"`, the clean sample x, turned into the
  velocity (z_t - x) / t so that loss and sampler are unchanged); loss = mean squared error per sample,
  averaged over the batch. t is logit-normal (sigmoid of a normal, location 0 and scale 1 the official
  default; a positive location spends more of training at high noise, where what the caption names is
  decided, as in SD3's logit-normal(m, s)) or uniform. Sampling integrates the ODE from t = 1 to t = 0 on
  the grid t = i/N (Euler reproduces the official loop; Heun and midpoint are the second-order options at two
  network calls per step).
- `DDPM`: epsilon prediction on the linear beta schedule of Ho et al. 2020 (beta from 1e-4 to 0.02 over
  1000 steps), sampled with deterministic DDIM (eta = 0). The network's time input is k / 1000 for the
  discrete step k in [0, 999], so the transformer's sinusoidal embedding (which multiplies t by 1000) sees k.

`cond` / `uncond` are dicts with the transformer's keyword names "img_ids", "txt", "txt_ids", "y". Guidance
mixes the two predictions as p_u + g (p_c - p_u); with no `uncond`, or g == 1, only the conditional call runs.
Both predictions come from one network call on a batch of 2B (`batched_guidance=True`, the default: the
weights are read once per step) or from two calls of B (`False`: half the activation memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from fluxbench import FluxbenchError

CONDITION_KEYS = ("img_ids", "txt", "txt_ids", "y")


def _predict(model: Callable, z: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
    missing = [key for key in CONDITION_KEYS if key not in cond]
    if missing:
        raise FluxbenchError(f"condition dict lacks {missing}; expected keys {list(CONDITION_KEYS)}")
    return model(z, cond["img_ids"], cond["txt"], cond["txt_ids"], t, cond["y"])


def _guided(model: Callable, z: torch.Tensor, t: torch.Tensor, cond: dict, uncond: dict | None,
            guidance: float, batched: bool = True) -> torch.Tensor:
    if uncond is None or guidance == 1.0:
        return _predict(model, z, t, cond)
    if batched:
        both = _predict(model, torch.cat((z, z)), torch.cat((t, t)), _joined(cond, uncond))
        conditional, unconditional = both.chunk(2)
    else:
        conditional = _predict(model, z, t, cond)
        unconditional = _predict(model, z, t, uncond)
    return unconditional + guidance * (conditional - unconditional)


def within_bounds(x0: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Static thresholding (Saharia et al. 2022, Imagen): the clean-sample estimate clamped to the range the
    training latents spanned, so guidance and an undertrained network cannot push values past what the data
    ever held (in a log-mel latent such a value is a burst tens of times louder than any training clip)."""
    if bounds is None:
        return x0
    low, high = bounds
    return torch.minimum(torch.maximum(x0, low.to(x0)), high.to(x0))


def _joined(cond: dict, uncond: dict) -> dict:
    """One condition dict of 2B rows: the conditional rows, then the unconditional ones."""
    missing = [key for key in CONDITION_KEYS if key not in cond or key not in uncond]
    if missing:
        raise FluxbenchError(f"condition dict lacks {missing}; expected keys {list(CONDITION_KEYS)}")
    return {key: None if cond[key] is None else torch.cat((cond[key], uncond[key].expand_as(cond[key])))
            for key in CONDITION_KEYS}


def _per_sample_mse(target: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    return ((target - prediction.to(target.dtype)) ** 2).mean(dim=tuple(range(1, target.ndim)))


def _batch_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(values.shape[0], *([1] * (like.ndim - 1)))


def _steps_progress(steps: int, progress: bool, label: str):
    if not progress:
        return range(steps)
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=label, leave=False)


@dataclass
class Trajectory:
    """Every state of a sampling run (initial noise first, final sample last) and the clean-sample estimate
    the network implied at each step (one fewer entry)."""

    states: list[torch.Tensor] = field(default_factory=list)
    x0_estimates: list[torch.Tensor] = field(default_factory=list)

    @property
    def final(self) -> torch.Tensor:
        return self.states[-1]


class _Objective:
    """What both objectives share: `sample` is the final state (or every state) of `trajectory`."""

    def sample(self, model: Callable, noise: torch.Tensor, cond: dict, uncond: dict | None = None,
               guidance: float = 3.5, steps: int = 50, solver: str | None = None, record: bool = False,
               progress: bool = False, batched_guidance: bool = True,
               x0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None):
        """`x0_bounds` (low, high), broadcastable to the tokens: clamp every clean-sample estimate to them."""
        run = self.trajectory(model, noise, cond, uncond, guidance, steps, solver, progress, batched_guidance,
                              x0_bounds)
        return run.states if record else run.final


class RectifiedFlow(_Objective):
    name = "rectified_flow"
    solvers = ("euler", "heun", "midpoint")
    default_solver = "euler"

    predictions = ("velocity", "sample")
    # The sample parameterisation's velocity error is the sample error over t; in training t is clipped to
    # this (as JiT clips it), so that a rare near-clean draw cannot dominate a batch's loss.
    min_loss_divisor = 0.05

    def __init__(self, time_sampling: str = "logit_normal", time_location: float = 0.0,
                 prediction: str = "velocity") -> None:
        if prediction not in self.predictions:
            raise FluxbenchError(f"unknown prediction {prediction!r}; expected one of {list(self.predictions)}")
        if time_sampling not in ("logit_normal", "uniform"):
            raise FluxbenchError(f"unknown time sampling {time_sampling!r}; expected 'logit_normal' or 'uniform'")
        if not (isinstance(time_location, (int, float)) and math.isfinite(time_location)):
            raise FluxbenchError(f"time_location must be a finite number, got {time_location!r}")
        self.time_sampling, self.time_location = time_sampling, float(time_location)
        self.prediction = prediction

    def options(self) -> dict:
        """The constructor arguments, so `get_objective(name, **options())` rebuilds this objective."""
        options = {"time_sampling": self.time_sampling}
        # omitted at their defaults, so older model folders keep their exact options
        if self.time_location:
            options["time_location"] = self.time_location
        if self.prediction != "velocity":
            options["prediction"] = self.prediction
        return options

    def velocity(self, output: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The velocity the network's output stands for. With `prediction="sample"` the network outputs the
        clean sample x (Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise"): z_t =
        (1 - t) x + t eps gives v = (z_t - x) / t. A small network then outputs the clean log-mel, a smooth
        function of the caption, instead of carrying the noise through its residual stream."""
        if self.prediction == "velocity":
            return output
        return (z - output.to(z.dtype)) / _batch_view(t.to(z.dtype), z)

    def sample_times(self, batch: int, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> torch.Tensor:
        if self.time_sampling == "logit_normal":
            return torch.sigmoid(torch.randn(batch, generator=generator, device=device) + self.time_location)
        return torch.rand(batch, generator=generator, device=device)

    def training_loss(self, model: Callable, x0: torch.Tensor, cond: dict, generator: torch.Generator | None = None,
                      t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over the batch of each sample's mean squared velocity error. `t` / `noise` override the draws."""
        if t is None:
            t = self.sample_times(x0.shape[0], x0.device, generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        t = t.to(x0.dtype)
        zt = (1 - _batch_view(t, x0)) * x0 + _batch_view(t, x0) * noise
        output = _predict(model, zt, t, cond)
        if self.prediction == "velocity":
            return _per_sample_mse(noise - x0, output).mean()
        # ((z_t - x_hat) - (z_t - x)) / t: the velocity error of a sample prediction
        return (_per_sample_mse(x0, output) / t.clamp(min=self.min_loss_divisor) ** 2).mean()

    def trajectory(self, model: Callable, noise: torch.Tensor, cond: dict, uncond: dict | None = None,
                   guidance: float = 3.5, steps: int = 50, solver: str | None = None,
                   progress: bool = False, batched_guidance: bool = True,
                   x0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> Trajectory:
        solver = solver or self.default_solver
        if solver not in self.solvers:
            raise FluxbenchError(f"rectified flow has no solver {solver!r}; choose one of {list(self.solvers)}")
        if steps < 1:
            raise FluxbenchError(f"sampling needs at least 1 step, got {steps}")
        batch = noise.shape[0]

        def velocity_at(state: torch.Tensor, time: float) -> torch.Tensor:
            times = torch.full((batch,), time, device=noise.device, dtype=noise.dtype)
            # guidance mixes outputs; the velocity is affine in a sample prediction, so mixing either is the same
            velocity = self.velocity(_guided(model, state, times, cond, uncond, guidance, batched_guidance),
                                     state, times)
            if x0_bounds is None or time == 0:
                return velocity
            # z_t = (1 - t) x0 + t noise and v = noise - x0 give x0 = z_t - t v; the velocity that lands on
            # the clamped estimate is (z_t - x0) / t.
            return (state - within_bounds(state - time * velocity, x0_bounds)) / time
        z = noise
        record = Trajectory(states=[z])
        dt = 1.0 / steps
        for index in _steps_progress(steps, progress, "sampling"):
            i = steps - index  # i = N..1, t = i/N, as in the official loop
            t_now, t_next = i / steps, (i - 1) / steps
            velocity = velocity_at(z, t_now)
            # A sample prediction's velocity (z - x) / t is undefined at t = 0, so its last step is Euler's
            # (EDM's Heun ends the same way).
            if solver == "heun" and (t_next > 0 or self.prediction == "velocity"):
                predicted = z - dt * velocity
                velocity = 0.5 * (velocity + velocity_at(predicted, t_next))
            elif solver == "midpoint":
                velocity = velocity_at(z - 0.5 * dt * velocity, 0.5 * (t_now + t_next))
            record.x0_estimates.append(z - t_now * velocity)
            z = z - dt * velocity
            record.states.append(z)
        return record


class DDPM(_Objective):
    """Epsilon prediction on a discrete linear beta schedule; deterministic DDIM sampling (eta = 0)."""

    name = "ddpm"
    # DDIM with eta = 0 is the Euler step of the probability-flow ODE in the variables (x / sqrt(abar),
    # sqrt((1 - abar) / abar)), so "euler" names the same sampler here.
    solvers = ("ddim", "euler")
    default_solver = "ddim"

    def __init__(self, train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if train_steps < 2 or not 0 < beta_start < beta_end < 1:
            raise FluxbenchError(
                f"DDPM schedule needs train_steps >= 2 and 0 < beta_start < beta_end < 1, got "
                f"{train_steps}, {beta_start}, {beta_end}")
        self.train_steps, self.beta_start, self.beta_end = train_steps, beta_start, beta_end
        betas = torch.linspace(beta_start, beta_end, train_steps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # float64: the tail reaches ~4e-5

    def options(self) -> dict:
        return {"train_steps": self.train_steps, "beta_start": self.beta_start, "beta_end": self.beta_end}

    def model_time(self, steps: torch.Tensor) -> torch.Tensor:
        return steps.to(torch.float64) / self.train_steps

    def training_loss(self, model: Callable, x0: torch.Tensor, cond: dict, generator: torch.Generator | None = None,
                      t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over the batch of each sample's mean squared noise error. `t` here is the integer step k."""
        batch = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.train_steps, (batch,), generator=generator, device=x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        abar = self.alphas_cumprod.to(x0.device)[t.long()]
        signal = _batch_view(abar.sqrt(), x0).to(x0.dtype)
        sigma = _batch_view((1 - abar).sqrt(), x0).to(x0.dtype)
        predicted = _predict(model, signal * x0 + sigma * noise, self.model_time(t).to(x0.dtype), cond)
        return _per_sample_mse(noise, predicted).mean()

    def timesteps(self, steps: int) -> list[int]:
        """`steps` discrete steps from T-1 down to 0, evenly spaced (both ends included)."""
        if not 1 <= steps <= self.train_steps:
            raise FluxbenchError(f"DDIM steps must be in [1, {self.train_steps}], got {steps}")
        if steps == 1:
            return [self.train_steps - 1]
        spacing = (self.train_steps - 1) / (steps - 1)
        return [round(self.train_steps - 1 - j * spacing) for j in range(steps)]

    def trajectory(self, model: Callable, noise: torch.Tensor, cond: dict, uncond: dict | None = None,
                   guidance: float = 3.5, steps: int = 50, solver: str | None = None,
                   progress: bool = False, batched_guidance: bool = True,
                   x0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> Trajectory:
        solver = solver or self.default_solver
        if solver not in self.solvers:
            raise FluxbenchError(f"DDPM has no solver {solver!r}; choose one of {list(self.solvers)}")
        schedule = self.timesteps(steps)
        batch = noise.shape[0]
        z = noise
        record = Trajectory(states=[z])
        for index in _steps_progress(len(schedule), progress, "sampling"):
            k = schedule[index]
            abar = float(self.alphas_cumprod[k])
            abar_next = float(self.alphas_cumprod[schedule[index + 1]]) if index + 1 < len(schedule) else 1.0
            time = self.model_time(torch.full((batch,), k)).to(device=noise.device, dtype=noise.dtype)
            epsilon = _guided(model, z, time, cond, uncond, guidance, batched_guidance).to(z.dtype)
            x0 = (z - math.sqrt(1 - abar) * epsilon) / math.sqrt(abar)
            if x0_bounds is not None:  # the noise estimate consistent with the clamped clean estimate
                x0 = within_bounds(x0, x0_bounds)
                epsilon = (z - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
            record.x0_estimates.append(x0)
            z = math.sqrt(abar_next) * x0 + math.sqrt(1 - abar_next) * epsilon
            record.states.append(z)
        return record


OBJECTIVES = {"rectified_flow": RectifiedFlow, "ddpm": DDPM}


def get_objective(name: str, **options) -> RectifiedFlow | DDPM:
    """"rectified_flow" (options: time_sampling, time_location, prediction) or "ddpm" (options: train_steps,
    beta_start, beta_end)."""
    if name not in OBJECTIVES:
        raise FluxbenchError(f"unknown objective {name!r}; expected one of {list(OBJECTIVES)}")
    return OBJECTIVES[name](**options)
