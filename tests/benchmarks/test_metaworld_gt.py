"""The Meta-World ground-truth generator: the phase-to-subtask rule, and one real recording
checked against the fixture (skipped where metaworld, the `bench` extra, is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from atomvla.schemas import MAX_SUBTASKS, MIN_SUBTASKS, SKILLS
from benchmarks.metaworld_gt.record import DemoFailed, segment
from benchmarks.metaworld_gt.tasks import TASKS, TaskSpec

FIXTURES = Path(__file__).parents[3] / "shared" / "fixtures"
PICK_PLACE = TASKS["pick-place-v3"]
# The rule is the same for any number of subtasks (every task defined today has two).
THREE = TaskSpec("stack-v0", "stack the cube on the block",
                 (("reach the cube", "reach"), ("pick up the cube", "pick"), ("place it on the block", "place")),
                 lambda o: 0)


def test_subtask_starts_at_first_branch_and_ignores_fall_backs():
    # door-open seed 1 in the fixture: the hand slips off the handle and re-approaches (0, 1)
    # after the pull branch (2) first ran; the truth keeps those steps in the pull subtask.
    phases = [0] * 5 + [1] * 3 + [0] * 2 + [1] * 4
    subtasks = segment(phases, PICK_PLACE)
    assert [(s.start_frame, s.end_frame) for s in subtasks] == [(0, 5), (5, 14)]
    assert [s.instruction for s in subtasks] == ["pick up the puck", "place the puck at the goal"]


def test_three_subtasks():
    subtasks = segment([0] * 4 + [1] * 3 + [2] * 6, THREE)
    assert [(s.start_frame, s.skill) for s in subtasks] == [(0, "reach"), (4, "pick"), (7, "place")]


@pytest.mark.parametrize(
    ("phases", "problem"),
    [([0] * 9, r"reached \[0\], expected 0..1"), ([0] * 4 + [2] * 5, r"reached \[0, 2\], expected 0..2"),
     ([0] * 8 + [1], "1 frames, fewer than the minimum 2")],
)
def test_missing_or_too_short_subtask_fails(phases, problem):
    spec = THREE if max(phases) == 2 else PICK_PLACE
    with pytest.raises(DemoFailed, match=problem):
        segment(phases, spec)


def test_every_task_has_a_valid_plan():
    from benchmarks.metaworld_gt.fine import FINE_TASKS

    for spec in [*TASKS.values(), *FINE_TASKS.values()]:
        assert MIN_SUBTASKS <= len(spec.subtasks) <= MAX_SUBTASKS, spec.metaworld_task
        assert all(skill in SKILLS and instruction for instruction, skill in spec.subtasks), spec.metaworld_task


def test_a_finer_decomposition_splits_a_subtask_of_the_task_it_refines():
    from benchmarks.metaworld_gt.fine import FINE_TASKS

    for task, fine in FINE_TASKS.items():
        assert len(fine.subtasks) > len(TASKS[task].subtasks) and fine.instruction == TASKS[task].instruction
        assert fine.subtasks[-1] == TASKS[task].subtasks[-1]  # the last subtask as the task's own truth has it


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Constant")  # the policies' gains saturate; actions are clipped
def test_recording_reproduces_the_fixture_episode():
    pytest.importorskip("metaworld")
    from benchmarks.metaworld_gt.record import CAMERA_KEY, record

    truth = json.loads((FIXTURES / "metaworld_truth.jsonl").read_text().splitlines()[4])  # button-press, seed 0
    demo = record(TASKS[truth["metaworld_task"]], truth["seed"])
    assert [s.model_dump() for s in demo.subtasks] == truth["subtasks"]
    data = pq.read_table(FIXTURES / "metaworld_lerobot_v30" / "data" / "chunk-000" / "file-000.parquet").to_pandas()
    rows = data[data["episode_index"] == truth["episode_index"]]
    for key in ("observation.state", "action"):
        np.testing.assert_allclose(demo.recording.arrays[key], np.stack(rows[key]), atol=1e-6)
    frames = demo.recording.frames[CAMERA_KEY]
    episodes = pq.read_table(FIXTURES / "metaworld_lerobot_v30" / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    first = round(episodes.to_pydict()[f"videos/{CAMERA_KEY}/from_timestamp"][truth["episode_index"]] * truth["fps"])
    with av.open(str(FIXTURES / "metaworld_lerobot_v30" / "videos" / CAMERA_KEY / "chunk-000" / "file-000.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(first + len(frames)), c.decode(video=0))]
    # same camera, same way up: only AV1 loss and the faster render settings differ (flipped: ~40)
    assert np.abs(np.stack(decoded[first:]).astype(int) - frames).mean() < 8


def test_an_unknown_state_convention_is_refused_before_any_recording(tmp_path):
    import typer
    from typer.testing import CliRunner

    from benchmarks.metaworld_gt.generate import main

    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "gt"), "--tasks", "pick-place-v3", "--state", "joints"])
    assert result.exit_code == 2 and "unknown state convention 'joints'; defined: hand, objects" in result.output
    assert not (tmp_path / "gt").exists()


def test_released_lists_the_25_tasks_and_object_motion_phases_read_the_object():
    from benchmarks.metaworld_gt.tasks import LEVER_RADIUS, RELEASED

    assert len(set(RELEASED)) == 25 and set(RELEASED) <= set(TASKS)
    # lever-pull: the lever turns about a pivot LEVER_RADIUS below the goal; at rest it points at the robot
    goal = np.array([0.04, 0.75, 0.45])
    pivot = goal - [0, 0, LEVER_RADIUS]

    def lever(degrees: float) -> dict:
        a = np.radians(degrees)
        pos = pivot + LEVER_RADIUS * np.array([0, -np.cos(a), np.sin(a)])
        return {"hand_pos": pos, "gripper": 1.0, "lever_pos": pos, "unused_info": np.r_[np.zeros(29), goal]}

    phase = TASKS["lever-pull-v3"].phase
    assert [phase(lever(d)) for d in (0.0, -3.0, 1.0, 3.0, 60.0)] == [0, 0, 0, 1, 1]
    # door-lock: the lock going down during the last step (its previous position 15 values on)
    lock = np.array([0.0, 0.67, 0.22])

    def moved(dz: float) -> dict:
        previous = np.zeros(29)
        previous[15:18] = lock - [0, 0, dz]
        return {"hand_pos": lock + [0, 0, 0.05], "gripper": 1.0, "lock_pos": lock, "unused_info": previous}

    assert [TASKS["door-lock-v3"].phase(moved(dz)) for dz in (0.0, 0.0005, -0.003, 0.003)] == [0, 0, 1, 0]
    assert all(TASKS[t].by_object_motion for t in ("door-close-v3", "door-lock-v3", "lever-pull-v3", "soccer-v3"))
