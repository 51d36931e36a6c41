"""Frechet kernel paths, bootstrap intervals, FAD-inf and input errors, checked against independent computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fluxbench import FluxbenchError
from fluxbench.protocols.metrics import clap_score, frechet_distance, inception_score, kl_divergence
from fluxbench.protocols.metrics.bootstrap import (bootstrap_frechet, bootstrap_frechet_to_stats, bootstrap_inception,
                                                   bootstrap_mean, frechet_inf, percentile_interval, rng_for)
from fluxbench.protocols.metrics.frechet import (GaussianStats, UnreliableEstimateWarning,
                                                 frechet_distance_weighted, frechet_to_reference,
                                                 reference_frechet_distance, trace_sqrt_product)
from fluxbench.protocols.metrics.inception import per_clip_inception_kl


def _gaussian_rows(rng, count, dim, spectrum_decay=1.0, shift=0.0):
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = np.exp(-spectrum_decay * np.linspace(0, 8, dim))  # condition number ~ e^16
    return (rng.standard_normal((count, dim)) * scales) @ rotation.T + shift


def _closed_form(mean_a, cov_a, mean_b, cov_b):
    """FD of two Gaussians through an explicit symmetric square root (independent of the library's paths)."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    diff = mean_a - mean_b
    return diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()


def _exact_trace_sqrt(a, b):
    """tr sqrt(S_a S_b) from the data: the singular values of Xa Xb^T (no square roots of round-off)."""
    centred_a, centred_b = a - a.mean(axis=0), b - b.mean(axis=0)
    singular = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False)
    return singular.sum() / np.sqrt((len(a) - 1) * (len(b) - 1))


def _exact_frechet(a, b):
    diff = a.mean(axis=0) - b.mean(axis=0)
    traces = np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False))
    return diff @ diff + traces - 2 * _exact_trace_sqrt(a, b)


def test_fast_path_matches_sqrtm_on_ill_conditioned_covariances():
    rng = np.random.default_rng(1)
    a, b = _gaussian_rows(rng, 400, 96), _gaussian_rows(rng, 300, 96, 0.8, 0.3)
    sa, sb = GaussianStats.of(a), GaussianStats.of(b)
    ours = frechet_distance(a, b)
    assert ours == pytest.approx(reference_frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov), rel=1e-6)
    assert ours == pytest.approx(_closed_form(sa.mean, sa.cov, sb.mean, sb.cov), rel=1e-9)


@pytest.mark.parametrize("dead", ["first", "second", "both"])
def test_singular_covariances_take_the_fallbacks_and_stay_exact(dead):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((200, 24)), rng.standard_normal((180, 24)) * 1.5 + 0.2
    if dead in ("first", "both"):
        a[:, :3] = 0.0  # dead ReLU units: S1 is singular, its Cholesky fails
    if dead in ("second", "both"):
        b[:, 5:7] = 1.0
    sa, sb = GaussianStats.of(a), GaussianStats.of(b)
    assert trace_sqrt_product(sa.cov, sb.cov) == pytest.approx(_exact_trace_sqrt(a, b), rel=1e-12)
    assert frechet_distance(a, b) == pytest.approx(_exact_frechet(a, b), rel=1e-10)


def test_rank_deficient_gram_route_matches_the_direct_formula_and_warns():
    rng = np.random.default_rng(3)
    few, many = rng.standard_normal((10, 40)), rng.standard_normal((500, 40))
    with pytest.warns(UnreliableEstimateWarning, match="10 rows in 40 dimensions"):
        value = frechet_distance(few, many)
    assert value == pytest.approx(_exact_frechet(few, many), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full-rank inputs never warn
        frechet_distance(many[:250], many[250:])


def test_weighted_rows_equal_explicitly_repeated_rows():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((60, 8)), rng.standard_normal((50, 8)) + 0.5
    weights = rng.integers(0, 4, 60).astype(float)
    repeated = np.repeat(a, weights.astype(int), axis=0)
    assert frechet_distance_weighted(a, weights, b, None) == pytest.approx(frechet_distance(repeated, b), rel=1e-10)
    reference = GaussianStats.of(b)
    assert frechet_to_reference(a, weights, reference) == pytest.approx(frechet_distance(repeated, b), rel=1e-10)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(5), "2-D"), (np.zeros((1, 4)), "at least 2"), (np.full((3, 4), np.nan), "NaN"),
])
def test_frechet_rejects_bad_embeddings(bad, message):
    with pytest.raises(FluxbenchError, match=message):
        frechet_distance(bad, np.zeros((3, 4)))


