"""End-effector and gripper signals of an episode, found from its arrays and feature names.

The segmenter needs three per-frame signals: a motion signal (how the end effector is told to
move, or moves), the measured speed, and the gripper. Which dimensions hold them is read from the
dataset's names (LeRobot `names`: `hand_x`, `ee_x`, `gripper_0`, `dx`, `roll`, `ee_qx`, and the
readers' names for LIBERO/robomimic HDF5: `ee_x`, axis-angle `ee_ax`, `gripper_0`), or given
explicitly by the caller.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from atomvla.schemas import EpisodeMeta

log = logging.getLogger(__name__)

STATE = "observation.state"
ACTION = "action"

_GRIPPER = re.compile(r"grip|finger|claw|jaw")
_ROTATION = re.compile(r"roll|pitch|yaw|rot|quat|orient|euler|angle|(^|[_.\s-])[rqa][xyzw]$|^[rq][xyzw]$")
_AXIS = re.compile(r"(^|[_.\s-])(d|delta_|pos_|position_)?([xyz])$|^d?([xyz])$")
# Rotation and translation velocities are compared as the displacement of a point this far from
# the wrist (metres per radian): a quarter turn then weighs like a 15 cm move.
LEVER_ARM_M = 0.1
# A command whose per-axis correlation with the measured velocity reaches this is a velocity or
# delta command; otherwise (absolute targets, joint commands) the measured motion is used.
_COMMAND_CORRELATION = 0.3


class KinematicsError(ValueError):
    """The episode lacks the arrays, or the named dimensions, the heuristic needs."""


@dataclass(frozen=True)
class Roles:
    """Indices of the dimensions of one array that play each role."""

    position: tuple[int, ...] = ()  # in x, y, z order
    rotation: tuple[int, ...] = ()
    gripper: tuple[int, ...] = ()
    has_z: bool = False  # position ends with the z (up) axis, as robot base frames have it

    @property
    def vertical(self) -> int | None:
        """Column of the up axis within `position`, if named."""
        return len(self.position) - 1 if self.has_z else None


@dataclass(frozen=True)
class Kinematics:
    """Per-frame signals for one episode of n frames.

    `motion` (n, d): velocity of the end effector, commanded when the action is a velocity/delta
    command (it leads the measured motion, so phase changes are sharp), measured otherwise;
    translation first, rotation after (scaled by `LEVER_ARM_M` when measured).
    `speed` (n,): measured speed of the end effector (or the joints, without one).
    `gripper` (n,) or None: gripper command, or opening when there is no command.
    `vertical`: column of `motion` that moves the end effector up and down, if known.
    """

    motion: np.ndarray
    speed: np.ndarray
    gripper: np.ndarray | None
    motion_source: str
    vertical: int | None = None

    def horizontal(self) -> np.ndarray:
        """(n, d - 1): `motion` without its vertical column (all of it when that is unknown)."""
        if self.vertical is None:
            return self.motion
        return np.delete(self.motion, self.vertical, axis=1)


@lru_cache(maxsize=256)
def roles_from_names(names: tuple[str, ...]) -> Roles:
    """Which dims are position x/y/z, rotation and gripper, judged from their names."""
    position: dict[str, int] = {}
    rotation: list[int] = []
    gripper: list[int] = []
    for i, raw in enumerate(names):
        name = raw.lower().strip()
        if _GRIPPER.search(name):
            gripper.append(i)
        elif _ROTATION.search(name):
            rotation.append(i)
        elif (m := _AXIS.search(name)) is not None:
            axis = m.group(3) or m.group(4)
            position.setdefault(axis, i)
    return Roles(tuple(position[a] for a in "xyz" if a in position), tuple(rotation), tuple(gripper), "z" in position)


def _forward_diff(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, d): v[t] = x[t+1] - x[t], the motion that follows frame t; last row repeats."""
    v = np.diff(x, axis=0)
    return np.concatenate([v, v[-1:]], axis=0) if len(v) else np.zeros_like(x)


