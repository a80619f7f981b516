"""The editor model: each edit, live validation through the contract, undo/redo, the draft round trip."""

import pytest

from atomvla.ui import editing
from atomvla.ui.editing import EditError, EditSession, Segment

SEGS = (Segment(0, 30, "pick up the puck", "pick"), Segment(30, 69, "place the puck", "place"))


def test_split_leaves_the_new_part_unnamed_and_invalid():
    segs = editing.split(SEGS, 10)
    assert [(s.start, s.end) for s in segs] == [(0, 10), (10, 30), (30, 69)]
    assert segs[1].instruction == "" and segs[1].skill == "pick"
    assert any("subtask 2" in p and "instruction" in p for p in editing.problems(segs, 69, 2))
    with pytest.raises(EditError, match="already a boundary"):
        editing.split(SEGS, 30)


def test_merge_move_nudge():
    assert editing.merge_with_next(SEGS, 5) == (Segment(0, 69, "pick up the puck", "pick"),)
    with pytest.raises(EditError, match="last subtask"):
        editing.merge_with_next(SEGS, 50)
    moved = editing.move_boundary(SEGS, 1, 40)
    assert (moved[0].end, moved[1].start) == (40, 40)
    # A boundary never crosses its neighbours; too short a subtask is left to validation to report.
    assert editing.move_boundary(SEGS, 1, 500)[1].start == 68
    assert editing.problems(editing.move_boundary(SEGS, 1, 500), 69, 2) == [
        "subtask 2 spans frames [68, 69): 1 frames, fewer than the minimum 2"]
    assert editing.nudge(SEGS, 1, -10)[1].start == 20
    assert editing.nearest_boundary(SEGS, 50) == 1


def test_instruction_and_skill_are_checked_by_the_schema():
    assert editing.problems(editing.set_instruction(SEGS, 1, "put it on the goal"), 69, 2) == []
    bad = editing.set_skill(SEGS, 0, "juggle")
    assert any(p.startswith("subtask 1: skill") for p in editing.problems(bad, 69, 2))
    one = editing.merge_with_next(SEGS, 0)
    assert any("needs 2-5" in p for p in editing.problems(one, 69, 2))


def test_undo_redo_and_draft_round_trip():
    ed = EditSession("d/0", 69, 2, 3, SEGS)
    assert ed.apply(editing.split(SEGS, 10)) and ed.apply(editing.nudge(ed.segments, 1, 1))
    assert not ed.apply(ed.segments)  # no change: nothing recorded
    assert ed.undo() and ed.segments[1].start == 10
    back = EditSession.from_record("d/0", 3, ed.to_record())
    assert back == ed
    assert back.redo() and back.segments[1].start == 11
    assert back.undo() and back.undo() and back.segments == SEGS and not back.undo()