def test_frechet_rejects_mismatched_dimensions():
    with pytest.raises(FluxbenchError, match="differ in dimension: 4 vs 5"):
        frechet_distance(np.ones((3, 4)), np.ones((3, 5)))


def test_kl_without_any_shared_id_is_a_clear_error():
    with pytest.raises(FluxbenchError, match="no id is shared"):
        kl_divergence({"a.wav": np.zeros(5)}, {"b.wav": np.zeros(5)})


def test_inception_needs_a_row_per_split_and_clap_rejects_zero_vectors():
    with pytest.raises(FluxbenchError, match="at least 10 clips"):
        inception_score(np.zeros((9, 4)))
    with pytest.raises(FluxbenchError, match="row 1 has a zero-length"):
        clap_score(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))


def test_per_clip_inception_kl_averages_to_the_log_of_the_single_split_score():
    logits = np.random.default_rng(5).standard_normal((40, 7)) * 3
    whole, _ = inception_score(logits, splits=1, shuffle=False)
    assert np.exp(per_clip_inception_kl(logits).mean()) == pytest.approx(whole, rel=1e-12)


def test_percentile_interval_against_numpy():
    values = np.random.default_rng(6).standard_normal(1001)
    interval = percentile_interval(values)
    assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    assert interval.replicates == 1001


def test_bootstrap_is_seeded_per_metric_and_covers_the_estimate():
    rng = np.random.default_rng(7)
    gen, ref = rng.standard_normal((120, 6)) + 0.4, rng.standard_normal((150, 6))
    first = bootstrap_frechet(gen, ref, 50, rng_for(0, "fd"))
    assert bootstrap_frechet(gen, ref, 50, rng_for(0, "fd")) == first
    assert bootstrap_frechet(gen, ref, 50, rng_for(1, "fd")) != first
    assert first.low < frechet_distance(gen, ref) < first.high
    per_pair = rng.exponential(size=200)
    interval = bootstrap_mean(per_pair, 400, rng_for(0, "kl"))
    # the bootstrap std of a mean approximates the standard error
    assert interval.std == pytest.approx(per_pair.std(ddof=1) / np.sqrt(per_pair.size), rel=0.2)
    logits = rng.standard_normal((60, 11)) * 2
    interval = bootstrap_inception(logits, 30, rng_for(0, "is"), splits=3)
    assert interval.low <= inception_score(logits, splits=3)[0] * 1.2 and interval.high >= interval.low


def test_clip_level_bootstrap_keeps_frames_of_a_clip_together():
    rng = np.random.default_rng(8)
    # 12 clips x 10 frames: a shared per-clip offset makes frames within a clip strongly correlated
    offsets = np.repeat(rng.standard_normal((12, 4)) * 3, 10, axis=0)
    gen = offsets + rng.standard_normal((120, 4)) * 0.1
    ref = rng.standard_normal((200, 4)) * 3
    clip_of_row = np.repeat(np.arange(12), 10)
    clustered = bootstrap_frechet(gen, ref, 60, rng_for(0, "fad"), gen_clip_of_row=clip_of_row)
    naive = bootstrap_frechet(gen, ref, 60, rng_for(0, "fad"))
    assert clustered.std > 1.5 * naive.std  # frames are not independent samples


