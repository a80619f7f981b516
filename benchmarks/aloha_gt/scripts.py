"""Scripted waypoint policies for ALOHA's two arms, after the ACT paper's, and their subtasks.

A script is a list of waypoints per arm (time step, gripper-site position, orientation, gripper
opening 0 closed .. 1 open); between waypoints the mocap target moves linearly, as in ACT's
`scripted_policy.py`. Both grippers start closed and open during the first waypoint segment,
as ACT's do. A subtask starts at the first step of the waypoint segment that starts it, so the
truth is exact by construction (the policy commands the new motion from that step on).

Where a pick ends: the shared convention of every set, the object's first motion after the
grasp. Transfer (ACT's timing): "pick up the cube" ends when the closed right gripper starts to
lift; handing the cube to the left arm (its grasp, the right arm's release) is one subtask.

Not here: ACT's insertion. Driven through gym-aloha 0.1.5's end-effector scene, its scripted
grasps never closed on the peg or the socket (tried with the objects' settled heights and
narrower placement ranges), so it would yield no kept episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomvla.schemas import Skill


@dataclass(frozen=True)
class Waypoint:
    t: int
    xyz: np.ndarray
    quat: np.ndarray
    gripper: float


@dataclass(frozen=True)
class Script:
    task: str
    left: list[Waypoint]
    right: list[Waypoint]
    subtasks: list[tuple[int, str, Skill]]  # (start step, instruction, skill)
    n_steps: int


# Height of the gripper link above a lying object's centre when the fingers close on it (ACT aims
# 1.5 cm below the 5 cm its objects are dropped from; they lie at about 2 cm).
GRASP_DZ = 0.015


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ])


def axis_quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    half = np.radians(degrees) / 2
    return np.array([np.cos(half), *(np.sin(half) * np.asarray(axis, dtype=float))])


def interpolate(waypoints: list[Waypoint], t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mocap position, orientation and gripper opening at step t (held after the last waypoint)."""
    for a, b in zip(waypoints, waypoints[1:]):
        if a.t <= t <= b.t:
            s = (t - a.t) / (b.t - a.t)
            return a.xyz + s * (b.xyz - a.xyz), a.quat + s * (b.quat - a.quat), a.gripper + s * (b.gripper - a.gripper)
    last = waypoints[-1]
    return last.xyz, last.quat, last.gripper


def transfer(init_left: np.ndarray, init_right: np.ndarray, box_xyz: np.ndarray, pace: float) -> Script:
    """ACT's transfer-cube script: the right arm picks the cube and hands it to the left arm."""
    T = lambda t: round(t * pace)  # noqa: E731
    pick = quat_mul(init_right[3:], axis_quat((0, 1, 0), -45))
    meet_left = axis_quat((1, 0, 0), 90)
    meet = np.array([0.0, 0.5, 0.25])
    W = Waypoint
    left = [
        W(0, init_left[:3], init_left[3:], 0), W(T(100), meet + [-0.1, 0, -0.02], meet_left, 1),
        W(T(260), meet + [0.02, 0, -0.02], meet_left, 1), W(T(310), meet + [0.02, 0, -0.02], meet_left, 0),
        W(T(360), meet + [-0.1, 0, 0], meet_left, 0), W(T(400), meet + [-0.1, 0, 0], meet_left, 0),
    ]
    right = [
        W(0, init_right[:3], init_right[3:], 0), W(T(90), box_xyz + [0, 0, 0.08], pick, 1),
        W(T(130), box_xyz + [0, 0, GRASP_DZ], pick, 1), W(T(170), box_xyz + [0, 0, GRASP_DZ], pick, 0),
        W(T(200), meet + [0.05, 0, 0], pick, 0), W(T(220), meet, pick, 0), W(T(310), meet, pick, 1),
        W(T(360), meet + [0.1, 0, 0], pick, 1), W(T(400), meet + [0.1, 0, 0], pick, 1),
    ]
    subtasks = [(0, "pick up the cube", "pick"), (T(170), "transfer the cube to the left arm", "place")]
    return Script("pick up the cube with the right arm and transfer it to the left arm", left, right, subtasks, T(400))



def with_pauses(script: Script, rng: np.random.Generator, before_subtask: tuple[int, int] = (10, 40),
                hesitations: int = 2, hesitation: tuple[int, int] = (5, 15)) -> Script:
    """The script as a teleoperator would perform it: both arms hold still for a while before each
    subtask after the first (those steps belong to the subtask still running, so each later subtask
    starts that much later) and now and then mid-motion (`hesitations` pauses at random steps)."""
    starts = [s for s, _, _ in script.subtasks[1:]]
    pauses = [(t, int(rng.integers(*before_subtask))) for t in starts]
    pauses += [(int(rng.integers(1, script.n_steps)), int(rng.integers(*hesitation))) for _ in range(hesitations)]
    left, right, n = list(script.left), list(script.right), script.n_steps
    for at, steps in sorted(pauses, reverse=True):  # latest first: earlier times stay valid
        left, right = _hold(left, at, steps), _hold(right, at, steps)
        n += steps
    subtasks = [(start + sum(d for at, d in pauses if at <= start) if i else 0, instruction, skill)
                for i, (start, instruction, skill) in enumerate(script.subtasks)]
    return Script(script.task, left, right, subtasks, n)


def _hold(waypoints: list[Waypoint], at: int, steps: int) -> list[Waypoint]:
    """Waypoints that hold the pose of step `at` for `steps` steps, everything after shifted."""
    xyz, quat, grip = interpolate(waypoints, at)
    before = [w for w in waypoints if w.t < at]
    after = [Waypoint(w.t + steps, w.xyz, w.quat, w.gripper) for w in waypoints if w.t > at]
    return [*before, Waypoint(at, xyz, quat, grip), Waypoint(at + steps, xyz, quat, grip), *after]
