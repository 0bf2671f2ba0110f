from __future__ import annotations

import math

import pytest

from mlci.datatest import drift


def test_psi_of_identical_distributions_is_zero_and_grows_with_shift() -> None:
    ref = [0.25, 0.25, 0.25, 0.25]
    assert drift.psi(ref, ref) == 0.0
    small = drift.psi(ref, [0.3, 0.25, 0.25, 0.2])
    large = drift.psi(ref, [0.7, 0.1, 0.1, 0.1])
    assert 0 < small < 0.1 < 0.25 < large
    assert small == pytest.approx(0.05 * math.log(0.3 / 0.25) - 0.05 * math.log(0.2 / 0.25))


def test_empty_bins_are_floored_not_infinite() -> None:
    value = drift.psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])
    floor = drift.FLOOR
    expected = (floor - 0.5) * math.log(floor / 0.5) + (0.5 - floor) * math.log(0.5 / floor)
    assert value == pytest.approx(expected)


def test_ks_is_the_largest_cdf_gap_at_the_edges() -> None:
    assert drift.ks_at_edges([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert drift.ks_at_edges([0.2, 0.3, 0.5], [0.5, 0.3, 0.2]) == pytest.approx(0.3)


def test_js_distance_is_bounded_and_symmetric() -> None:
    p, q = [0.9, 0.1, 0.0], [0.1, 0.1, 0.8]
    assert drift.js_distance(p, q) == pytest.approx(drift.js_distance(q, p))
    assert 0.5 < drift.js_distance(p, q) <= 1.0
    assert drift.js_distance(p, p) == pytest.approx(0.0, abs=1e-9)


def test_fractions_from_cumulative_counts() -> None:
    assert drift.fractions_from_cumulative([2, 5, 5], 10) == pytest.approx([0.2, 0.3, 0.0, 0.5])
    assert drift.fractions_from_cumulative([0, 0], 0) == [0.0, 0.0, 0.0]


def test_thresholds_default_per_method() -> None:
    assert drift.thresholds("psi", None, None) == (0.1, 0.25)
    assert drift.thresholds("ks", 0.05, None) == (0.05, 0.2)


@pytest.mark.parametrize("method", sorted(drift.STATISTICS))
def test_the_same_data_against_its_rounded_profile_measures_exactly_zero(method: str) -> None:
    """Before, identical data measured psi=1.17e-31: the profile's fractions are stored rounded to 8 digits."""
    measured = [0.1, 0.2, 0.30000000000000004, 0.39999999999999997]  # cumulative subtraction's float error
    stored = [round(f, 8) for f in measured]
    assert drift.STATISTICS[method](stored, measured) == 0.0
    shifted = [0.1 + 1e-6, 0.2, 0.3, 0.4 - 1e-6]  # a real difference, however small, is not rounding
    assert drift.STATISTICS[method](stored, shifted) > 0.0
