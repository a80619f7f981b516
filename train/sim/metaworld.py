"""Meta-World (v3, MuJoCo) as recorded by the demonstration generator (benchmarks/metaworld_gt).

The recording conventions live here, once, for the generator and for rollouts: the `corner`
camera at 128x128 flipped upright (it renders upside down), the state (one of `STATES`: by default
the first four values of Meta-World's observation, hand x, y, z in metres and gripper opening, 1 =
open), actions (dx, dy, dz, grip; grip > 0 closes) clipped to [-1, 1] as the env clips them, and
seeding: `Meta-World/MT1` made with the seed (the task variation) and reset with it.
Each state convention is its own simulator name (`metaworld`, `metaworld-objects`), so a rollout
checks a policy's state layout against the one it was recorded with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from jaxtyping import Float, UInt8

from atomvla.train.sim import SIMULATORS, Layout, Observation, SimError, check_env_id, step_mujoco

logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL logs an INFO line when Meta-World imports it

CAMERA = "corner"
CAMERA_KEY = f"observation.images.{CAMERA}"
IMAGE_SIZE = 128
STATE_KEY = "observation.state"
ACTION_KEY = "action"
ACTION_NAMES = ("dx", "dy", "dz", "grip")
# State conventions: which values of Meta-World's 39-value observation a recording keeps, by name.
# `objects` adds the first object's position (obs[4:7]) and the goal (obs[36:39], observable in MT1):
# the usual low-dimensional behaviour-cloning state, so a small policy need not find them in pixels.
STATES: dict[str, dict[str, int]] = {
    "hand": {"hand_x": 0, "hand_y": 1, "hand_z": 2, "gripper": 3},
    "objects": {"hand_x": 0, "hand_y": 1, "hand_z": 2, "gripper": 3, "object_x": 4, "object_y": 5, "object_z": 6,
                "goal_x": 36, "goal_y": 37, "goal_z": 38},
}
SIMULATOR_NAMES = {"hand": "metaworld", "objects": "metaworld-objects"}


def feature_names(state: str = "hand") -> dict[str, tuple[str, ...]]:
    """The dataset's feature names of the state convention `state` (see `STATES`)."""
    return {STATE_KEY: tuple(STATES[state]), ACTION_KEY: ACTION_NAMES}


FEATURE_NAMES = feature_names()
# Software rendering (llvmpipe) is the generator's bottleneck. A 1024² shadow map instead of 4096²
# and no multisampling render a frame ~2.5x faster (~45 ms on a busy 2-core machine); the frames
# differ from the defaults by ~1.7 grey levels on average (aliased edges), below AV1's own loss.
SHADOW_MAP_SIZE = 1024
MULTISAMPLES = 0
MAX_STEPS = 500  # Meta-World's own episode limit


def make_env(task: str, seed: int, render: bool = True) -> Any:
    """The gymnasium env of `task` for `seed`, rendering the recorded camera unless `render` is
    False (not yet reset)."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen; read when mujoco is first imported
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World/* environments)

    env = gym.make(
        "Meta-World/MT1", env_name=task, seed=seed,
        render_mode="rgb_array" if render else None, camera_name=CAMERA, width=IMAGE_SIZE, height=IMAGE_SIZE,
        disable_env_checker=True,  # it warns about Meta-World's own observation bounds on every step
    )
    quality = env.unwrapped.model.vis.quality  # read when the renderer starts, on the first render
    quality.shadowsize, quality.offsamples = SHADOW_MAP_SIZE, MULTISAMPLES
    return env


def frame_of(env: Any) -> UInt8[np.ndarray, "h w 3"]:
    return np.ascontiguousarray(env.render()[::-1])  # the corner camera renders upside down


def state_of(obs: Float[np.ndarray, " 39"], state: str = "hand") -> Float[np.ndarray, " s"]:
    return np.asarray(obs[list(STATES[state].values())], np.float32)


def action_of(action: Float[np.ndarray, " 4"]) -> Float[np.ndarray, " 4"]:
    return np.clip(np.asarray(action, np.float32).reshape(4), -1.0, 1.0)


@cache
def _env_ids() -> tuple[str, ...]:
    try:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    except ImportError as exc:
        raise SimError(f"Meta-World is not installed ({exc}); pip install -e '.[sim]'") from None
    return tuple(sorted(ALL_V3_ENVIRONMENTS))


def layout_of(state: str = "hand") -> Layout:
    names = feature_names(state)
    return Layout((CAMERA_KEY,), names[STATE_KEY], names[ACTION_KEY])


class MetaWorldEnv:
    """One Meta-World task; `reset(seed)` rebuilds the env when the seed (the task variation) changes."""

    max_steps = MAX_STEPS  # Meta-World raises past its own limit

    def __init__(self, task: str, state: str = "hand"):
        self.task = task
        self.state = state
        self.layout = layout_of(state)
        self._env: Any = None
        self._seed: int | None = None
        self._obs: np.ndarray | None = None
        self._steps = 0

    def reset(self, seed: int) -> None:
        if self._seed != seed:
            self.close()
            self._env, self._seed = make_env(self.task, seed), seed
        self._obs, _ = self._env.reset(seed=seed)
        self._steps = 0

    def step(self, action: Float[np.ndarray, " 4"]) -> bool:
        self._steps += 1
        self._obs, _, _, _, info = step_mujoco(self._env.unwrapped.data, lambda: self._env.step(action_of(action)),
                                               self.task, self._steps, action)
        return bool(info["success"])

    def observe(self) -> Observation:
        return {"images": {CAMERA_KEY: frame_of(self._env)}, "state": state_of(self._obs, self.state)}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._seed = None, None


class MetaWorld:
    def __init__(self, state: str = "hand"):
        self.name, self.state = SIMULATOR_NAMES[state], state

    def env_ids(self) -> Sequence[str]:
        return _env_ids()

    def layout(self, env_id: str) -> Layout:
        check_env_id(self, env_id)
        return layout_of(self.state)

    def make(self, env_id: str) -> MetaWorldEnv:
        check_env_id(self, env_id)
        return MetaWorldEnv(env_id, self.state)


for _state in STATES:
    SIMULATORS.register(MetaWorld(_state))
