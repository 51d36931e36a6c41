"""Flow objectives and samplers: the official rectified-flow rule, the golden sampler record, DDPM/DDIM."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fluxbench import FluxbenchError
from fluxbench.models.fluxmusic.flow import DDPM, RectifiedFlow, get_objective

COND = {"img_ids": None, "txt": None, "txt_ids": None, "y": None}


class GaussianVelocity:
    """Exact rectified-flow velocity for data ~ N(mu, s^2) per coordinate (the ideal network).

    z_t = (1-t) x + t eps has mean (1-t) mu and variance (1-t)^2 s^2 + t^2; E[eps - x | z_t] follows by
    Gaussian conditioning. Its ODE maps noise eps at t = 1 to mu + s eps at t = 0.
    """

    def __init__(self, mu: float, s: float) -> None:
        self.mu, self.s, self.calls = mu, s, 0

    def __call__(self, z, img_ids, txt, txt_ids, t, y):
        self.calls += 1
        t = t.to(torch.float64).view(-1, *([1] * (z.ndim - 1)))
        variance = (1 - t) ** 2 * self.s**2 + t**2
        covariance = t - (1 - t) * self.s**2
        return -self.mu + covariance / variance * (z - (1 - t) * self.mu)


class GaussianEpsilon:
    """Exact noise predictor for data ~ N(mu, s^2) under a DDPM schedule (model time = k / T)."""

    def __init__(self, ddpm: DDPM, mu: float, s: float) -> None:
        self.ddpm, self.mu, self.s = ddpm, mu, s

    def __call__(self, z, img_ids, txt, txt_ids, t, y):
        k = torch.round(t.to(torch.float64) * self.ddpm.train_steps).long()
        abar = self.ddpm.alphas_cumprod[k].view(-1, *([1] * (z.ndim - 1)))
        return (1 - abar).sqrt() * (z - abar.sqrt() * self.mu) / (abar * self.s**2 + 1 - abar)


def _noise(seed: int = 0, shape=(3, 4, 5)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- rectified flow: training rule ------------------------------------------------------------------
def test_rf_loss_feeds_the_interpolant_and_targets_noise_minus_data():
    x0, noise = _noise(1), _noise(2)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    seen = {}

    def spy(z, img_ids, txt, txt_ids, tt, y):
        seen["z"], seen["t"] = z, tt
        return torch.zeros_like(z)

    loss = RectifiedFlow().training_loss(spy, x0, COND, t=t, noise=noise)
    torch.testing.assert_close(seen["z"][0], x0[0])  # t = 0 is data
    torch.testing.assert_close(seen["z"][2], noise[2])  # t = 1 is noise
    torch.testing.assert_close(seen["z"][1], 0.7 * x0[1] + 0.3 * noise[1])
    torch.testing.assert_close(seen["t"], t)
    # Zero prediction: per-sample mean of (eps - x)^2, then the batch mean.
    expected = sum(((noise[i] - x0[i]) ** 2).mean() for i in range(3)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)

    perfect = lambda z, *a: noise - x0  # noqa: E731
    assert RectifiedFlow().training_loss(perfect, x0, COND, t=t, noise=noise).item() == 0.0


@pytest.mark.parametrize("sampling", ["logit_normal", "uniform"])
def test_rf_time_sampling_distribution(sampling):
    t = RectifiedFlow(sampling).sample_times(20000, generator=torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    if sampling == "logit_normal":  # sigmoid(N(0, 1)): the logit is standard normal
        logit = torch.log(t / (1 - t))
        assert abs(logit.mean()) < 0.03 and abs(logit.std() - 1) < 0.03
    else:
        assert abs(t.mean() - 0.5) < 0.01 and abs(t.var() - 1 / 12) < 0.003


def test_rf_loss_is_reproducible_from_a_generator():
    x0 = _noise(3)
    model = GaussianVelocity(0.0, 1.0)
    first = RectifiedFlow().training_loss(model, x0, COND, generator=torch.Generator().manual_seed(7))
    second = RectifiedFlow().training_loss(model, x0, COND, generator=torch.Generator().manual_seed(7))
    assert first.item() == second.item()


# ---- rectified flow: samplers ------------------------------------------------------------------------
def test_rf_euler_follows_the_official_loop():
    noise = _noise(4)
    calls = []

    def model(z, img_ids, txt, txt_ids, t, y):
        calls.append(t.clone())
        return 0.5 * z + t.view(-1, 1, 1)

    states = RectifiedFlow().sample(model, noise, COND, steps=4, record=True)
    assert len(states) == 5 and states[0] is noise
    assert [c[0].item() for c in calls] == [1.0, 0.75, 0.5, 0.25]
    z = noise
    for i in range(4, 0, -1):
        z = z - (0.5 * z + i / 4) / 4
    torch.testing.assert_close(states[-1], z)


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_rf_solvers_converge_to_the_exact_gaussian_map_at_their_order(solver, order):
    mu, s = 0.7, 0.4
    noise = _noise(5)
    exact = mu + s * noise
    errors = []
    for steps in (8, 16, 32):
        final = RectifiedFlow().sample(GaussianVelocity(mu, s), noise, COND, steps=steps, solver=solver)
        errors.append((final - exact).abs().max().item())
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert errors[-1] < (0.06 if order == 1 else 2e-3)
    # At least the solver's order (midpoint happens to do better on this linear field).
    assert all(rate > order - 0.3 for rate in rates), (errors, rates)


@pytest.mark.parametrize("batched", [True, False])
def test_rf_guidance_mixes_conditional_and_unconditional(batched):
    noise = _noise(6)
    cond = dict(COND, y=torch.ones(3, 1))  # the model predicts 1 for conditional rows, 3 for unconditional ones
    uncond = dict(COND, y=torch.zeros(1, 1))  # a batch of one serves every row

    def model(z, img_ids, txt, txt_ids, t, y):
        assert z.shape[0] == t.shape[0]
        return torch.where(y[:, :, None] > 0, 1.0, 3.0).to(z.dtype).expand_as(z)

    one_step = lambda g, u: RectifiedFlow().sample(model, noise, cond, u, guidance=g, steps=1,  # noqa: E731
                                                   batched_guidance=batched)
    torch.testing.assert_close(one_step(3.5, uncond), noise - (3.0 + 3.5 * (1.0 - 3.0)))
    torch.testing.assert_close(one_step(3.5, None), noise - 1.0)
    torch.testing.assert_close(one_step(1.0, uncond), noise - 1.0)


def test_solver_and_argument_errors_are_one_line():
    with pytest.raises(FluxbenchError, match="no solver 'rk4'"):
        RectifiedFlow().sample(GaussianVelocity(0, 1), _noise(), COND, steps=2, solver="rk4")
    with pytest.raises(FluxbenchError, match="lacks"):
        RectifiedFlow().sample(GaussianVelocity(0, 1), _noise(), {"txt": None}, steps=2)
    with pytest.raises(FluxbenchError, match="unknown objective"):
        get_objective("score_matching")
    with pytest.raises(FluxbenchError, match="time sampling"):
        RectifiedFlow("beta")
    with pytest.raises(FluxbenchError, match="DDIM steps"):
        DDPM().timesteps(0)


# ---- DDPM / DDIM ----------------------------------------------------------------------------------------
def test_ddpm_linear_schedule_matches_ho_et_al():
    ddpm = DDPM()
    betas = 1 - ddpm.alphas_cumprod[1:] / ddpm.alphas_cumprod[:-1]
    assert ddpm.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-9)
    assert betas[498].item() == pytest.approx(1e-4 + 499 * (0.02 - 1e-4) / 999, rel=1e-9)
    # Known value of the standard schedule: alpha-bar at the last step is about 4.04e-5.
    assert ddpm.alphas_cumprod[-1].item() == pytest.approx(4.036e-5, rel=1e-3)


def test_ddpm_loss_noises_at_step_k_and_targets_epsilon():
    ddpm = DDPM()
    x0, noise = _noise(7), _noise(8)
    k = torch.tensor([0, 500, 999])
    seen = {}

    def spy(z, img_ids, txt, txt_ids, t, y):
        seen["z"], seen["t"] = z, t
        return torch.zeros_like(z)

    loss = ddpm.training_loss(spy, x0, COND, t=k, noise=noise)
    abar = ddpm.alphas_cumprod[500]
    torch.testing.assert_close(seen["z"][1], abar.sqrt() * x0[1] + (1 - abar).sqrt() * noise[1])
    torch.testing.assert_close(seen["t"], torch.tensor([0.0, 0.5, 0.999], dtype=torch.float64))
    assert loss.item() == pytest.approx((noise**2).mean(dim=(1, 2)).mean().item(), rel=1e-12)


def test_ddim_timesteps_cover_both_ends():
    assert DDPM().timesteps(4) == [999, 666, 333, 0]
    assert DDPM().timesteps(1000) == list(range(999, -1, -1))


def test_ddim_with_the_exact_epsilon_reaches_the_gaussian_map():
    ddpm = DDPM()
    mu, s = 0.7, 0.4
    noise = _noise(9)
    errors = {steps: (ddpm.sample(GaussianEpsilon(ddpm, mu, s), noise, COND, steps=steps) - (mu + s * noise))
              .abs().max().item() for steps in (10, 50, 200, 1000)}
    assert errors[10] > errors[50] > errors[200] > errors[1000]
    # The chain starts at k = 999 where the marginal is N(0.0044, 0.99997), not exactly N(0, 1): a small floor.
    assert errors[1000] < 0.01 and errors[200] < 0.025
    coarse = ddpm.sample(GaussianEpsilon(ddpm, mu, s), noise, COND, steps=10)
    # "euler" names the same deterministic sampler.
    torch.testing.assert_close(ddpm.sample(GaussianEpsilon(ddpm, mu, s), noise, COND, steps=10, solver="euler"),
                               coarse)


def test_ddim_guidance_and_record():
    ddpm = DDPM()
    noise = _noise(10)
    states = ddpm.sample(lambda z, *a: torch.zeros_like(z), noise, COND, steps=5, record=True)
    assert len(states) == 6
    # A zero noise prediction means x0 = z / sqrt(abar): the chain only rescales.
    torch.testing.assert_close(states[-1], noise / math.sqrt(ddpm.alphas_cumprod[999].item()))


# ---- golden replay of the official sampler (set A) ----------------------------------------------------
@pytest.fixture(scope="module")
def golden(golden_dir):
    from safetensors.torch import load_file

    from fluxbench.models.fluxmusic import FluxMusicConfig, FluxMusicTransformer

    tensors = load_file(str(golden_dir / "flux_tiny_a.safetensors"))
    meta = json.loads((golden_dir / "flux_tiny_a.json").read_text())
    model = FluxMusicTransformer(FluxMusicConfig(**meta["config"]))
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, tensors, meta


@pytest.mark.parametrize("batched", [True, False], ids=["guidance-in-one-batch", "guidance-sequential"])
def test_golden_euler_sampler_record(golden, batched):
    model, g, meta = golden
    cond = {"img_ids": g["input.img_ids"], "txt": g["input.txt"], "txt_ids": g["input.txt_ids"], "y": g["input.y"]}
    uncond = dict(cond, txt=g["sampler.null_txt"], y=g["sampler.null_y"])
    calls = []
    counted = lambda *args: calls.append(args[0].shape[0]) or model(*args)  # noqa: E731
    with torch.no_grad():
        run = RectifiedFlow().trajectory(counted, g["sampler.z0"], cond, uncond, guidance=meta["sampler"]["cfg"],
                                         steps=meta["sampler"]["steps"], batched_guidance=batched)
    batch, steps = g["sampler.z0"].shape[0], meta["sampler"]["steps"]
    assert calls == ([2 * batch] * steps if batched else [batch] * (2 * steps))
    states = torch.stack(run.states)
    assert states.shape == g["sampler.euler_steps"].shape
    torch.testing.assert_close(states, g["sampler.euler_steps"], atol=1e-4, rtol=0)
    torch.testing.assert_close(run.final, g["sampler.euler_final"], atol=1e-4, rtol=0)
    torch.testing.assert_close(run.x0_estimates[-1], g["sampler.xps_final"], atol=1e-4, rtol=0)


def test_logit_normal_location_moves_training_towards_high_noise_and_is_recorded():
    from fluxbench.models.fluxmusic.flow import RectifiedFlow, get_objective

    default, shifted = RectifiedFlow(), RectifiedFlow(time_location=1.0)
    t0 = default.sample_times(20000, generator=torch.Generator().manual_seed(0))
    t1 = shifted.sample_times(20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.logit(t1) - torch.logit(t0), torch.ones_like(t0), atol=1e-3, rtol=0)
    assert abs(float(t0.median()) - 0.5) < 0.02 and float(t1.median()) == pytest.approx(0.731, abs=0.02)
    assert default.options() == {"time_sampling": "logit_normal"}  # older folders' options, unchanged
    assert get_objective("rectified_flow", **shifted.options()).time_location == 1.0
    with pytest.raises(FluxbenchError, match="time_location must be a finite number"):
        RectifiedFlow(time_location=float("nan"))


# ---- rectified flow with a clean-sample network ----------------------------------------------------------
class GaussianSample(GaussianVelocity):
    """The ideal network of the sample parameterisation: E[x | z_t] = z_t - t E[eps - x | z_t]."""

    def __call__(self, z, img_ids, txt, txt_ids, t, y):
        velocity = super().__call__(z, img_ids, txt, txt_ids, t, y)
        return z - t.to(torch.float64).view(-1, *([1] * (z.ndim - 1))) * velocity


@pytest.mark.parametrize("solver", RectifiedFlow.solvers)
def test_sample_prediction_samples_the_same_flow_as_velocity_prediction(solver):
    mu, s = 0.7, 0.4
    noise = _noise(5)
    by_velocity = RectifiedFlow().sample(GaussianVelocity(mu, s), noise, COND, steps=16, solver=solver)
    by_sample = RectifiedFlow(prediction="sample").sample(GaussianSample(mu, s), noise, COND, steps=16,
                                                          solver=solver)
    if solver == "heun":  # its last step is Euler's, where the sample parameterisation has no velocity at t = 0
        euler = RectifiedFlow(prediction="sample").sample(GaussianSample(mu, s), noise, COND, steps=16)
        error, euler_error = ((run - (mu + s * noise)).abs().max() for run in (by_sample, euler))
        assert error < 0.02 and error < 0.5 * euler_error, (error, euler_error)
    else:
        torch.testing.assert_close(by_sample, by_velocity, atol=1e-12, rtol=0)
    # read as a velocity, the clean-sample output would be another field entirely
    misread = RectifiedFlow().sample(GaussianSample(mu, s), noise, COND, steps=16, solver=solver)
    assert (misread - by_velocity).abs().max() > 0.1


def test_sample_prediction_lands_on_the_prediction_at_the_last_euler_step():
    target = _noise(7)
    constant = lambda z, img_ids, txt, txt_ids, t, y: target.expand_as(z)  # noqa: E731
    for steps in (1, 3, 25):
        final = RectifiedFlow(prediction="sample").sample(constant, _noise(8), COND, steps=steps)
        torch.testing.assert_close(final, target, atol=1e-12, rtol=0)


def test_sample_prediction_loss_is_the_velocity_error_with_a_clipped_divisor():
    x0, noise, output = _noise(1), _noise(2), _noise(3)
    t = torch.tensor([0.01, 0.3, 0.9], dtype=torch.float64)
    zt = (1 - t.view(-1, 1, 1)) * x0 + t.view(-1, 1, 1) * noise
    flow = RectifiedFlow(prediction="sample")
    loss = flow.training_loss(lambda *args: output, x0, COND, t=t, noise=noise)
    divisor = t.clamp(min=flow.min_loss_divisor).view(-1, 1, 1)
    expected = ((((zt - output) - (zt - x0)) / divisor) ** 2).mean(dim=(1, 2)).mean()
    torch.testing.assert_close(loss, expected)
    # above the clip it is exactly the velocity error of the implied velocity
    high = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64)
    zt = (1 - high.view(-1, 1, 1)) * x0 + high.view(-1, 1, 1) * noise
    implied = flow.velocity(output, zt, high)
    torch.testing.assert_close(flow.training_loss(lambda *args: output, x0, COND, t=high, noise=noise),
                               ((implied - (noise - x0)) ** 2).mean(dim=(1, 2)).mean())
    # the ideal network has zero loss only at its own target: x, not noise - x
    assert flow.training_loss(lambda *args: x0, x0, COND, t=high, noise=noise).item() == 0.0
    assert RectifiedFlow().training_loss(lambda *args: x0, x0, COND, t=high, noise=noise).item() > 0.5


def test_sample_prediction_is_recorded_and_checked():
    flow = RectifiedFlow(time_location=1.0, prediction="sample")
    assert flow.options() == {"time_sampling": "logit_normal", "time_location": 1.0, "prediction": "sample"}
    assert get_objective("rectified_flow", **flow.options()).prediction == "sample"
    assert "prediction" not in RectifiedFlow().options()  # folders of the official rule keep their options
    with pytest.raises(FluxbenchError, match="unknown prediction 'noise'"):
        RectifiedFlow(prediction="noise")
