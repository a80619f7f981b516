"""Meta-World state conventions: a recording with object and goal positions is reproduced by the
`metaworld-objects` simulator, and a policy of one convention is refused by the other's env."""

from __future__ import annotations

import numpy as np
import pytest

from atomvla.train.rollout.layout import LayoutError, check_layout
from atomvla.train.sim import SIMULATORS
from atomvla.train.sim.metaworld import STATE_KEY, STATES, feature_names, state_of

pytest.importorskip("metaworld")


def test_the_objects_state_names_its_values_from_the_observation():
    obs = np.arange(39, dtype=np.float64)
    np.testing.assert_array_equal(state_of(obs), [0, 1, 2, 3])
    np.testing.assert_array_equal(state_of(obs, "objects"), [0, 1, 2, 3, 4, 5, 6, 36, 37, 38])
    assert feature_names("objects")[STATE_KEY] == tuple(STATES["objects"])
    assert SIMULATORS["metaworld-objects"].layout("pick-place-v3").state[4:] == (
        "object_x", "object_y", "object_z", "goal_x", "goal_y", "goal_z")


@pytest.mark.filterwarnings("ignore:Constant")  # the scripted policies' gains saturate; actions are clipped
def test_the_objects_env_starts_and_replays_as_recorded():
    from benchmarks.metaworld_gt.fine import FINE_TASKS
    from benchmarks.metaworld_gt.record import record

    demo = record(FINE_TASKS["pick-place-v3"], seed=3, render=False, state="objects")
    assert [s.skill for s in demo.subtasks] == ["reach", "pick", "place"]
    states, actions = demo.recording.arrays[STATE_KEY], demo.recording.arrays["action"]
    env = SIMULATORS["metaworld-objects"].make("pick-place-v3")
    try:
        env.reset(3)
        np.testing.assert_allclose(env.observe()["state"], states[0], atol=1e-6)
        successes = [env.step(a) for a in actions]
        assert successes.index(True) == len(actions) - 11  # the recorder stops 10 steps after the first success
        # the puck was carried: its recorded position moved to the goal
        assert np.linalg.norm(states[-1, 4:7] - states[-1, 7:10]) < 0.07 < np.linalg.norm(states[0, 4:7] - states[0, 7:10])
    finally:
        env.close()


def test_a_policy_of_one_state_convention_is_refused_by_the_other():
    hand, objects = (SIMULATORS[name].layout("button-press-v3") for name in ("metaworld", "metaworld-objects"))
    check_layout(objects, "policy", objects, "env")
    with pytest.raises(LayoutError, match=r"it expects state \(hand_x, hand_y, hand_z, gripper, object_x.*"
                                          r"but the env gives \(hand_x, hand_y, hand_z, gripper\)"):
        check_layout(objects, "policy", hand, "metaworld env button-press-v3")
