"""End-effector and gripper signals of an episode, found from its arrays and feature names.

The segmenter needs three per-frame signals: a motion signal (how the end effector is told to
move, or moves), the measured speed, and the gripper. Which dimensions hold them is read from the
dataset's names (LeRobot `names`: `hand_x`, `ee_x`, `gripper_0`, `dx`, `roll`, `ee_qx`, and the
readers' names for LIBERO/robomimic HDF5: `ee_x`, axis-angle `ee_ax`, `gripper_0`), or given
explicitly by the caller.

Several arms are told apart by a prefix of their feature names (`left_`/`right_`, `robot0_`/
`robot1_`, `arm0_`/`arm1_`, or prefixes the caller gives): each arm's signals are found as for one
arm, the motions are put side by side and each arm keeps its own gripper, so that the segmenter
sees every arm's events (one arm grasps, both hold, one releases).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from atomvla.errors import UserError
from atomvla.schemas import EpisodeMeta

log = logging.getLogger(__name__)

STATE = "observation.state"
ACTION = "action"

_GRIPPER = re.compile(r"grip|finger|claw|jaw")
_ROTATION = re.compile(r"roll|pitch|yaw|rot|quat|orient|euler|angle|(^|[_.\s-])[rqa][xyzw]$|^[rq][xyzw]$")
_AXIS = re.compile(r"(^|[_.\s-])(d|delta_|pos_|position_)?([xyz])$|^d?([xyz])$")
# An arm's prefix: a side or a numbered robot/arm, then a separator ("left_waist", "robot0_eef_pos_x").
_ARM = re.compile(r"^(left|right|(?:robot|arm)_?\d+)(?=[_.\s-])")
# Rotation and translation velocities are compared as the displacement of a point this far from
# the wrist (metres per radian): a quarter turn then weighs like a 15 cm move.
LEVER_ARM_M = 0.1
# A command whose per-axis correlation with the measured velocity reaches this is a velocity or
# delta command; otherwise (absolute targets, joint commands) the measured motion is used.
_COMMAND_CORRELATION = 0.3


class KinematicsError(UserError, ValueError):
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
    `gripper` (n,) or None: gripper command, or opening when there is no command (the first arm's).
    `vertical`: column of `motion` that moves the end effector up and down, if known (one arm only).
    `grippers`: every arm's gripper signal, as `gripper`; `fingers`: every arm's measured opening
    (the command where none is measured), None for an arm without a gripper; `arms`: their names.
    """

    motion: np.ndarray
    speed: np.ndarray
    gripper: np.ndarray | None
    motion_source: str
    vertical: int | None = None
    grippers: tuple[np.ndarray | None, ...] = ()
    fingers: tuple[np.ndarray | None, ...] = ()
    arms: tuple[str, ...] = ("arm",)
    # scores computed from these signals, kept so that each is computed once per episode (see
    # heuristic.motion_scores: the learned features read the scores the heuristic used)
    scores: dict[int, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def take(self, frames: np.ndarray) -> Kinematics:
        """The same signals on a subset of the frames (indices, in order)."""
        pick = lambda a: None if a is None else a[frames]  # noqa: E731
        return Kinematics(
            motion=self.motion[frames], speed=self.speed[frames], gripper=pick(self.gripper),
            motion_source=self.motion_source, vertical=self.vertical,
            grippers=tuple(pick(g) for g in self.grippers), fingers=tuple(pick(f) for f in self.fingers), arms=self.arms,
        )

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


def _state_roles(names: list[str], d: int, ee_dims, gripper_dim) -> Roles:
    roles = roles_from_names(tuple(names)) if names else Roles()
    if ee_dims is not None or gripper_dim is not None:
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


@lru_cache(maxsize=256)
def arm_prefixes(names: tuple[str, ...]) -> tuple[str, ...]:
    """The arms' name prefixes ("left", "right", "robot0", ...) in order of first use; () for one arm
    (cached, as `roles_from_names`: every episode of a dataset has the same names)."""
    found: dict[str, None] = {}
    for name in names:
        if (m := _ARM.match(name.lower().strip())) is not None:
            found.setdefault(m.group(1))
    return tuple(found) if len(found) > 1 else ()


def arm_columns(names: Sequence[str], prefix: str) -> list[int]:
    """The columns of the arm whose names start with `prefix` (every column for prefix "")."""
    return [i for i, n in enumerate(names) if n.lower().strip().startswith(prefix)]


def arm_feature_names(names: Sequence[str], idx: list[int], prefix: str) -> list[str]:
    """Those columns' names as one arm's, its prefix removed (lowercase)."""
    return [names[i].lower().strip()[len(prefix):].lstrip("_.- ") for i in idx]


@dataclass(frozen=True)
class _Arm:
    measured: np.ndarray | None  # (n, d) measured velocity, translation then rotation
    command: np.ndarray | None  # (n, d) velocity command, when the action is one
    command_vertical: int | None
    vertical: int | None
    grip_command: np.ndarray | None
    grip_state: np.ndarray | None
    action_only: np.ndarray | None  # an unnamed action, when there is nothing else


def _one_arm(
    episode_id: str,
    state: np.ndarray | None,
    state_names: list[str],
    action: np.ndarray | None,
    action_names: list[str],
    ee_dims: tuple[int, ...] | None,
    gripper_dim: int | None,
) -> _Arm:
    """One arm's signals from its own columns of the state and the action."""
    # Measured end-effector pose, translation then rotation.
    position = rotation = grip_state = None
    vertical = None
    if state is not None:
        roles = _state_roles(state_names, state.shape[1], ee_dims, gripper_dim)
        if roles.position:
            position = state[:, list(roles.position)]
            vertical = roles.vertical
            rotation = state[:, list(roles.rotation)] if roles.rotation else None
        else:
            # No end effector named: the joints' motion still shows where phases change.
            others = [i for i in range(state.shape[1]) if i not in roles.gripper]
            log.debug("%s: no end-effector dims named; using %d state dims", episode_id, len(others))
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
        a_roles = roles_from_names(tuple(action_names))
        if a_roles.gripper:
            grip_command = action[:, a_roles.gripper[0]]
        if a_roles.position:
            command = action[:, list(a_roles.position + a_roles.rotation)]
            n_pos = len(a_roles.position)
            if measured is not None and not _is_velocity_command(command[:, :n_pos], measured[:, :n_pos]):
                command = None
            else:
                command_vertical = a_roles.vertical
    action_only = action if (measured is None and command is None) else None
    return _Arm(measured, command, command_vertical, vertical, grip_command, grip_state, action_only)


def extract(
    meta: EpisodeMeta,
    arrays: dict[str, np.ndarray],
    ee_dims: tuple[int, ...] | None = None,
    gripper_dim: int | None = None,
    arms: tuple[str, ...] | None = None,
) -> Kinematics:
    """The segmenter's signals; `ee_dims` / `gripper_dim` index `observation.state` and win over names
    (one arm); `arms` are the arms' name prefixes and win over the ones found in the names."""
    n = meta.n_frames
    state = arrays.get(STATE)
    action = arrays.get(ACTION)
    for key, arr in ((STATE, state), (ACTION, action)):
        if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
            raise KinematicsError(f"{key} has shape {arr.shape}; expected ({n}, d) for {n} frames")
    if state is None and action is None:
        have = ", ".join(sorted(arrays)) or "none"
        raise KinematicsError(f"no `{ACTION}` or `{STATE}` array (arrays: {have})")
    state = None if state is None else np.asarray(state, dtype=np.float64)
    action = None if action is None else np.asarray(action, dtype=np.float64)
    s_names = list(meta.feature_names.get(STATE) or [])
    a_names = list(meta.feature_names.get(ACTION) or [])
    if arms is None:
        arms = () if ee_dims is not None or gripper_dim is not None else arm_prefixes(tuple(s_names or a_names))

    if not arms:
        parts = [_one_arm(meta.episode_id, state, s_names, action, a_names, ee_dims, gripper_dim)]
        arm_names: tuple[str, ...] = ("arm",)
    else:
        parts = []
        for prefix in arms:
            s_idx, a_idx = arm_columns(s_names, prefix), arm_columns(a_names, prefix)
            if not s_idx and not a_idx:
                raise KinematicsError(f"no feature of arm {prefix!r} in {STATE} or {ACTION} (names: {', '.join(s_names or a_names)})")
            parts.append(_one_arm(
                meta.episode_id,
                state[:, s_idx] if state is not None and s_idx else None, arm_feature_names(s_names, s_idx, prefix),
                action[:, a_idx] if action is not None and a_idx else None, arm_feature_names(a_names, a_idx, prefix),
                None, None,
            ))
        arm_names = tuple(arms)

    # Commanded motion wins where every arm has it (it leads the measured motion); else measured.
    if all(p.command is not None for p in parts):
        motions, source = [p.command for p in parts], "action (velocity command)"
        vertical = parts[0].command_vertical
    elif all(p.measured is not None for p in parts):
        motions, source = [p.measured for p in parts], "state (measured velocity)"
        vertical = parts[0].vertical
    else:
        # Action only, unnamed: treat it as the command it is; the gripper cannot be told apart.
        motions = [p.measured if p.measured is not None else p.command if p.command is not None else p.action_only for p in parts]
        motions = [m for m in motions if m is not None]
        source, vertical = "action (unnamed)", None
    motion = motions[0] if len(motions) == 1 else np.concatenate(motions, axis=1)
    measured = [p.measured for p in parts if p.measured is not None]
    speed = np.linalg.norm(np.concatenate(measured, axis=1) if len(measured) == len(parts) else motion, axis=1)
    grippers = tuple(p.grip_command if p.grip_command is not None else p.grip_state for p in parts)
    fingers = tuple(p.grip_state if p.grip_state is not None else p.grip_command for p in parts)
    return Kinematics(
        motion=motion,
        speed=speed,
        gripper=grippers[0],
        motion_source=source,
        vertical=vertical if len(parts) == 1 else None,
        grippers=grippers,
        fingers=fingers,
        arms=arm_names,
    )
