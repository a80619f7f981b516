"""Record one scripted Meta-World demonstration with its exact subtask boundaries."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atomvla.curate.exports.lerobot_v3 import EpisodeRecording
from atomvla.schemas import Subtask, check_subtasks
from benchmarks.metaworld_gt.tasks import TaskSpec

log = logging.getLogger(__name__)

CAMERA = "corner"
CAMERA_KEY = f"observation.images.{CAMERA}"
IMAGE_SIZE = 128
FEATURE_NAMES = {"observation.state": ("hand_x", "hand_y", "hand_z", "gripper"), "action": ("dx", "dy", "dz", "grip")}
# Software rendering (llvmpipe) is the generator's bottleneck. A 1024² shadow map instead of 4096²
# and no multisampling render a frame ~2.5x faster (~45 ms on a busy 2-core machine); the frames
# differ from the defaults by ~1.7 grey levels on average (aliased edges), below AV1's own loss.
SHADOW_MAP_SIZE = 1024
MULTISAMPLES = 0
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


def record(spec: TaskSpec, seed: int, render: bool = True) -> Demo:
    """Run the task's scripted policy with `seed` (task variation and reset) and record it.

    Seeding matches the fixture: `Meta-World/MT1` made with `seed`, reset with `seed`.
    `render=False` records state and actions only (no camera): what the learned backend trains on.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen; read when mujoco is first imported
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World/* environments)
    from metaworld.policies import ENV_POLICY_MAP

    env = gym.make(
        "Meta-World/MT1", env_name=spec.metaworld_task, seed=seed,
        render_mode="rgb_array" if render else None, camera_name=CAMERA, width=IMAGE_SIZE, height=IMAGE_SIZE,
        disable_env_checker=True,  # it warns about Meta-World's own observation bounds on every step
    )
    quality = env.unwrapped.model.vis.quality  # read when the renderer starts, on the first render
    quality.shadowsize, quality.offsamples = SHADOW_MAP_SIZE, MULTISAMPLES
    policy = ENV_POLICY_MAP[spec.metaworld_task]()
    frames, states, actions, phases = [], [], [], []
    success_step: int | None = None
    try:
        obs, _ = env.reset(seed=seed)
        for step in range(env.spec.max_episode_steps or 500):
            if render:
                frames.append(env.render()[::-1])  # Meta-World's corner camera renders upside down
            # parse a copy: some policies change their parsed observation in place
            phases.append(spec.phase(policy._parse_obs(obs.copy())))
            action = np.clip(policy.get_action(obs), -1.0, 1.0).astype(np.float32)
            states.append(obs[:4].astype(np.float32))
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
