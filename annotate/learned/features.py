"""Per-frame input features of the learned boundary model, the same layout for every robot.

Every dataset has some arm signal (end effector or joints), a gripper and actions; their names
and dimensions differ. `atomvla.annotate.kinematics.extract` already turns them into the same
signals (commanded or measured motion, speed, every arm's gripper and fingers); here those become
a fixed set of channels, normalised per episode, with the arms pooled (max / min / sum over arms)
so one model reads one arm or several. The heuristic's kinematic events are channels too (its
change and contact scores, every gripper event, the boundaries it proposes): the network learns
where a team's boundaries lie relative to them. The instruction's plan (how many subtasks, which
skills) is broadcast to every frame. Optional `pixels`: a 4x4 grey thumbnail per frame and the
frame-to-frame change, for episodes whose look matters.

Scene channels read the state that is not the robot's: the `observation.state` dims no arm uses
(what `extract` takes for an end effector, joints or gripper is the robot's; the rest, e.g. an
object's or a goal's position, is the scene) and LeRobot's `observation.environment_state`. Some
boundaries are only seen there (a door starting to swing, a lever turning, the hand arriving at a
goal). Dims named `<prefix>_x/_y/_z` form a point, every other dim is a one-dimensional group;
motion is measured against the hand's own typical speed, so a still point (a goal) stays at 0
rather than having its jitter blown up. An episode without scene state gets zeros and `scene` 0.

Features are computed on a fixed time grid of `GRID_FPS` frames a second (resampled from the
episode's rate) so that one receptive field means the same duration at 20 fps and at 50 fps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from atomvla.annotate.backends.heuristic import HeuristicConfig, decompose, motion_scores
from atomvla.annotate.instructions import plan
from atomvla.annotate.kinematics import (
    ACTION, STATE, Kinematics, KinematicsError, Roles, arm_columns, arm_feature_names, arm_prefixes, extract, roles_from_names,
)
from atomvla.annotate.segmentation import gripper_events, quantile
from atomvla.schemas import MAX_SUBTASKS, SKILLS, EpisodeMeta

GRID_FPS = 20.0
ENVIRONMENT_STATE = "observation.environment_state"  # LeRobot's standard key for the scene's state
# Gaussian width (grid frames) of an event marked on an event channel.
EVENT_SIGMA = 1.5
WINDOW_S = 0.3  # the heuristic's default half-window (its change scores use the same)
THUMB = 4  # pixels: THUMB x THUMB grey thumbnail
# The scene moves in a frame where some point moves more than this fraction of the hand's typical
# step (Meta-World: ~1 mm); a motion onset follows at least ONSET_REST_S of stillness, so the
# settling of objects right after a reset is no onset.
MOVING = 0.1
ONSET_REST_S = 0.25
_POINT_AXIS = re.compile(r"^(.+)[_.\s-]([xyz])$")

KINEMATIC_CHANNELS = (
    "speed", "motion", "motion_up", "motion_sideways",
    "grip_max", "grip_min", "grip_rate_max", "grip_rate_sum",
    "fingers_max", "fingers_min", "fingers_rate_max", "fingers_rate_sum",
    "progress", "arms",
)
SCENE_CHANNELS = ("scene", "scene_speed", "scene_moved", "scene_onset", "scene_near")
HEURISTIC_CHANNEL = "heuristic_boundary"  # bumps at the boundaries the heuristic proposes
EVENT_CHANNELS = ("change_score", "contact_score", "close_event", "open_event", HEURISTIC_CHANNEL)
PLAN_CHANNELS = ("plan_count", *(f"plan_{s}" for s in SKILLS))
PIXEL_CHANNELS = (*(f"pixel_{i}" for i in range(THUMB * THUMB)), "pixel_change")


def layout(events: bool, pixels: bool) -> tuple[str, ...]:
    """The channel names of a feature set, in order; stored with the weights and checked on load."""
    return (*KINEMATIC_CHANNELS, *SCENE_CHANNELS, *(EVENT_CHANNELS if events else ()), *PLAN_CHANNELS,
            *(PIXEL_CHANNELS if pixels else ()))


def robot_layout(meta: EpisodeMeta) -> str:
    """What a fine-tuned profile is specific to: the names of the state and action dimensions."""
    parts = [f"{key}[{','.join(meta.feature_names.get(key) or ())}]" for key in (STATE, ACTION) if meta.feature_names.get(key)]
    return " ".join(parts) or "no named state or action"


@dataclass(frozen=True)
class Features:
    """One episode's model input: (t, c) float32 on the grid, and how grid frames map back."""

    x: np.ndarray
    n_frames: int  # the episode's own frame count
    scale: float  # episode frames per grid frame

    def to_frame(self, grid_frame: float) -> int:
        return int(min(max(round(grid_frame * self.scale), 0), self.n_frames - 1))

    def to_grid(self, frame: float) -> int:
        return int(min(max(round(frame / self.scale), 0), len(self.x) - 1))


