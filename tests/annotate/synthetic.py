"""Scripted kinematic episodes with known phase boundaries, for the heuristic's tests.

A proportional controller drives the end effector through waypoints, as scripted demonstration
policies do; a phase ends when the waypoint is reached (or after a hold), and the next phase's
first command marks the true boundary. Names follow LIBERO-style conventions (`ee_x`, `gripper`,
actions `x, y, z, roll, pitch, yaw, gripper`) so name discovery is exercised beyond the fixture's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomvla.schemas import EpisodeMeta

FPS = 20
STATE_NAMES = ["ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw", "gripper"]
ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
GAIN = 8.0  # command per metre (or radian) of error, clipped to [-1, 1]
STEP_M = 0.012  # metres (radians) moved per frame at full command


@dataclass(frozen=True)
class Phase:
    """Drive to `pose` (x, y, z, yaw) with the gripper commanded `grip` (+1 closed, -1 open);
    `hold` > 0: stay for that many frames instead of waiting to arrive."""

    pose: tuple[float, float, float, float]
    grip: float = -1.0
    hold: int = 0
    subtask_start: bool = False  # True: a true boundary at this phase's first frame


def scripted(phases: list[Phase], seed: int = 0, tail: int = 8) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """state (n, 7), action (n, 7), true boundaries; `tail` frames of hold end the episode."""
    rng = np.random.default_rng(seed)
    pose = np.array([0.0, 0.5, 0.2, 0.0])
    grip_state = 1.0  # opening: 1 open, 0.3 closed on an object
    states, actions, boundaries = [], [], []
    for k, ph in enumerate(phases):
        if ph.subtask_start and k > 0:
            boundaries.append(len(actions))
        target = np.asarray(ph.pose)
        frames = 0
        while True:
            err = target - pose
            if (ph.hold and frames >= ph.hold) or (not ph.hold and np.abs(err).max() < 0.004) or frames > 400:
                break
            cmd = np.clip(GAIN * err, -1, 1)
            states.append([*pose[:3], 0.0, 0.0, pose[3], grip_state])
            actions.append([*cmd[:3], 0.0, 0.0, cmd[3], ph.grip])
            pose = pose + STEP_M * cmd + rng.normal(0, 2e-4, 4)
            grip_state += 0.25 * ((0.3 if ph.grip > 0 else 1.0) - grip_state)
            frames += 1
    for _ in range(tail):
        states.append([*pose[:3], 0.0, 0.0, pose[3], grip_state])
        actions.append([0, 0, 0, 0, 0, 0, phases[-1].grip])
    return np.asarray(states), np.asarray(actions), boundaries


def meta(task: str, n_frames: int, feature_names: dict[str, list[str]] | None = None) -> EpisodeMeta:
    return EpisodeMeta(
        episode_id="synthetic/0",
        dataset="synthetic",
        episode_index=0,
        source="synthetic",
        source_format="none",
        fps=FPS,
        n_frames=n_frames,
        task=task,
        feature_names=feature_names if feature_names is not None else {"observation.state": STATE_NAMES, "action": ACTION_NAMES},
    )


def pick_place(obj_xy: tuple[float, float], goal_xy: tuple[float, float], first: bool = True) -> list[Phase]:
    """Above the object, down, close; then lift (new subtask: the pick ends at the grasp, the
    object's first motion starts the place), carry, down, open; the next pick-and-place starts a
    new subtask."""
    ox, oy = obj_xy
    gx, gy = goal_xy
    return [
        Phase((ox, oy, 0.15, 0.0), subtask_start=not first),
        Phase((ox, oy, 0.03, 0.0)),
        Phase((ox, oy, 0.03, 0.0), grip=1.0, hold=10),
        Phase((ox, oy, 0.2, 0.0), grip=1.0, subtask_start=True),
        Phase((gx, gy, 0.2, 0.0), grip=1.0),
        Phase((gx, gy, 0.06, 0.0), grip=1.0),
        Phase((gx, gy, 0.06, 0.0), grip=-1.0, hold=10),
    ]


def write_video(path, n_frames: int, fps: int = FPS, size: int = 16):
    """A tiny H.264 clip of `n_frames` grey frames (for episodes that have video and nothing else)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 8 * i % 256, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
