"""Simulators behind one small interface, rendering exactly as their datasets were recorded.

`SIMULATORS[name]` (lazy plug-ins: `metaworld`, `metaworld-objects`, `libero`) is a `Simulator`: it
lists its env ids and makes a `SimEnv` for one of them. A `SimEnv` resets with a seed, steps with one action, and
observes in the shape `load_policy().infer` takes (`{"images": {camera: (H, W, 3)
uint8}, "state": (S,) float32}`); its `Layout` names the cameras, state and action features as a
dataset recorded from it names them, so a checkpoint can be checked against it before any rollout.

Two capabilities are optional (`instruction_of`, `env_id_in_suite` ask for them): a simulator whose
tasks come with their instruction (`instruction(env_id)`), and one whose tasks are grouped in suites
(`env_id_in_suite(suite, task)`: a task named or numbered within a suite). A `SimEnv` with a finite
set of seeds (recorded initial states) says how many in `seeds`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, TypeVar

import numpy as np
from jaxtyping import Float

from atomvla.errors import UserError
from atomvla.registry import Registry

T = TypeVar("T")


class SimError(UserError, ValueError):
    """An env id the simulator does not have, or a simulator that is not installed."""


class SimCrash(RuntimeError):
    """The simulation broke mid-episode (unstable physics, a simulator error): that episode fails."""


@dataclass(frozen=True)
class Layout:
    """What an env observes and takes, named as in a dataset recorded from it."""

    cameras: tuple[str, ...]
    state: tuple[str, ...]
    action: tuple[str, ...]


Observation = dict[str, Any]  # {"images": {camera: uint8 (H, W, 3)}, "state": float32 (S,)}


class SimEnv(Protocol):
    layout: Layout
    max_steps: int

    def reset(self, seed: int) -> None: ...

    def step(self, action: Float[np.ndarray, " a"]) -> bool:
        """Apply one action; whether the task has succeeded. Raises `SimCrash` if the simulation breaks."""
        ...

    def observe(self) -> Observation:
        """The current observation (renders the cameras: call it only when a policy or a video needs it)."""
        ...

    def close(self) -> None: ...


class Simulator(Protocol):
    name: str

    def env_ids(self) -> Sequence[str]: ...

    def layout(self, env_id: str) -> Layout: ...

    def make(self, env_id: str) -> SimEnv: ...


SIMULATORS: Registry[Simulator] = Registry(
    "simulator", plugins=["atomvla.train.sim.metaworld", "atomvla.train.sim.libero"]
)


def instruction_of(sim: Simulator, env_id: str) -> str | None:
    """The instruction the simulator gives `env_id`'s task, or None where the user must write one."""
    instruction = getattr(sim, "instruction", None)
    return instruction(env_id) if instruction is not None else None


def env_id_in_suite(sim: Simulator, suite: str | None, task: str) -> str:
    """The env id of `task` as a command line names it: itself, or within `suite` where the simulator has suites."""
    if suite is None:
        return task
    resolve = getattr(sim, "env_id_in_suite", None)
    if resolve is None:
        raise SimError(f"{sim.name} has no suites: drop --suite")
    return resolve(suite, task)


@cache
def _unstable_warnings() -> tuple[int, ...]:
    """MuJoCo's warnings that mean the physics blew up (it then resets the simulation silently)."""
    import mujoco

    w = mujoco.mjtWarning
    return (int(w.mjWARN_BADQACC), int(w.mjWARN_BADQVEL), int(w.mjWARN_BADQPOS), int(w.mjWARN_BADCTRL))


def step_mujoco(data: Any, step: Callable[[], T], where: str, step_index: int, action: np.ndarray) -> T:
    """`step()` of a MuJoCo simulation whose `data` it reads; raises SimCrash naming `where` and the
    step when MuJoCo warned that the physics blew up (e.g. on a NaN action): it only warns and
    resets the simulation, so the episode would go on from a state it never reached."""
    unstable = _unstable_warnings()
    before = [data.warning[w].number for w in unstable]
    out = step()
    if any(data.warning[w].number > n for w, n in zip(unstable, before)):
        raise SimCrash(f"{where}: the simulation became unstable at step {step_index} "
                       f"(NaN or Inf in the physics; action {np.asarray(action).tolist()})")
    return out


def close_names(name: str, names: Sequence[str], what: str) -> str:
    """The end of an 'unknown name' message: the closest of `names`, else how many `what` there are."""
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else f" (it has {len(names)} {what}, e.g. {', '.join(names[:3])})"


def check_env_id(sim: Simulator, env_id: str) -> None:
    ids = list(sim.env_ids())
    if env_id not in ids:
        raise SimError(f"{sim.name} has no env {env_id!r}{close_names(env_id, ids, 'envs')}")
