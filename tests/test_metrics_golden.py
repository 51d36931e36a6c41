"""Golden replay of set A: every expected value produced by the reference libraries, at the stated tolerances."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fluxbench.protocols.metrics import (GaussianStats, clap_cosines, clap_score, frechet_distance,
                                         frechet_distance_from_stats, inception_score, kl_divergence)
from fluxbench.protocols.metrics.frechet import UnreliableEstimateWarning
from fluxbench.protocols.metrics.inception import inception_split_scores

@pytest.fixture(scope="module")
def arrays(golden_dir):
    # The shipped copy splits the one exported file into parts under 5 MB; an override folder may hold either.
    merged = {}
    for part in sorted(golden_dir.glob("metrics_a*.npz")):
        with np.load(part) as data:
            merged.update({name: data[name] for name in data.files})
    return merged


@pytest.fixture(scope="module")
def expected(golden_dir):
    return json.loads((golden_dir / "metrics_a.json").read_text())["expected"]


FRECHET_CASES = {"fd128": ("fd128_x1", "fd128_x2"), "fdsing": ("fdsing_x1", "fdsing_x2"),
                 "fdident_fullrank": ("fd128_x1", "fd128_x1"), "fdident_singular": ("fdsing_x1", "fdsing_x1")}


def _frechet_inputs(arrays, case):
    if case == "fd2048":
        scale = float(arrays["fd2048_scale"])
        return arrays["fd2048_x1_codes"] * scale, arrays["fd2048_x2_codes"] * scale
    return tuple(arrays[name] for name in FRECHET_CASES[case])


def _library_values(expected, case):
    values = {key: entry["value"] for key, entry in expected.items()
              if key.startswith(case + "/") and "[float32_input]" not in key}
    assert values, case
    return values


@pytest.mark.parametrize("case", ["fd128", pytest.param("fd2048", marks=pytest.mark.slow), "fdsing"])
def test_frechet_matches_every_library_within_1e7_relative(arrays, expected, case):
    a, b = _frechet_inputs(arrays, case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        value = frechet_distance(a, b)
    for library, reference in _library_values(expected, case).items():
        assert value == pytest.approx(reference, rel=1e-7, abs=0), library


def test_frechet_identity_cases(arrays, expected):
    full = frechet_distance(*_frechet_inputs(arrays, "fdident_fullrank"))
    with pytest.warns(UnreliableEstimateWarning, match="64 rows in 128 dimensions"):
        singular = frechet_distance(*_frechet_inputs(arrays, "fdident_singular"))
    assert abs(full) <= 1e-9
    assert abs(singular) <= 1e-5
    assert expected["fdident_singular/audioldm_eval.calculate_fid"]["value"] < 0  # the reference is not clamped


def test_frechet_is_symmetric_and_stats_path_agrees(arrays, expected):
    a, b = _frechet_inputs(arrays, "fd128")
    reference = expected["fd128/audioldm_eval.calculate_fid"]["value"]
    assert frechet_distance(b, a) == pytest.approx(reference, rel=1e-7)
    assert frechet_distance_from_stats(GaussianStats.of(a), GaussianStats.of(b)) == pytest.approx(reference, rel=1e-7)


def test_rank_deficient_stats_only_path_still_within_tolerance(arrays, expected):
    a, b = _frechet_inputs(arrays, "fdsing")
    with pytest.warns(UnreliableEstimateWarning):
        value = frechet_distance_from_stats(GaussianStats.of(a), GaussianStats.of(b))
    assert value == pytest.approx(expected["fdsing/audioldm_eval.calculate_fid"]["value"], rel=1e-7)


# sqrtm itself drifts by ~1e-9 relative across LAPACK builds on the rank-deficient case.
@pytest.mark.parametrize("case, rel", [("fd128", 1e-12), ("fdsing", 1e-7)])
def test_sqrtm_audit_path_reproduces_the_reference(arrays, expected, case, rel):
    a, b = _frechet_inputs(arrays, case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        value = frechet_distance(a, b, method="sqrtm")
    assert value == pytest.approx(expected[f"{case}/audioldm_eval.calculate_fid"]["value"], rel=rel)


def _kl_tables(arrays, with_extra=False):
    gen = dict(zip(arrays["kl_gen_names"].tolist(), arrays["kl_gen_logits"]))
    ref = dict(zip(arrays["kl_ref_names"].tolist(), arrays["kl_ref_logits"]))
    if with_extra:
        gen[str(arrays["kl_extra_gen_name"][0])] = arrays["kl_extra_gen_logits"][0]
        ref = {str(arrays["kl_extra_ref_name"][0]): arrays["kl_extra_ref_logits"][0], **ref}
    return gen, ref


@pytest.mark.parametrize("case", ["kl", "kl_unmatched"])
def test_kl_softmax_and_sigmoid(arrays, expected, case):
    gen, ref = _kl_tables(arrays, with_extra=case == "kl_unmatched")
    result = kl_divergence(gen, ref)
    prefix = f"{case}/audioldm_eval.calculate_kl[float64]/kullback_leibler_divergence_"
    assert result.softmax == pytest.approx(expected[prefix + "softmax"]["value"], rel=1e-6)
    assert result.sigmoid == pytest.approx(expected[prefix + "sigmoid"]["value"], rel=1e-6)
    assert result.count == 50
    assert result.unmatched == (1 if case == "kl_unmatched" else 0)
    assert result.unused_generated == (1 if case == "kl_unmatched" else 0)


def test_kl_per_pair_values_in_reference_order(arrays):
    result = kl_divergence(*_kl_tables(arrays))
    assert list(result.per_item_softmax) == arrays["kl_ref_names"].tolist()
    np.testing.assert_allclose(list(result.per_item_softmax.values()), arrays["kl_expected_per_pair_softmax"],
                               rtol=1e-6)


def test_kl_direction_and_pairing_matter(arrays, expected):
    gen, ref = _kl_tables(arrays)
    reference = expected["kl/audioldm_eval.calculate_kl[float64]/kullback_leibler_divergence_softmax"]["value"]
    assert kl_divergence(ref, gen).softmax != pytest.approx(reference, rel=1e-2)  # the other direction
    zipped = dict(zip(arrays["kl_ref_names"].tolist(), arrays["kl_gen_logits"]))  # rows in stored order
    assert kl_divergence(zipped, ref).softmax > 5 * reference


def test_inception_score_with_the_reference_shuffle(arrays, expected):
    mean, std = inception_score(arrays["is_logits"])
    key = "is/audioldm_eval.calculate_isc[shuffle=True,seed=2020,splits=10]/inception_score_"
    assert mean == pytest.approx(expected[key + "mean"]["value"], rel=1e-9)
    assert std == pytest.approx(expected[key + "std"]["value"], rel=1e-9)
    np.testing.assert_allclose(inception_split_scores(arrays["is_logits"]), arrays["is_expected_split_scores"],
                               rtol=1e-9)
    assert np.array_equal(np.random.RandomState(2020).permutation(400), arrays["is_permutation_seed2020"])


def test_inception_score_unshuffled_and_single_split(arrays, expected):
    mean, std = inception_score(arrays["is_logits"], shuffle=False)
    key = "is/audioldm_eval.calculate_isc[shuffle=False,splits=10]/inception_score_"
    assert mean == pytest.approx(expected[key + "mean"]["value"], rel=1e-9)
    assert std == pytest.approx(expected[key + "std"]["value"], rel=1e-9)
    whole, spread = inception_score(arrays["is_logits"], splits=1, shuffle=False)
    assert whole == pytest.approx(expected["is/audioldm_eval.calculate_isc[splits=1]/inception_score_mean"]["value"],
                                  rel=1e-9)
    assert spread == 0.0


def test_clap_score_and_per_pair_cosines(arrays, expected):
    text, audio = arrays["clap_text_emb"], arrays["clap_audio_emb"]
    assert clap_score(text, audio) == pytest.approx(expected["clap/mean_cosine"]["value"], abs=1e-7)
    cosines = clap_cosines(text, audio)
    np.testing.assert_allclose(cosines, arrays["clap_expected_per_pair_cosine"], atol=1e-7)
    assert (cosines[:3] < 0).all()  # anti-aligned rows stay negative: no clamp
    assert np.std(cosines) == pytest.approx(
        expected["clap/frechet_audio_distance.CLAPScore.calculate_clap_score/std"]["value"], abs=1e-7)