def test_two_stage_eigenvalues_agree_with_mrrr_and_either_path_gives_the_same_distance(monkeypatch):
    from scipy.linalg import lapack

    from fluxbench.protocols.metrics import frechet

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((400, 96)), rng.standard_normal((300, 96)) @ rng.standard_normal((96, 96)) * 0.3
    scatter = a.T @ a
    two_stage = frechet.two_stage_eigenvalues(np.tril(scatter))  # the lower triangle is all it reads
    if two_stage is None:
        pytest.skip("this scipy build does not export LAPACK's dsyev_2stage")
    mrrr = lapack.dsyevr(scatter, compute_v=0, lower=1)[0]
    np.testing.assert_allclose(np.sort(two_stage), np.sort(mrrr), rtol=0, atol=1e-12 * mrrr.max())
    fast = frechet.frechet_distance(a, b)
    monkeypatch.setattr(frechet, "_two_stage_routine", lambda: None)  # as on a build without the routine
    assert frechet.frechet_distance(a, b) == pytest.approx(fast, rel=1e-12)
    assert frechet.frechet_distance(a, b, method="sqrtm") == pytest.approx(fast, rel=1e-9)


def test_frechet_inf_removes_the_small_sample_bias():
    rng = np.random.default_rng(9)
    dim = 16
    reference = GaussianStats(np.zeros(dim), np.eye(dim), 10**9)  # known population statistics
    gen = rng.standard_normal((4000, dim)) * 1.2
    truth = dim * (1.2 - 1.0) ** 2  # FD between N(0, 1.44 I) and N(0, I)
    result = frechet_inf(gen, reference, rng_for(0, "fad_inf"), min_size=100)
    finite_small = frechet_to_reference(gen[:100], None, reference)
    assert abs(result.value - truth) < abs(finite_small - truth)
    assert result.slope > 0 and result.r2 > 0.5
    assert result.sizes[0] == 100 and result.sizes[-1] == 4000
    assert frechet_inf(gen, reference, rng_for(0, "fad_inf"), min_size=100) == result


# ---- bootstrap intervals equal the per-resample formula ------------------------------------------------
def _weighted_frechet_by_definition(gen, gen_weights, ref, ref_weights):
    """FD of count-weighted rows written out: weighted means, unbiased weighted covariances, and
    tr sqrt(S_g S_r) as the singular values of Z_g Z_r^T (Z: centred rows times sqrt(weight))."""
    means, scaled, traces = [], [], 0.0
    for rows, weights in ((gen, gen_weights), (ref, ref_weights)):
        total = weights.sum()
        mean = weights @ rows / total
        z = (rows - mean) * np.sqrt(weights / (total - 1))[:, None]
        means.append(mean)
        scaled.append(z)
        traces += np.sum(z * z)
    diff = means[0] - means[1]
    return diff @ diff + traces - 2 * np.linalg.svd(scaled[0] @ scaled[1].T, compute_uv=False).sum()


def _intervals_by_definition(gen, ref, replicates, rng, gen_clip_of_row=None, ref_clip_of_row=None):
    values = []
    for _ in range(replicates):
        weights = []
        for rows, owner in ((gen, gen_clip_of_row), (ref, ref_clip_of_row)):
            clips = rows.shape[0] if owner is None else int(owner.max()) + 1
            counts = np.bincount(rng.integers(0, clips, clips), minlength=clips).astype(np.float64)
            weights.append(counts if owner is None else counts[owner])
        values.append(_weighted_frechet_by_definition(gen, weights[0], ref, weights[1]))
    return np.percentile(values, [2.5, 97.5]), np.std(values, ddof=1)


@pytest.mark.parametrize("case", ["clips", "frames", "fewer rows than dims"])
def test_bootstrap_frechet_gives_the_intervals_of_the_per_resample_formula(case):
    rng = np.random.default_rng(11)
    if case == "clips":
        gen, ref, owner_gen, owner_ref = _gaussian_rows(rng, 300, 24, 0.3, 0.2), _gaussian_rows(rng, 260, 24, 0.4), None, None
    elif case == "frames":  # 40 and 30 clips of 10 frames; frames of a clip are drawn together
        gen, ref = _gaussian_rows(rng, 400, 16, 0.3, 1.5), _gaussian_rows(rng, 300, 16, 0.2, 1.0)
        owner_gen, owner_ref = np.repeat(np.arange(40), 10), np.repeat(np.arange(30), 10)
    else:
        gen, ref, owner_gen, owner_ref = rng.standard_normal((20, 32)) + 0.5, rng.standard_normal((40, 32)), None, None
    (low, high), std = _intervals_by_definition(gen, ref, 40, rng_for(3, "fd"), owner_gen, owner_ref)
    interval = bootstrap_frechet(gen, ref, 40, rng_for(3, "fd"), owner_gen, owner_ref)
    assert (interval.low, interval.high, interval.std) == pytest.approx((low, high, std), rel=1e-10)


