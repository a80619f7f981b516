"""Segmental F1@k and edit score (MS-TCN definitions) on classic examples."""

import pytest

from atomvla.annotate.evaluation.segmental import Segment, edit_score, f1_counts, levenshtein, segments_of
from atomvla.schemas import Subtask


def seg(*spans):
    return [Segment(label, a, b) for label, a, b in spans]


def test_identical_segmentation_is_perfect():
    truth = seg(("reach", 0, 40), ("pick", 40, 70), ("place", 70, 100))
    for k in (0.1, 0.25, 0.5):
        c = f1_counts(truth, truth, k)
        assert (c.tp, c.fp, c.fn) == (3, 0, 0) and c.f1 == 1.0
    assert edit_score(truth, truth) == 1.0


def test_overlap_threshold_decides_a_hit():
    truth = seg(("pick", 0, 50), ("place", 50, 100))
    pred = seg(("pick", 0, 80), ("place", 80, 100))  # place IoU = 20/50 = 0.4, pick IoU = 50/80
    assert f1_counts(pred, truth, 0.25).tp == 2
    low = f1_counts(pred, truth, 0.5)
    assert (low.tp, low.fp, low.fn) == (1, 1, 1)
    assert low.f1 == pytest.approx(0.5)


def test_over_segmentation_is_punished_by_edit_and_f1():
    # The classic: truth A B, prediction A B A B (flicker). Levenshtein 2 over 4 segments.
    truth = seg(("pick", 0, 50), ("place", 50, 100))
    pred = seg(("pick", 0, 45), ("place", 45, 50), ("pick", 50, 55), ("place", 55, 100))
    assert edit_score(pred, truth) == pytest.approx(0.5)
    c = f1_counts(pred, truth, 0.1)
    # pick[0,45) hits pick (IoU 0.9); place[45,50) IoU with place 5/55; pick[50,55) IoU 5/55 with
    # pick (already hit anyway); place[55,100) hits place (IoU 0.9).
    assert (c.tp, c.fp, c.fn) == (2, 2, 0)
    assert c.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_wrong_labels_never_hit():
    truth = seg(("pick", 0, 50), ("place", 50, 100))
    pred = seg(("push", 0, 50), ("place", 50, 100))
    c = f1_counts(pred, truth, 0.1)
    assert (c.tp, c.fp, c.fn) == (1, 1, 1)
    assert edit_score(pred, truth) == pytest.approx(0.5)


def test_empty_prediction():
    truth = seg(("pick", 0, 50), ("place", 50, 100))
    c = f1_counts([], truth, 0.5)
    assert (c.tp, c.fp, c.fn) == (0, 0, 2) and c.f1 == 0.0
    assert edit_score([], truth) == 0.0


@pytest.mark.parametrize(("a", "b", "d"), [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "abc", 0), ("ab", "ba", 2)])
def test_levenshtein(a, b, d):
    assert levenshtein(list(a), list(b)) == d


def test_adjacent_subtasks_with_one_skill_are_one_segment():
    subtasks = [
        Subtask(start_frame=0, end_frame=10, instruction="reach the drawer", skill="reach"),
        Subtask(start_frame=10, end_frame=20, instruction="reach the handle", skill="reach"),
        Subtask(start_frame=20, end_frame=30, instruction="open the drawer", skill="open"),
    ]
    assert segments_of(subtasks) == seg(("reach", 0, 20), ("open", 20, 30))
