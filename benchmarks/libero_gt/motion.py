"""Smooth Cartesian motions turned into LIBERO OSC_POSE delta actions.

A motion is a straight line to a goal pose (position, and orientation about one axis) with a
minimum-jerk time profile (zero velocity and acceleration at both ends, like a human
demonstrator's reach), tracked by a proportional law; the gripper command is held constant
within a motion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from atomvla.train.sim.libero import GRIP_CLOSED, GRIP_OPEN, POS_SCALE_M, ROT_SCALE_RAD  # noqa: F401  (re-exported)
# OSC lags a moving target by a few centimetres; a motion ends once within this of its goal (or
# after MAX_SETTLE_STEPS more steps, e.g. when a held object or a closed drawer blocks it).
SETTLED_M = 0.005
MAX_SETTLE_STEPS = 8


class Arm(Protocol):
    @property
    def eef_pos(self) -> np.ndarray: ...
    @property
    def eef_rot(self) -> np.ndarray: ...
    def step(self, action_7: np.ndarray) -> None: ...


@dataclass(frozen=True)
class Motion:
    goal: np.ndarray  # (3,) world position of the grip site at the end
    rot: np.ndarray  # (3, 3) world orientation of the grip site at the end
    steps: int
    grip: float  # GRIP_OPEN or GRIP_CLOSED, held throughout


def min_jerk(s: np.ndarray) -> np.ndarray:
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def rotation_error(target_3x3: np.ndarray, current_3x3: np.ndarray) -> np.ndarray:
    """World-frame axis-angle (3,) taking current to target, the form OSC's delta expects."""
    r = target_3x3 @ current_3x3.T
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def axis_angle_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of an axis-angle vector (3,) (Rodrigues)."""
    angle = np.linalg.norm(rotvec)
    if angle < 1e-9:
        return np.eye(3)
    k = rotvec / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def steps_for(distance_m: float, speed_m_s: float, fps: int, minimum: int) -> int:
    """Duration of a reach at a given average speed, never shorter than `minimum` steps."""
    return max(minimum, round(distance_m / speed_m_s * fps))


def _track(arm: Arm, pos: np.ndarray, rot: np.ndarray, grip: float) -> None:
    delta = np.clip((pos - arm.eef_pos) / POS_SCALE_M, -1.0, 1.0)
    turn = np.clip(rotation_error(rot, arm.eef_rot) / ROT_SCALE_RAD, -1.0, 1.0)
    arm.step(np.concatenate([delta, turn, [grip]]))


def execute(arm: Arm, motion: Motion) -> None:
    """Follow the motion's profile, then hold its goal until the lagging controller gets there."""
    start = arm.eef_pos
    _along(arm, lambda s: start + (motion.goal - start) * s, motion.rot, motion.steps, motion.grip, motion.goal)


def follow(arm: Arm, path: Callable[[float], np.ndarray], rot: np.ndarray, steps: int, grip: float) -> None:
    """`execute` along a curve: `path(s)` is the position (3,) for s in [0, 1] (an arc about a door's
    hinge); the orientation turns from the arm's to `rot` on the same profile."""
    _along(arm, path, rot, steps, grip, path(1.0))


def _along(arm: Arm, path: Callable[[float], np.ndarray], rot: np.ndarray, steps: int, grip: float, end: np.ndarray) -> None:
    # `end` apart from path(1.0): a line's path(1.0) can differ from its goal in the last bit, and the
    # recorded sets were made holding the goal itself.
    start_rot = arm.eef_rot
    turn = rotation_error(rot, start_rot)
    for s in min_jerk(np.arange(1, steps + 1) / steps):
        _track(arm, path(s), axis_angle_matrix(turn * s) @ start_rot, grip)
    for _ in range(MAX_SETTLE_STEPS):
        if np.linalg.norm(end - arm.eef_pos) < SETTLED_M:
            break
        _track(arm, end, rot, grip)