def _first_component(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n,): a multi-finger gripper as one opening signal (its main axis of change)."""
    if x.shape[1] == 1:
        return x[:, 0]
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]


def _is_velocity_command(command: np.ndarray, velocity: np.ndarray) -> bool:
    """(n, k), (n, k) -> True when the command axes move with the measured velocity on the same axes
    (mean Pearson correlation over the axes that vary)."""
    a = command - command.mean(axis=0)
    v = velocity - velocity.mean(axis=0)
    norms = np.sqrt((a * a).sum(axis=0) * (v * v).sum(axis=0))
    varying = norms > 1e-12
    if not varying.any():
        return False
    corr = (a * v).sum(axis=0)[varying] / norms[varying]
    return float(corr.mean()) >= _COMMAND_CORRELATION


def _state_roles(meta: EpisodeMeta, arrays: dict[str, np.ndarray], ee_dims, gripper_dim) -> Roles:
    names = meta.feature_names.get(STATE) or []
    roles = roles_from_names(tuple(names)) if names else Roles()
    if ee_dims is not None or gripper_dim is not None:
        d = arrays[STATE].shape[1]
        for i in (*(ee_dims or ()), *(() if gripper_dim is None else (gripper_dim,))):
            if not 0 <= i < d:
                raise KinematicsError(f"dimension {i} is out of range: {STATE} has {d} dims")
        roles = Roles(
            position=tuple(ee_dims) if ee_dims is not None else roles.position,
            rotation=() if ee_dims is not None else roles.rotation,
            gripper=(gripper_dim,) if gripper_dim is not None else roles.gripper,
            has_z=len(ee_dims) == 3 if ee_dims is not None else roles.has_z,  # given as x, y, z
        )
    return roles


def extract(
    meta: EpisodeMeta,
    arrays: dict[str, np.ndarray],
    ee_dims: tuple[int, ...] | None = None,
    gripper_dim: int | None = None,
) -> Kinematics:
    """The segmenter's signals; `ee_dims` / `gripper_dim` index `observation.state` and win over names."""
    n = meta.n_frames
    state = arrays.get(STATE)
    action = arrays.get(ACTION)
    for key, arr in ((STATE, state), (ACTION, action)):
        if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
            raise KinematicsError(f"{key} has shape {arr.shape}; expected ({n}, d) for {n} frames")

    # Measured end-effector pose, translation then rotation.
    position = rotation = grip_state = None
    vertical = None
    if state is not None:
        state = np.asarray(state, dtype=np.float64)
        roles = _state_roles(meta, arrays, ee_dims, gripper_dim)
        if roles.position:
            position = state[:, list(roles.position)]
            vertical = roles.vertical
            rotation = state[:, list(roles.rotation)] if roles.rotation else None
        else:
            # No end effector named: the joints' motion still shows where phases change.
            others = [i for i in range(state.shape[1]) if i not in roles.gripper]
            log.debug("%s: no end-effector dims named; using %d state dims", meta.episode_id, len(others))
            position = state[:, others]
        if roles.gripper:
            grip_state = _first_component(state[:, list(roles.gripper)])

    measured = None
    if position is not None:
        parts = [_forward_diff(position)]
        if rotation is not None:
            parts.append(LEVER_ARM_M * _forward_diff(rotation))
        measured = np.concatenate(parts, axis=1)

    # The commanded motion, when the action is a velocity or delta command of the end effector.
    command = grip_command = command_vertical = None
    if action is not None:
        action = np.asarray(action, dtype=np.float64)
        a_roles = roles_from_names(tuple(meta.feature_names.get(ACTION) or ()))
        if a_roles.gripper:
            grip_command = action[:, a_roles.gripper[0]]
        if a_roles.position:
            command = action[:, list(a_roles.position + a_roles.rotation)]
            n_pos = len(a_roles.position)
            if measured is not None and not _is_velocity_command(command[:, :n_pos], measured[:, :n_pos]):
                command = None
            else:
                command_vertical = a_roles.vertical

    if command is not None:
        motion, source, vertical = command, "action (velocity command)", command_vertical
    elif measured is not None:
        motion, source = measured, "state (measured velocity)"
    elif action is not None:
        # Action only, unnamed: treat it as the command it is; the gripper cannot be told apart.
        motion, source, vertical = action, "action (unnamed)", None
    else:
        have = ", ".join(sorted(arrays)) or "none"
        raise KinematicsError(f"no `{ACTION}` or `{STATE}` array (arrays: {have})")

    speed = np.linalg.norm(measured if measured is not None else motion, axis=1)
    gripper = grip_command if grip_command is not None else grip_state
    return Kinematics(motion=motion, speed=speed, gripper=gripper, motion_source=source, vertical=vertical)
