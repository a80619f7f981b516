"""One action per control step from a chunking policy, fetching the next chunk ahead of time.

A policy returns H actions at once; a robot executes one per control step. Without prefetch the
robot stops for a whole inference at every chunk boundary. With `prefetch_at=k` the next chunk is
requested, from the latest observation, in a background thread as soon as k actions of the current
one remain, so it is there when they run out whenever inference takes under k control steps. The
new chunk starts from its first action (it was planned from an observation k steps old).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from jaxtyping import Float


class ChunkPolicy(Protocol):
    """`load_policy()` or a `PolicyClient`: an observation in, an `Inference` (actions, subtask, skill) out."""

    def infer(self, observation: Mapping[str, Any]) -> Any: ...

    def reset(self) -> None: ...


class ActionQueue:
    def __init__(self, policy: ChunkPolicy, prefetch_at: int | None = None):
        self.policy = policy
        self.prefetch_at = prefetch_at
        self._pool = ThreadPoolExecutor(1) if prefetch_at is not None else None
        self.waits: list[float] = []  # seconds the caller waited for a chunk, per chunk
        self.reset()

    def reset(self) -> None:
        """A new episode: drop queued actions and any chunk still being computed, reset the policy."""
        if getattr(self, "_pending", None) is not None:
            self._pending.result()  # the policy is not thread-safe: let its call finish first
        self._actions: deque[np.ndarray] = deque()
        self._pending: Future | None = None
        self.current: Any = None  # the Inference whose actions are being executed
        self.policy.reset()

    @property
    def needs_observation(self) -> bool:
        """Whether the next `act` calls the policy, so its observation must be a current one."""
        if not self._actions:
            return self._pending is None
        return self._pool is not None and self._pending is None and len(self._actions) - 1 <= self.prefetch_at

    def _take(self, inference: Any) -> None:
        self.current = inference
        self._actions = deque(np.asarray(inference.actions, np.float32))

    def act(self, observation: Mapping[str, Any]) -> Float[np.ndarray, " a"]:
        """The action for this control step."""
        if not self._actions:
            start = time.perf_counter()
            self._take(self._pending.result() if self._pending is not None else self.policy.infer(observation))
            self._pending = None
            self.waits.append(time.perf_counter() - start)
        action = self._actions.popleft()
        if self._pool is not None and self._pending is None and len(self._actions) <= self.prefetch_at:
            self._pending = self._pool.submit(self.policy.infer, observation)
        return action

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
