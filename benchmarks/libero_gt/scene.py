"""One LIBERO scene (a BDDL problem) driven step by step, with the poses a scripted policy needs.

The scene itself (env, reset, state, camera) is the rollout adapter's (atomvla.train.sim.libero):
the generator records exactly what `atom-train rollout --env libero` observes and takes. LIBERO is
imported lazily so that the rest of the package (and its test's skip) works where the simulator is
not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from atomvla.train.sim import libero
from atomvla.train.sim.libero import POS_SCALE_M, ROT_SCALE_RAD, init_states  # noqa: F401  (the generator's names)


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


class Scene(libero.Scene):
    """The adapter's scene plus object geometry and the BDDL predicates, for the scripted moves."""

    def __init__(self, suite: str, problem: str, *, image_size: int = libero.IMAGE_SIZE, camera: str = libero.CAMERA) -> None:
        super().__init__(suite, problem, image_size=image_size, camera=camera)
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
        """An object's (or body's) bounds, or a BDDL region site's ("living_room_table_plate_left_region")."""
        site = self._mujoco.mj_name2id(self._model, self._mujoco.mjtObj.mjOBJ_SITE, name)
        if site >= 0 and name not in self.env.obj_body_id:
            center, half = np.array(self._data.site_xpos[site]), np.array(self._model.site_size[site])
            return Box(center - half, center + half)
        boxes = self.geom_boxes(name)
        return Box(np.min([b.lo for b in boxes], axis=0), np.max([b.hi for b in boxes], axis=0))

    def slide_joint(self, name: str) -> tuple[float, np.ndarray, np.ndarray]:
        """A slide joint's position, world axis (3,) and range (2,)."""
        j = self._model.joint(name)
        return float(self._data.qpos[j.qposadr[0]]), np.array(self._data.xaxis[j.id]), np.array(j.range)

    def hinge_joint(self, name: str) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """A hinge joint's angle, world anchor (3,), world axis (3,) and range (2,)."""
        j = self._model.joint(name)
        return (float(self._data.qpos[j.qposadr[0]]), np.array(self._data.xanchor[j.id]), np.array(self._data.xaxis[j.id]),
                np.array(j.range))

    def holds(self, predicate: tuple[str, ...]) -> bool:
        """Evaluate a BDDL predicate, e.g. ("in", "ketchup_1", "basket_1_contain_region")."""
        return bool(self.env._eval_predicate(list(predicate)))