def test_bootstrap_inception_gives_the_intervals_of_resampled_scores():
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((137, 23)) * 3
    draws = rng_for(5, "is")
    values = [inception_score(logits[draws.integers(0, 137, 137)], splits=7)[0] for _ in range(30)]
    interval = bootstrap_inception(logits, 30, rng_for(5, "is"), splits=7)
    expected = (*np.percentile(values, [2.5, 97.5]), np.std(values, ddof=1))
    assert (interval.low, interval.high, interval.std) == pytest.approx(expected, rel=1e-12)
    draws = rng_for(6, "is")
    unshuffled = [inception_score(logits[draws.integers(0, 137, 137)], splits=7, shuffle=False)[0] for _ in range(5)]
    interval = bootstrap_inception(logits, 5, rng_for(6, "is"), splits=7, shuffle=False)
    assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(unshuffled, [2.5, 97.5])), rel=1e-12)


# ---- first-order (calibrated) Frechet replicates at scale -------------------------------------------------
def test_transport_maps_and_clip_sums_give_the_exact_moments_of_every_resample():
    from fluxbench.protocols.metrics.frechet_resampling import CentredRows, ClipSums, transport_maps

    rng = np.random.default_rng(21)
    gen, ref = _gaussian_rows(rng, 120, 8, 0.3, 0.5), _gaussian_rows(rng, 100, 8, 0.2)
    sa, sb = GaussianStats.of(gen), GaussianStats.of(ref)
    maps = transport_maps(sa.cov, sb.cov)
    to_b, to_a = maps.a_to_b.numpy(), maps.b_to_a.numpy()
    np.testing.assert_allclose(to_b @ sa.cov @ to_b, sb.cov, rtol=1e-9, atol=1e-12)  # T_ab carries S_a onto S_b
    np.testing.assert_allclose(to_b @ to_a, np.eye(8), atol=1e-9)
    assert maps.trace == pytest.approx(_exact_trace_sqrt(gen, ref), rel=1e-12)
    assert np.trace(to_b @ sa.cov) == pytest.approx(maps.trace, rel=1e-12)
    owner = np.repeat(np.arange(30), 4)  # 30 clips of 4 frames
    counts = np.stack([np.bincount(rng.integers(0, 30, 30), minlength=30) for _ in range(3)]).astype(float)
    mean, trace, transported = ClipSums(CentredRows(gen), owner, maps.a_to_b).moments(counts)
    for index, row_counts in enumerate(counts):
        weighted = GaussianStats.of(gen, row_counts[owner])
        np.testing.assert_allclose(mean[index], weighted.mean, rtol=1e-12, atol=1e-12)
        assert trace[index] == pytest.approx(np.trace(weighted.cov), rel=1e-12)
        assert transported[index] == pytest.approx(np.trace(to_b @ weighted.cov), rel=1e-12)


def test_bootstrap_to_reference_stats_gives_the_intervals_of_the_per_resample_formula():
    rng = np.random.default_rng(22)
    gen, ref = _gaussian_rows(rng, 200, 12, 0.3, 0.4), _gaussian_rows(rng, 300, 12, 0.2)
    reference = GaussianStats.of(ref)
    draws = rng_for(5, "fad")
    values = [frechet_to_reference(gen, np.bincount(draws.integers(0, 200, 200), minlength=200).astype(float),
                                   reference, warn=False) for _ in range(60)]
    interval = bootstrap_frechet_to_stats(gen, reference, 60, rng_for(5, "fad"))
    assert (interval.low, interval.high, interval.std) == pytest.approx(
        (*np.percentile(values, [2.5, 97.5]), np.std(values, ddof=1)), rel=1e-10)


