"""A scripted policy passed through a simulated human teleoperator, with the truth kept exact.

What people do that scripts do not (the issue's list), each drawn per episode from a seed:
- move slower, with device jitter (white noise plus a slow drift on the commanded velocity);
- close the gripper slowly and hesitantly (the grip command ramps up, stalls half-way);
- after closing on an object, wait until the fingers stop closing, then pause before starting
  the next subtask (0.5-2 s: the fingers close well before the object rises);
- pause mid-motion now and then (hesitation), and make a small correction on the approach;
- re-grasp: let go of the object and take hold again before moving it.

The truth stays exact because every step is labelled by what produced it: a step of the scripted
policy carries its branch's subtask (the phase function on the observation it saw); a step the
operator inserts (a pause, a re-grasp, a correction) belongs to the subtask already running. So a
subtask still starts at the first step the policy commands its motion.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


SETTLED = 0.002  # the fingers' opening changing less than this per step: they have stopped


@dataclass
class Operator:
    rng: np.random.Generator
    pace: float = 1.0  # velocity scale, < 1: slower than the script
    jitter: float = 0.08  # std of white noise on the velocity command
    drift: float = 0.05  # std of the slow (AR(1), 0.9) drift added to it
    grip_rate: float = 0.12  # per-step change of the grip command while closing
    regrasp_p: float = 0.4
    hesitate_p: float = 0.01  # per step, a mid-motion pause
    # Pause (and maybe re-grasp) before each later subtask. Off where a subtask is only seen to
    # start once the object moves (metaworld_gt's `by_object_motion`): the pause would come after.
    delay_starts: bool = True
    _grip: float = -1.0
    _drift: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _inserted: deque = field(default_factory=deque)  # queued operator-made actions
    _perturbed: set = field(default_factory=set)  # progress levels whose start was already delayed
    _corrected: bool = False
    _opening: float = 1.0  # the fingers' opening at the previous step

    @classmethod
    def sample(cls, seed: int) -> Operator:
        rng = np.random.default_rng(10_000 + seed)
        return cls(rng, pace=float(rng.uniform(0.75, 0.95)), grip_rate=float(rng.uniform(0.06, 0.15)))

    def _noise(self) -> np.ndarray:
        self._drift = 0.9 * self._drift + self.rng.normal(0, self.drift * np.sqrt(1 - 0.81), 3)
        return self.rng.normal(0, self.jitter, 3) + self._drift

    def _hold(self, steps: int, grip: float) -> None:
        self._inserted.extend([("hold", grip)] * steps)

    def _delay_start(self, level: int) -> None:
        """Before the policy's first step of subtask `level`: maybe a re-grasp, then a pause."""
        self._perturbed.add(level)
        if self._grip > 0 and self.rng.random() < self.regrasp_p:
            self._hold(int(self.rng.integers(6, 11)), -1.0)  # let go ...
            self._inserted.append(("close", None))  # ... and close again, slowly (as any closing)
        if self._grip > 0:
            self._inserted.append(("settle", None))  # until the fingers stop closing
        self._hold(int(self.rng.integers(10, 41)), None)

    def act(self, policy_action: np.ndarray, phase: int, progress: int, opening: float) -> tuple[np.ndarray, bool]:
        """The operator's action for this step (given the fingers' `opening`), and whether it is
        the policy's own (it then carries the policy's phase; otherwise the running subtask's)."""
        target_grip = float(policy_action[3])
        closing = self._opening - opening > SETTLED
        self._opening = opening
        if self.delay_starts and not self._inserted and phase > progress and phase not in self._perturbed:
            self._delay_start(phase)
        if not self._inserted and phase == 0 and not self._corrected and self.rng.random() < 0.03:
            self._corrected = True  # overshoot sideways for a few steps; the closed loop corrects it
            direction = np.r_[self.rng.normal(0, 1, 2), 0.0]
            self._inserted.extend([("push", direction / np.linalg.norm(direction))] * int(self.rng.integers(4, 8)))
        if not self._inserted and self.rng.random() < self.hesitate_p:
            self._hold(int(self.rng.integers(5, 16)), None)
        if self._inserted:
            kind, arg = self._inserted.popleft()
            if kind == "close":
                target_grip = 1.0
                if self._grip < 1.0:
                    self._inserted.appendleft(("close", None))  # keep closing until the command is full
                velocity = np.zeros(3)
            elif kind == "settle":
                target_grip = 1.0
                if closing or self._grip < 1.0:
                    self._inserted.appendleft(("settle", None))
                velocity = np.zeros(3)
            elif kind == "push":
                velocity = 0.5 * arg
            else:
                velocity = np.zeros(3)
                target_grip = self._grip if arg is None else arg
            own = False
        else:
            velocity = self.pace * policy_action[:3]
            own = True
        # Closing is slow and stalls half-way once; opening is quick.
        if target_grip > self._grip:
            step = self.grip_rate * (0.2 if -0.1 < self._grip < 0.3 else 1.0)
            self._grip = min(target_grip, self._grip + step)
        else:
            self._grip = target_grip
        tremor = 1.0 if np.any(velocity) else 0.3  # a hand holding still shakes less
        action = np.r_[np.clip(velocity + tremor * self._noise(), -1, 1), self._grip]
        return action.astype(np.float32), own
