"""Generate teleoperation-like Meta-World episodes with exact subtask boundaries.

    python -m benchmarks.humanlike_gt.generate --out benchmarks/out/humanlike_gt [--seeds 2]

The scripted policies of `benchmarks/metaworld_gt` (same tasks, instructions, phase functions and
truth rules) driven through `teleop.Operator`: slower, jittery, hesitant closing, pauses,
corrections, re-grasps. Writes a LeRobot v3.0 dataset to OUT (camera 64x64, 20 fps, the names of
metaworld_gt), OUT/truth.jsonl (a pick ends at the object's first motion, the shared convention),
OUT/truth_closed.jsonl (the same episodes relabelled with the other convention: a pick ends when
the fingers have closed, 90 % of the way from open to where they settle on the object; to test
calibration) and OUT/eval.json (the tolerance for this set, 10 frames).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.progress import track

from atomvla.cli import setup_logging
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.schemas import Subtask
from benchmarks.metaworld_gt.record import (
    CAMERA, CAMERA_KEY, FEATURE_NAMES, MULTISAMPLES, SHADOW_MAP_SIZE, STEPS_AFTER_SUCCESS, DemoFailed, segment, state_of,
)
from benchmarks.metaworld_gt.tasks import TASKS, TaskSpec

from .teleop import Operator

log = logging.getLogger("humanlike_gt")

FPS = 20
IMAGE_SIZE = 64  # frames are for people to look at; the segmenters read none
TOLERANCE = 10
CLOSED_FRACTION = 0.9
# Tasks with a grasp first (where the conventions differ), and three without.
DEFAULT_TASKS = (
    "pick-place-v3", "basketball-v3", "assembly-v3", "peg-insert-side-v3", "hammer-v3", "sweep-into-v3",
    "coffee-push-v3", "drawer-open-v3", "button-press-v3", "door-open-v3",
)


def record(
    spec: TaskSpec, seed: int, render: bool = True, state: str = "hand"
) -> tuple[EpisodeRecording, tuple[Subtask, ...], np.ndarray]:
    """One teleoperated episode: the recording, its truth, and the grip commands (n,);
    `render=False` records state and actions only; `state` names the state convention
    (`atomvla.train.sim.metaworld.STATES`; the gripper stays column 3 in every one)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World/* environments)
    from metaworld.policies import ENV_POLICY_MAP

    env = gym.make(
        "Meta-World/MT1", env_name=spec.metaworld_task, seed=seed, render_mode="rgb_array" if render else None,
        camera_name=CAMERA, width=IMAGE_SIZE, height=IMAGE_SIZE, disable_env_checker=True,
    )
    quality = env.unwrapped.model.vis.quality
    quality.shadowsize, quality.offsamples = SHADOW_MAP_SIZE, MULTISAMPLES
    policy = ENV_POLICY_MAP[spec.metaworld_task]()
    operator = Operator.sample(seed)
    operator.delay_starts = not spec.by_object_motion
    frames, states, actions, labels = [], [], [], []
    success_step = None
    try:
        obs, _ = env.reset(seed=seed)
        for step in range(env.spec.max_episode_steps or 500):
            if render:
                frames.append(env.render()[::-1])
            phase = spec.phase(policy._parse_obs(obs.copy()))
            progress = max(labels, default=0)
            action, own = operator.act(np.clip(policy.get_action(obs), -1.0, 1.0), phase, progress, float(obs[3]))
            labels.append(phase if own else progress)
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
    return recording, segment(labels, spec), np.stack(actions)[:, 3]


def closed_convention(subtasks: tuple[Subtask, ...], opening: np.ndarray, grip: np.ndarray) -> tuple[Subtask, ...]:
    """The truth relabelled so that a pick ends when the fingers have closed on the object.

    For each pick followed by another subtask: the closing is the last rise of the grip command
    to its grasp level (its highest over the pick and the next subtask) that starts before the
    pick ends; the fingers have closed at the first frame from that start on where the opening
    has covered CLOSED_FRACTION of its way down to its smallest value over the two subtasks. That
    frame may lie before or after the object's first motion (some scripts move while closing)."""
    out = list(subtasks)
    for i, s in enumerate(subtasks[:-1]):
        nxt = subtasks[i + 1]
        if s.skill != "pick":
            continue
        span = slice(s.start_frame, nxt.end_frame)
        top = s.start_frame + int(np.argmax(grip[span] >= grip[span].max() - 1e-6))
        start = top
        while start > s.start_frame and grip[start - 1] < grip[start] - 1e-6:
            start -= 1
        if start >= s.end_frame or grip[span].max() <= grip[start]:
            continue  # no closing in this pick
        settled = float(opening[span].min())
        travel = settled - float(opening[start])
        if travel >= 0:
            continue
        covered = (opening[start:nxt.end_frame] - opening[start]) / travel
        closed = start + int(np.argmax(covered >= CLOSED_FRACTION))
        closed = min(max(closed, s.start_frame + 1), nxt.end_frame - 1)
        out[i] = s.model_copy(update={"end_frame": closed})
        out[i + 1] = nxt.model_copy(update={"start_frame": closed})
    return tuple(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/humanlike_gt"), help="dataset folder (replaced)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per task")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="metaworld_gt tasks")
    args = parser.parse_args(argv)
    setup_logging()
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if unknown := [t for t in names if t not in TASKS]:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; metaworld_gt defines: {', '.join(TASKS)}")
    truth: list[dict] = []
    relabelled: list[dict] = []
    failed: list[str] = []
    started = time.perf_counter()

    def episodes() -> Iterator[EpisodeRecording]:
        for task, seed in track([(t, s) for t in names for s in range(args.seeds)], description="recording", transient=True):
            try:
                recording, subtasks, grip = record(TASKS[task], seed)
            except DemoFailed as exc:
                failed.append(f"{task} seed {seed}")
                log.warning("skipped: %s", exc)
                continue
            line = {"episode_index": len(truth), "task": recording.task, "metaworld_task": task, "seed": seed,
                    "n_frames": subtasks[-1].end_frame, "fps": FPS}
            truth.append({**line, "subtasks": [s.model_dump() for s in subtasks]})
            closed = closed_convention(subtasks, recording.arrays["observation.state"][:, 3], grip)
            relabelled.append({**line, "subtasks": [s.model_dump() for s in closed]})
            yield recording

    def finish(root: Path) -> None:
        (root / "truth.jsonl").write_text("".join(json.dumps(line) + "\n" for line in truth))
        (root / "truth_closed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in relabelled))
        (root / "eval.json").write_text(json.dumps({"tolerance": TOLERANCE, "relabelled": {"truth_closed.jsonl": "closed"}}))

    if args.out.exists():
        if not (args.out / "truth.jsonl").exists():
            raise SystemExit(f"{args.out} exists and is not an earlier output of this generator; not replacing it")
        shutil.rmtree(args.out)
    write_lerobot_v3(args.out, episodes(), fps=FPS, feature_names=FEATURE_NAMES, robot_type="sawyer", finish=finish)
    log.info("%d episodes in %.0f s -> %s; skipped: %s", len(truth), time.perf_counter() - started, args.out, failed or "none")


if __name__ == "__main__":
    main()
