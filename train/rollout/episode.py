"""One closed-loop episode: the policy acts chunk by chunk until the task succeeds or time runs out."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from atomvla.errors import UserError
from atomvla.train.rollout.video import EpisodeVideo
from atomvla.train.serve.queue import ActionQueue, ChunkPolicy
from atomvla.train.sim import SimCrash, SimEnv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeResult:
    env_id: str
    episode: int
    seed: int
    success: bool
    steps: int
    announced: list[str]  # the subtasks the policy announced, in order, repeats collapsed
    active_at_end: str | None  # the subtask whose chunk ran when the episode ended
    error: str | None  # why the episode broke off (a simulator crash), or None
    video: str | None  # relative to the rollout folder

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_episode(
    env: SimEnv, policy: ChunkPolicy, env_id: str, instruction: str, episode: int, seed: int,
    max_steps: int, video: Path | None, fps: int, out: Path,
) -> EpisodeResult:
    """Reset `env` with `seed`, act with `policy` prompted with `instruction`; a crash of the
    simulation ends the episode as a failure with its reason."""
    queue = ActionQueue(policy)  # synchronous: the simulation waits for the policy
    writer = EpisodeVideo(video, fps) if video is not None else None
    announced: list[str] = []
    success, steps, error = False, 0, None
    try:
        env.reset(seed)
        for steps in range(1, max_steps + 1):
            obs = env.observe() if writer is not None or queue.needs_observation else None
            action = queue.act({**obs, "task": instruction} if obs is not None else {})
            subtask = queue.current.subtask
            if not announced or announced[-1] != subtask:
                announced.append(subtask)
            if writer is not None:
                # the subtask first: a long env id (LIBERO's) would push it off the banner
                writer.add(list(obs["images"].values()), f"step {steps - 1}: {subtask}  ({env_id} #{episode})")
            if success := env.step(action):
                break
    except Exception as exc:  # noqa: BLE001  (the simulator broke: this episode fails, the others go on)
        if isinstance(exc, UserError):  # the policy server is gone or refused us: no episode can run
            raise
        error = str(exc) if isinstance(exc, SimCrash) else f"{type(exc).__name__}: {exc}"
        log.warning("episode %d of %s (seed %d) failed: %s", episode, env_id, seed, error)
    finally:
        queue.close()
    if writer is not None:
        writer.close()
    return EpisodeResult(
        env_id, episode, seed, success, steps, announced, announced[-1] if announced else None, error,
        str(video.relative_to(out)) if video is not None else None,
    )
