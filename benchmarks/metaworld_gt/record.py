"""Record one scripted Meta-World demonstration with its exact subtask boundaries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atomvla.curate.exports.lerobot_v3 import EpisodeRecording
from atomvla.schemas import Subtask, check_subtasks
# The recording conventions (camera, size, orientation, state, action clipping, seeding) are shared
# with `atom-train rollout`, so a policy sees in simulation what it was trained on.
from atomvla.train.sim.metaworld import (  # noqa: F401  (CAMERA, MULTISAMPLES, SHADOW_MAP_SIZE: re-exported for the other generators)
    CAMERA, CAMERA_KEY, FEATURE_NAMES, MAX_STEPS, MULTISAMPLES, SHADOW_MAP_SIZE, action_of, frame_of, make_env,
    state_of,
)
from benchmarks.metaworld_gt.tasks import TaskSpec

log = logging.getLogger(__name__)

# Like the fixture: the episode ends 10 steps after the step at which the env first reports success.
STEPS_AFTER_SUCCESS = 10


@dataclass(frozen=True)
class Demo:
    recording: EpisodeRecording
    subtasks: tuple[Subtask, ...]
    seed: int


class DemoFailed(Exception):
    """The scripted policy did not succeed, or did not go through every subtask."""


def segment(phases: Sequence[int], spec: TaskSpec) -> tuple[Subtask, ...]:
    """Subtasks from the per-step phase indices.

    Subtask i starts at the first step where the policy runs a branch of subtask i or later; a
    later fall-back to an earlier branch (the hand slipping off a door handle and re-approaching)
    stays in the current subtask. This is the convention of the fixture's ground truth.
    """
    n = len(phases)
    progress = np.maximum.accumulate(np.asarray(phases, dtype=int))
    starts = [int(np.searchsorted(progress, i)) for i in range(len(spec.subtasks))]
    ends = [*starts[1:], n]
    if any(end <= start for start, end in zip(starts, ends)):
        reached = sorted(set(progress.tolist()))
        raise DemoFailed(f"{spec.metaworld_task}: subtask phases reached {reached}, expected 0..{len(spec.subtasks) - 1}")
    subtasks = tuple(
        Subtask(start_frame=s, end_frame=e, instruction=instruction, skill=skill)
        for s, e, (instruction, skill) in zip(starts, ends, spec.subtasks)
    )
    if problems := check_subtasks(subtasks, n):
        raise DemoFailed(f"{spec.metaworld_task}: {'; '.join(problems)}")
    return subtasks


def record(spec: TaskSpec, seed: int, render: bool = True, state: str = "hand") -> Demo:
    """Run the task's scripted policy with `seed` (task variation and reset) and record it.

    Seeding matches the fixture: `Meta-World/MT1` made with `seed`, reset with `seed`.
    `render=False` records state and actions only (no camera): what the learned backend trains on.
    `state` names the state convention (`atomvla.train.sim.metaworld.STATES`).
    """
    from metaworld.policies import ENV_POLICY_MAP

    env = make_env(spec.metaworld_task, seed, render)
    policy = ENV_POLICY_MAP[spec.metaworld_task]()
    frames, states, actions, phases = [], [], [], []
    success_step: int | None = None
    try:
        obs, _ = env.reset(seed=seed)
        for step in range(env.spec.max_episode_steps or MAX_STEPS):
            if render:
                frames.append(frame_of(env))
            # parse a copy: some policies change their parsed observation in place
            phases.append(spec.phase(policy._parse_obs(obs.copy())))
            action = action_of(policy.get_action(obs))
            states.append(state_of(obs, state))
            actions.append(action)
            obs, _, _, truncated, info = env.step(action)
            if success_step is None and info["success"]:
                success_step = step
            if success_step is not None and step == success_step + STEPS_AFTER_SUCCESS:
                break
            if truncated:
                raise DemoFailed(f"{spec.metaworld_task}: no success in {step + 1} steps")
    finally:
        env.close()
    recording = EpisodeRecording(
        task=spec.instruction,
        frames={CAMERA_KEY: np.stack(frames)} if render else {},
        arrays={"observation.state": np.stack(states), "action": np.stack(actions)},
    )
    return Demo(recording, segment(phases, spec), seed)
