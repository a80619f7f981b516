"""A test-only simulator plug-in: Meta-World whose env takes its own process down at chosen seeds,
the way a segfault in MuJoCo takes a rollout worker down, or hangs at one, as a deadlock would. Registered on import (also in a rollout's
worker processes, which import it when they unpickle the simulator)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from atomvla.train.sim import SIMULATORS
from atomvla.train.sim.metaworld import MetaWorld

NAME = "metaworld-that-crashes"
SEGFAULT_SEED = 0  # killed by SIGSEGV at its second step
EXIT_SEED = 2  # os._exit(3) at its second step: no exception, no cleanup
HANG_SEED = 3  # never returns from its second step


class CrashingEnv:
    def __init__(self, env):
        self.env, self.layout, self.max_steps = env, env.layout, env.max_steps
        self.seed, self.steps = None, 0

    def reset(self, seed: int) -> None:
        self.env.reset(seed)
        self.seed, self.steps = seed, 0

    def step(self, action: np.ndarray) -> bool:
        self.steps += 1
        if self.steps == 2 and self.seed == SEGFAULT_SEED:
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.steps == 2 and self.seed == EXIT_SEED:
            os._exit(3)
        if self.steps == 2 and self.seed == HANG_SEED:
            time.sleep(3600)
        return self.env.step(action)

    def observe(self):
        return self.env.observe()

    def close(self) -> None:
        self.env.close()


class CrashingMetaWorld(MetaWorld):
    def __init__(self):
        super().__init__()
        self.name = NAME

    def make(self, env_id: str) -> CrashingEnv:
        return CrashingEnv(super().make(env_id))


if NAME not in SIMULATORS:
    SIMULATORS.register(CrashingMetaWorld())