def _unit(x: np.ndarray) -> np.ndarray:
    """Scaled by its 90th percentile of magnitude (1 if that is 0)."""
    return x / (quantile(np.abs(x), 0.9) or 1.0)


def _level(g: np.ndarray) -> np.ndarray:
    lo, hi = float(g.min()), float(g.max())
    return (g - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(g)


def _pooled(signals: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Arms pooled: highest and lowest level, fastest change, summed change (4 channels)."""
    if not signals:
        return [np.zeros(n)] * 4
    levels = np.stack([_level(g) for g in signals])
    rates = np.diff(levels, axis=1, prepend=levels[:, :1]) * 10.0
    return [levels.max(0), levels.min(0), np.abs(rates).max(0), rates.sum(0)]


def _bumps(frames: list[int], n: int, sigma: float) -> np.ndarray:
    """(n,): the highest of Gaussian bumps of width `sigma` at `frames` (zeros without any)."""
    if not frames:
        return np.zeros(n)
    return np.exp(-0.5 * ((np.arange(n)[None, :] - np.asarray(frames)[:, None]) / sigma) ** 2).max(axis=0)


def _kinematic(kin: Kinematics, n: int) -> list[np.ndarray]:
    motion = kin.motion
    norm = np.linalg.norm(motion, axis=1)
    scale = quantile(norm, 0.9) or 1.0
    up = motion[:, kin.vertical] / scale if kin.vertical is not None else np.zeros(n)
    sideways = np.linalg.norm(kin.horizontal(), axis=1) / scale
    grippers = [g for g in kin.grippers if g is not None]
    fingers = [f for f in kin.fingers if f is not None]
    return [
        _unit(kin.speed), norm / scale, up, sideways,
        *_pooled(grippers, n), *_pooled(fingers, n),
        np.linspace(0.0, 1.0, n), np.full(n, len(kin.arms) - 1.0),
    ]


def _events(kin: Kinematics, task: str, n: int, fps: float) -> list[np.ndarray]:
    w = max(2, round(WINDOW_S * fps))
    change, contact = motion_scores(kin, w)
    contact = np.zeros(n) if contact is None else contact
    closes, opens = [], []
    for g in kin.grippers:
        if g is not None:
            for f, kind in gripper_events(g, 2):
                (closes if kind == "close" else opens).append(f)
    sigma = EVENT_SIGMA * fps / GRID_FPS
    try:
        subtasks, _ = decompose(kin, task, n, fps, HeuristicConfig())
        proposed = [s.start_frame for s in subtasks[1:]]
    except KinematicsError:
        proposed = []
    return [change / (1.0 + change), contact, _bumps(closes, n, sigma), _bumps(opens, n, sigma), _bumps(proposed, n, sigma)]


@lru_cache(maxsize=256)
def _arm_roles(names: tuple[str, ...]) -> tuple[tuple[tuple[int, ...], Roles], ...]:
    """Each arm's state columns and the roles `extract` finds in them (arms told apart by name prefix);
    cached: every episode of a dataset has the same names."""
    out = []
    for prefix in arm_prefixes(names) or ("",):
        idx = arm_columns(names, prefix)
        out.append((tuple(idx), roles_from_names(tuple(arm_feature_names(names, idx, prefix)))))
    return tuple(out)


def robot_state_dims(names: Sequence[str]) -> set[int]:
    """The `observation.state` dims `extract` reads for some arm (end effector, joints, gripper),
    found from the names as it finds them; every dim when they are unnamed (joints)."""
    used: set[int] = set()
    for idx, roles in _arm_roles(tuple(names)):
        if roles.position:
            used.update(idx[j] for j in (*roles.position, *roles.rotation, *roles.gripper))
        else:  # no end effector named: extract reads every dim of the arm as joints
            used.update(idx)
    return used


def scene_state(meta: EpisodeMeta, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(n, k) float64 scene state and its k names: the state dims no arm uses, then the
    environment state; k = 0 without either. Raises KinematicsError naming the episode for an
    environment state of the wrong length, or NaN/inf in either."""
    n = meta.n_frames
    parts, names = [], []
    state = arrays.get(STATE)
    if state is not None and state.ndim == 2:
        s_names = list(meta.feature_names.get(STATE) or [])
        if len(s_names) == state.shape[1]:  # unnamed dims are joints (see robot_state_dims)
            robot = robot_state_dims(s_names)
            free = [i for i in range(state.shape[1]) if i not in robot]
            parts.append(np.asarray(state, np.float64)[:, free])
            names += [s_names[i] for i in free]
    env = arrays.get(ENVIRONMENT_STATE)
    if env is not None:
        env = np.asarray(env, np.float64)
        env = env.reshape(len(env), -1) if env.ndim > 1 else env[:, None]
        if len(env) != n:
            raise KinematicsError(f"{meta.episode_id}: {ENVIRONMENT_STATE} has {len(env)} frames; the episode has {n}")
        e_names = list(meta.feature_names.get(ENVIRONMENT_STATE) or [])
        parts.append(env)
        names += e_names if len(e_names) == env.shape[1] else [f"env_{i}" for i in range(env.shape[1])]
    x = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
    if not np.isfinite(x).all():
        bad = sorted({names[j] for j in np.nonzero(~np.isfinite(x).all(axis=0))[0]})
        raise KinematicsError(f"{meta.episode_id}: scene state {', '.join(bad)} has NaN or inf values")
    return x, tuple(names)


def scene_groups(names: Sequence[str]) -> list[list[int]]:
    """Column groups of the scene: `<prefix>_x`, `_y`, `_z` together as one point (in x, y, z order),
    every other dim alone."""
    points: dict[str, dict[str, int]] = {}
    rotation = set(roles_from_names(tuple(names)).rotation)  # a quaternion's qx, qy, qz are no point
    for i, name in enumerate(names):
        if i not in rotation and (m := _POINT_AXIS.match(name.lower().strip())) is not None:
            points.setdefault(m.group(1), {})[m.group(2)] = i
    groups = [[axes[a] for a in "xyz"] for axes in points.values() if len(axes) == 3]
    grouped = {i for g in groups for i in g}
    return groups + [[i] for i in range(len(names)) if i not in grouped]


def _end_effectors(meta: EpisodeMeta, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every arm's end-effector position (n, 3) where the state names one in x, y, z."""
    state = arrays.get(STATE)
    names = list(meta.feature_names.get(STATE) or [])
    if state is None or len(names) != state.shape[1]:
        return []
    return [np.asarray(state, np.float64)[:, [idx[j] for j in roles.position]]
            for idx, roles in _arm_roles(tuple(names)) if len(roles.position) == 3 and roles.has_z]


def _largest_norm(d: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """(n, k) -> (n,): per frame, the largest norm of a group of columns (points of 3, single dims)."""
    sq = d * d
    points = [i for g in groups if len(g) == 3 for i in g]
    singles = [g[0] for g in groups if len(g) == 1]
    norms = [np.sqrt(np.add.reduce(sq[:, points].reshape(len(d), -1, 3), axis=2)), np.sqrt(sq[:, singles])]
    return np.concatenate(norms, axis=1).max(axis=1)


def _scene(meta: EpisodeMeta, arrays: dict[str, np.ndarray], kin: Kinematics, n: int) -> list[np.ndarray]:
    """The scene channels (SCENE_CHANNELS), zeros without scene state. Motion is in units of the
    hand's typical speed (its 90th percentile) and, for displacement, of the hand's travel in a
    second at that speed: a scene point carried by the hand reads ~1, a still one 0."""
    x, names = scene_state(meta, arrays)
    zeros = [np.zeros(n)] * len(SCENE_CHANNELS)
    if x.shape[1] == 0:
        return zeros
    speed_ref = quantile(kin.speed, 0.9) or 1.0
    dist_ref = speed_ref * meta.fps
    groups = scene_groups(names)
    step = _largest_norm(np.diff(x, axis=0, prepend=x[:1]), groups)
    speed = np.clip(step / speed_ref, 0.0, 3.0)
    moved_n = np.clip(_largest_norm(x - x[0], groups) / dist_ref, 0.0, 3.0)
    moving = step > MOVING * speed_ref
    rest = max(1, round(ONSET_REST_S * meta.fps))
    moving_before = np.concatenate([[0], np.cumsum(moving)])  # [t]: moving frames before frame t
    still_before = moving_before[rest:n] == moving_before[: max(n - rest, 0)]  # none in [t - rest, t)
    onsets = (np.flatnonzero(moving[rest:] & still_before) + rest).tolist()
    onset = _bumps(onsets, n, EVENT_SIGMA * meta.fps / GRID_FPS)
    near = np.zeros(n)
    points = [g for g in groups if len(g) == 3]
    ratios = [np.linalg.norm(ee - x[:, g], axis=1) / max(float(np.linalg.norm(ee[0] - x[0, g])), 1e-6)
              for ee in _end_effectors(meta, arrays) for g in points]
    if ratios:
        near = np.clip(np.min(ratios, axis=0), 0.0, 2.0)
    return [np.ones(n), speed, moved_n, onset, near]


def _plan(task: str, n: int) -> list[np.ndarray]:
    steps = plan(task)
    skills = [s.skill for s in steps]
    return [np.full(n, min(len(steps), MAX_SUBTASKS) / MAX_SUBTASKS), *(np.full(n, float(skills.count(s))) for s in SKILLS)]


def pixel_channels(frames: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) uint8 -> (n, THUMB*THUMB + 1): a grey thumbnail normalised over the episode,
    and how much it changed since the previous frame."""
    grey = frames.astype(np.float32).mean(axis=3)
    n, h, w = grey.shape
    hh, ww = h // THUMB * THUMB, w // THUMB * THUMB
    thumb = grey[:, :hh, :ww].reshape(n, THUMB, hh // THUMB, THUMB, ww // THUMB).mean(axis=(2, 4)).reshape(n, -1)
    thumb = (thumb - thumb.mean(0)) / (thumb.std(0) + 1e-3)
    change = np.linalg.norm(np.diff(thumb, axis=0, prepend=thumb[:1]), axis=1)
    return np.concatenate([thumb, _unit(change)[:, None]], axis=1)


def to_grid(x: np.ndarray, fps: float) -> tuple[np.ndarray, float]:
    """(n, c) at `fps` -> (t, c) at GRID_FPS (linear interpolation) and the frames per grid frame."""
    n = len(x)
    if abs(fps - GRID_FPS) < 1e-6 or n < 2:
        return x, 1.0
    scale = fps / GRID_FPS
    t = max(2, round((n - 1) / scale) + 1)
    at = np.minimum(np.arange(t) * scale, n - 1)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (at - lo)[:, None]
    return x[lo] * (1 - frac) + x[hi] * frac, scale


def episode_features(
    meta: EpisodeMeta, arrays: dict[str, np.ndarray], events: bool, frames: np.ndarray | None = None
) -> Features:
    """The model input of one episode (raises KinematicsError when it has no usable state or action);
    `frames` (n, h, w, 3) adds the pixel channels."""
    n = meta.n_frames
    kin = extract(meta, arrays)
    cols = _kinematic(kin, n) + _scene(meta, arrays, kin, n)
    if events:
        cols += _events(kin, meta.task, n, meta.fps)
    cols += _plan(meta.task, n)
    x = np.stack(cols, axis=1)
    if frames is not None:
        x = np.concatenate([x, pixel_channels(frames)], axis=1)
    grid, scale = to_grid(x, meta.fps)
    return Features(np.nan_to_num(grid).astype(np.float32), n, scale)