def test_calibrated_first_order_intervals_cover_a_known_frechet_distance(monkeypatch):
    from fluxbench.protocols.metrics import bootstrap

    rng = np.random.default_rng(23)
    dim, rows, trials = 6, 300, 60
    root_a, root_b = rng.standard_normal((dim, dim)) / 2, rng.standard_normal((dim, dim)) / 2
    mean_b = np.full(dim, 0.25)
    truth = _closed_form(np.zeros(dim), root_a @ root_a.T, mean_b, root_b @ root_b.T)
    covered = {"exact": 0, "first order": 0}
    widths = {"exact": [], "first order": []}
    for trial in range(trials):
        gen = rng.standard_normal((rows, dim)) @ root_a.T
        ref = rng.standard_normal((rows, dim)) @ root_b.T + mean_b
        for label, budget in (("exact", 1e30), ("first order", 0.0)):
            monkeypatch.setattr(bootstrap, "EXACT_FLOP_BUDGET", budget)
            interval = bootstrap_frechet(gen, ref, 200, rng_for(trial, "fd"))
            covered[label] += interval.low <= truth <= interval.high
            widths[label].append(interval.high - interval.low)
    # 95 % intervals: 60 trials put the count of covering ones in [52, 60] with probability ~0.98
    assert covered["first order"] >= 52, covered
    assert abs(covered["first order"] - covered["exact"]) <= 4, covered
    assert np.median(np.array(widths["first order"]) / widths["exact"]) == pytest.approx(1.0, abs=0.1)


def test_intervals_switch_to_calibrated_first_order_only_beyond_the_budget():
    from fluxbench.protocols.metrics.bootstrap import CALIBRATION_RESAMPLES, exact_resample_count

    assert exact_resample_count(1000, 300 + 260, 24) == 1000  # every test-sized run stays exact
    assert exact_resample_count(1000, 2 * 5521, 2048) == CALIBRATION_RESAMPLES  # MusicCaps PANNs FD
    assert exact_resample_count(1000, 2 * 55210, 128) == CALIBRATION_RESAMPLES  # MusicCaps VGGish FAD frames
    assert exact_resample_count(10, 2 * 5521, 2048) == 10


def test_calibrated_intervals_say_so_and_the_exact_switch_restores_every_resample(monkeypatch):
    from fluxbench.protocols.metrics import bootstrap as bootstrap_module
    from fluxbench.protocols.metrics.compute import entry

    rng = np.random.default_rng(3)
    gen, ref = rng.standard_normal((40, 6)), rng.standard_normal((40, 6)) + 0.3
    monkeypatch.setattr(bootstrap_module, "EXACT_FLOP_BUDGET", 0.0)  # this small run now counts as large
    calibrated = bootstrap_module.bootstrap_frechet(gen, ref, 60, np.random.default_rng(0))
    assert calibrated.exact == bootstrap_module.CALIBRATION_RESAMPLES and calibrated.replicates == 60
    assert entry(1.0, "b", 40, calibrated)["bootstrap_exact_resamples"] == bootstrap_module.CALIBRATION_RESAMPLES
    monkeypatch.setenv(bootstrap_module.EXACT_ENV, "1")
    exact = bootstrap_module.bootstrap_frechet(gen, ref, 60, np.random.default_rng(0))
    monkeypatch.setattr(bootstrap_module, "EXACT_FLOP_BUDGET", 1e30)
    monkeypatch.delenv(bootstrap_module.EXACT_ENV)
    reference = bootstrap_module.bootstrap_frechet(gen, ref, 60, np.random.default_rng(0))
    assert exact.exact is None and "bootstrap_exact_resamples" not in entry(1.0, "b", 40, exact)
    assert (exact.low, exact.high, exact.std) == (reference.low, reference.high, reference.std)
    assert (calibrated.low, calibrated.high) != (exact.low, exact.high)
