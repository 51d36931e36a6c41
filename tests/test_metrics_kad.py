"""Kernel Audio Distance against kadtk 1.1.0's own outputs (tests/data/kad) and independent computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fluxbench.protocols.metrics import kad as kad_module
from fluxbench.protocols.metrics.bootstrap import bootstrap_kad, rng_for
from fluxbench.protocols.metrics.kad import (KadInputError, kad_terms, kernel_audio_distance,
                                             median_pairwise_distance)

GOLDEN = Path(__file__).parent / "data" / "kad" / "golden.npz"
CASES = ("shifted", "close_small", "wide", "odd_pairs")


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


def _plain_kad(gen, ref, bandwidth):
    """The definition written out with explicit pair loops over distance matrices (no shared code)."""
    gamma = 1.0 / (2.0 * bandwidth ** 2 + 1e-8)

    def kernel(a, b):
        return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    k_gg, k_rr, k_rg = kernel(gen, gen), kernel(ref, ref), kernel(ref, gen)
    n, m = len(gen), len(ref)
    within_g = (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
    within_r = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return 100.0 * (within_g + within_r - 2.0 * k_rg.mean())


def test_golden_file_records_kadtk_version(golden):
    assert str(golden["kadtk_version"]) == "1.1.0"


@pytest.mark.parametrize("case", CASES)
def test_matches_kadtk_float64(golden, case):
    gen, ref = golden[f"{case}.generated"], golden[f"{case}.reference"]
    result = kernel_audio_distance(gen, ref)
    assert result.bandwidth_from == "generated"
    assert result.value == pytest.approx(float(golden[f"{case}.kad_default_float64"]), rel=1e-6)
    by_reference = kernel_audio_distance(gen, ref, bandwidth="reference")
    assert by_reference.value == pytest.approx(float(golden[f"{case}.kad_reference_bandwidth_float64"]), rel=1e-6)
    fixed = kernel_audio_distance(gen, ref, bandwidth=2.0)
    assert fixed.bandwidth_from == "fixed"
    assert fixed.value == pytest.approx(float(golden[f"{case}.kad_bandwidth_2_float64"]), rel=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_close_to_kadtk_default_float32(golden, case):
    # kadtk's default call sums its kernel in float32; 1e-5 covers that rounding, not a convention change
    # (the reference-set bandwidth moves every case by more than 1e-3).
    gen, ref = golden[f"{case}.generated"], golden[f"{case}.reference"]
    value = kernel_audio_distance(gen, ref).value
    assert value == pytest.approx(float(golden[f"{case}.kad_default_float32"]), rel=1e-5)
    other_rule = float(golden[f"{case}.kad_reference_bandwidth_float64"])
    assert abs(value - other_rule) > 1e-3 * abs(value)


@pytest.mark.parametrize("case", CASES)
def test_median_bandwidth_matches_kadtk(golden, case):
    for side in ("generated", "reference"):
        # kadtk's torch.pdist runs in float32: agreement to its rounding.
        assert median_pairwise_distance(golden[f"{case}.{side}"]) == pytest.approx(
            float(golden[f"{case}.median_{side}"]), rel=1e-6)


@pytest.mark.parametrize("bins", [1 << 20, 7])  # fine bins, and bins so coarse that one holds many values
def test_streamed_median_equals_the_stored_one(monkeypatch, bins):
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((60, 5)) * np.array([1, 2, 3, 4, 5])
    stored = median_pairwise_distance(rows)
    monkeypatch.setattr(kad_module, "STORED_PAIRS", 10)
    monkeypatch.setattr(kad_module, "MEDIAN_BINS", bins)
    monkeypatch.setattr(kad_module, "BLOCK_ENTRIES", 300)
    assert median_pairwise_distance(rows) == pytest.approx(stored, rel=1e-12)  # other blocks, other GEMM rounding
    assert median_pairwise_distance(rows[:59]) == pytest.approx(  # 1711 pairs: odd count
        np.sort(np.linalg.norm(rows[:59, None] - rows[None, :59], axis=-1)[np.triu_indices(59, 1)])[855], rel=1e-9)
    gen, ref = rows[:30], rows[30:] + 0.5
    assert kernel_audio_distance(gen, ref).value == pytest.approx(_plain_kad(gen, ref, median_pairwise_distance(gen)),
                                                                  rel=1e-12)


def test_median_is_the_lower_middle_value():
    rows = np.array([[0.0], [1.0], [3.0], [7.0]])  # distances 1, 3, 7, 2, 6, 4 -> sorted 1 2 3 4 6 7
    assert median_pairwise_distance(rows) == 3.0
    assert median_pairwise_distance(rows[:3]) == 2.0  # 1, 3, 2 -> middle of three


def test_matches_plain_definition_and_block_sizes(monkeypatch):
    rng = np.random.default_rng(4)
    gen, ref = rng.standard_normal((37, 6)) + 0.3, rng.standard_normal((23, 6))
    expected = _plain_kad(gen, ref, 1.7)
    assert kernel_audio_distance(gen, ref, bandwidth=1.7).value == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(kad_module, "BLOCK_ENTRIES", 50)  # blocks of one or two rows
    assert kernel_audio_distance(gen, ref, bandwidth=1.7).value == pytest.approx(expected, rel=1e-12)
    distances = np.sort(np.linalg.norm(gen[:, None] - gen[None], axis=-1)[np.triu_indices(37, 1)])
    assert median_pairwise_distance(gen) == pytest.approx(distances[(distances.size - 1) // 2], rel=1e-9)


def test_clip_totals_give_the_value_of_concatenated_copies(monkeypatch):
    rng = np.random.default_rng(5)
    gen, ref = rng.standard_normal((12, 4)), rng.standard_normal((9, 4)) + 0.5
    gen_clips = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5])
    ref_clips = np.array([0, 1, 1, 2, 2, 2, 3, 4, 4])
    for block in (1 << 22, 20):  # whole sets at once, and blocks of one or two clips
        monkeypatch.setattr(kad_module, "BLOCK_ENTRIES", block)
        terms = kad_terms(gen, ref, 1.3, gen_clips, ref_clips)
        assert terms.values()[0] == pytest.approx(_plain_kad(gen, ref, 1.3), rel=1e-12)
        gen_counts = np.array([[2, 0, 1, 1, 0, 3], [0, 1, 1, 1, 1, 1]], dtype=float)
        ref_counts = np.array([[1, 1, 0, 2, 1], [0, 0, 3, 1, 1]], dtype=float)
        values = terms.values(gen_counts, ref_counts)
        for index in range(2):
            copies_gen = np.repeat(gen, gen_counts[index][gen_clips].astype(int), axis=0)
            copies_ref = np.repeat(ref, ref_counts[index][ref_clips].astype(int), axis=0)
            assert values[index] == pytest.approx(_plain_kad(copies_gen, copies_ref, 1.3), rel=1e-12)


def test_per_clip_value_is_kad_of_the_clip_rows():
    rng = np.random.default_rng(6)
    gen, ref = rng.standard_normal((9, 3)), rng.standard_normal((30, 3))
    clips = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2])
    per_clip = kad_terms(gen, ref, 2.5, clips).per_clip()
    assert per_clip[0] == pytest.approx(_plain_kad(gen[:5], ref, 2.5), rel=1e-12)
    assert np.isnan(per_clip[1])  # one frame: no within-clip pair
    assert per_clip[2] == pytest.approx(_plain_kad(gen[6:], ref, 2.5), rel=1e-12)


def test_bootstrap_interval_resamples_clips_with_their_frames():
    rng = np.random.default_rng(7)
    gen, ref = rng.standard_normal((40, 5)) + 0.4, rng.standard_normal((50, 5))
    gen_clips, ref_clips = np.repeat(np.arange(10), 4), np.repeat(np.arange(10), 5)
    terms = kad_terms(gen, ref, 2.0, gen_clips, ref_clips)
    first = bootstrap_kad(terms, 20, rng_for(0, "kad"))
    assert first == bootstrap_kad(terms, 20, rng_for(0, "kad")) and first.replicates == 20
    value = kernel_audio_distance(gen, ref, bandwidth=2.0).value
    assert first.low < value < first.high
    # The first two replicates by hand: the same clip draws, the frames of each drawn clip copied.
    draws = rng_for(0, "kad")
    by_hand = []
    for _ in range(2):
        gen_counts = np.bincount(draws.integers(0, 10, 10), minlength=10)
        ref_counts = np.bincount(draws.integers(0, 10, 10), minlength=10)
        by_hand.append(_plain_kad(np.repeat(gen, gen_counts[gen_clips], axis=0),
                                  np.repeat(ref, ref_counts[ref_clips], axis=0), 2.0))
    two = bootstrap_kad(terms, 2, rng_for(0, "kad"))
    assert (two.low, two.high) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])), rel=1e-12)


def test_bad_inputs_are_named():
    rng = np.random.default_rng(8)
    with pytest.raises(KadInputError, match="dimension"):
        kernel_audio_distance(rng.standard_normal((5, 3)), rng.standard_normal((5, 4)))
    with pytest.raises(KadInputError, match="bandwidth"):
        kernel_audio_distance(rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), bandwidth="median")
    with pytest.raises(KadInputError, match="positive"):
        kernel_audio_distance(rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), bandwidth=-1.0)
    with pytest.raises(Exception, match="row"):
        kernel_audio_distance(rng.standard_normal((1, 3)), rng.standard_normal((5, 3)))
    with pytest.raises(KadInputError, match="clip index"):
        kad_terms(rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), 1.0, np.array([0, 1, 0, 1]))
