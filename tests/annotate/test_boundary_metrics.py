"""Boundary precision / recall / F1 with greedy one-to-one matching, on cases worked by hand."""

import pytest

from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries


def test_exact_prediction_scores_one():
    m = match_boundaries([30, 60], [30, 60], tolerance=3)
    assert (m.tp, m.fp, m.fn, m.errors) == (2, 0, 0, (0, 0))
    assert m.precision == m.recall == m.f1 == 1.0


def test_empty_prediction_finds_nothing_and_claims_nothing():
    m = match_boundaries([], [30, 60], tolerance=3)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2)
    assert m.precision == 1.0 and m.recall == 0.0 and m.f1 == 0.0


def test_extra_boundary_costs_precision_only():
    m = match_boundaries([30, 45, 60], [30, 60], tolerance=3)
    assert (m.tp, m.fp, m.fn) == (2, 1, 0)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1.0
    assert m.f1 == pytest.approx(0.8)


@pytest.mark.parametrize(("shift", "matched"), [(3, True), (-3, True), (4, False)])
def test_shifted_boundary_matches_only_within_tolerance(shift, matched):
    m = match_boundaries([30 + shift], [30], tolerance=3)
    assert m.tp == int(matched)
    assert m.errors == ((abs(shift),) if matched else ())
    assert (m.fp, m.fn) == ((0, 0) if matched else (1, 1))


def test_matching_is_one_to_one_and_closest_first():
    # Two predictions near one truth: only the closer one matches; 31 cannot also take 30's truth.
    m = match_boundaries([29, 31], [30, 33], tolerance=3)
    # Pairs by distance: (29,30)=1, (31,30)=1, (31,33)=2, (29,33)=4>3. Greedy: 29-30 then 31-33.
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert sorted(m.errors) == [1, 2]
    m = match_boundaries([29, 31], [30], tolerance=3)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


def test_counts_add_up_across_episodes():
    total = match_boundaries([30], [30], 3) + match_boundaries([], [50], 3) + BoundaryMatch(0, 0, 0, ())
    assert (total.tp, total.fp, total.fn) == (1, 0, 1)
    assert total.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
