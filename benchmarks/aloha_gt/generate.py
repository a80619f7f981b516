"""Generate two-arm ALOHA episodes (gym-aloha's end-effector cube transfer) with exact subtask boundaries.

    python -m benchmarks.aloha_gt.generate --out benchmarks/out/aloha_gt [--seeds 10]

Writes a LeRobot v3.0 dataset to OUT (camera `observation.images.top`, 50 fps; state and action
named as LeRobot's ALOHA datasets name them: `left_waist ... left_gripper right_waist ...
right_gripper`, joint positions and gripper opening 0 closed .. 1 open; the action is the next
step's joint positions and the commanded gripper opening, as ACT records its scripted demos) and
OUT/truth.jsonl, OUT/truth_release.jsonl (the same episodes, the giving arm's release its own subtask:
see `release_convention`), plus OUT/eval.json (the boundary tolerance the benchmark uses for this set).
Seeds whose script fails (ACT's criterion: the task's top reward never reached, e.g. the cube
never held by the left arm off the table) are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.progress import track

from atomvla.cli import setup_logging
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.schemas import Subtask, check_subtasks

from .scripts import Script, interpolate, transfer, with_pauses

log = logging.getLogger("aloha_gt")

FPS = 50  # ALOHA's control rate (gym_aloha.constants.DT = 0.02)
HEIGHT, WIDTH = 96, 128
CAMERA_KEY = "observation.images.top"
JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
NAMES = tuple(f"{side}_{j}" for side in ("left", "right") for j in JOINTS)
TOLERANCE = 10  # frames (0.2 s at 50 fps), the figure for two-arm sets
# The cube's (x, y) range, within gym-aloha's, where the scripted grasp holds: beyond ~0.11 m to
# the right the tilted gripper pushes the cube away instead of closing around it.
CUBE_RANGE = ((0.0, 0.1), (0.42, 0.55))
SETTLE_STEPS = 200  # physics steps (0.4 s)
TREMOR_M = 0.003  # std of a teleoperating hand's slow drift around the commanded gripper position


def _env():
    """A dm_control environment of the transfer task whose observation renders nothing (we render small
    frames ourselves; the task's own renders three 480x640 cameras every step)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import mujoco
    from dm_control.rl import control
    from gym_aloha.constants import ASSETS_DIR, DT
    from gym_aloha.tasks import sim_end_effector as ee

    class Quiet(ee.TransferCubeEndEffectorTask):
        def get_observation(self, physics):
            return {"qpos": self.get_qpos(physics)}

    physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / "bimanual_viperx_end_effector_transfer_cube.xml"))
    # Software rendering is the cost: without shadows and multisampling a frame takes ~20 ms, not ~150.
    physics.model.vis.quality.shadowsize, physics.model.vis.quality.offsamples = 0, 0
    return control.Environment(physics, Quiet(), float("inf"), control_timestep=DT, n_sub_steps=None, flat_observation=False)


def _place_cube(physics, rng: np.random.Generator) -> np.ndarray:
    """A seeded cube position in gym-aloha's range (its own sampler draws from an unseeded state)."""
    def pose(x, y):
        return np.array([rng.uniform(*x), rng.uniform(*y), 0.05, 1, 0, 0, 0])

    physics.data.qpos[16:23] = pose(*CUBE_RANGE)
    # gym-aloha drops its objects from 5 cm: let the cube land, so the grasp aims at where it lies.
    for _ in range(SETTLE_STEPS):
        physics.step()
    return physics.data.qpos[16:19].copy()


def _script(physics, cube: np.ndarray, pace: float) -> Script:
    left = np.concatenate([physics.data.mocap_pos[0], physics.data.mocap_quat[0]])
    right = np.concatenate([physics.data.mocap_pos[1], physics.data.mocap_quat[1]])
    return transfer(left, right, cube, pace)


def record(seed: int, render: bool = True, humanlike: bool = False) -> tuple[EpisodeRecording, tuple[Subtask, ...]] | None:
    """One scripted episode, or None when the script did not achieve the task; `render=False`
    records state and actions only. `humanlike`: performed as a teleoperator would (slower, pauses
    before each later subtask and mid-motion, hand tremor: see `scripts.with_pauses`, TREMOR_M)."""
    rng = np.random.default_rng(seed)
    env = _env()
    env.reset()
    physics = env.physics
    cube = _place_cube(physics, rng)
    script = _script(physics, cube, pace=float(rng.uniform(1.0, 1.3) if humanlike else rng.uniform(0.85, 1.15)))
    if humanlike:
        script = with_pauses(script, rng)
    drift = np.zeros((2, 3))
    states, grips, sim_states, rewards = [], [], [], []
    for t in range(script.n_steps):
        states.append(env.task.get_qpos(physics))
        sim_states.append(physics.get_state().copy())
        l_xyz, l_quat, l_grip = interpolate(script.left, t)
        r_xyz, r_quat, r_grip = interpolate(script.right, t)
        if humanlike:  # each hand's slow tremor, AR(1) with a 0.5 s memory
            drift = 0.96 * drift + rng.normal(0, TREMOR_M * np.sqrt(1 - 0.96**2), (2, 3))
            l_xyz, r_xyz = l_xyz + drift[0], r_xyz + drift[1]
        grips.append((l_grip, r_grip))
        env.step(np.concatenate([l_xyz, l_quat, [l_grip], r_xyz, r_quat, [r_grip]]))
        rewards.append(env.task.get_reward(physics))
    if max(rewards) < env.task.max_reward:  # ACT's success: the task's top reward reached at some step
        log.info("seed %d skipped: best reward %d of %d", seed, max(rewards), env.task.max_reward)
        return None
    frames = []
    for sim_state in sim_states if render else ():  # render kept episodes only, from the recorded simulator states
        physics.set_state(sim_state)
        physics.forward()
        frames.append(physics.render(height=HEIGHT, width=WIDTH, camera_id="top"))
    state = np.asarray(states)
    # The action: the next step's joint positions (the last repeats) and the commanded openings.
    action = np.concatenate([state[1:], state[-1:]])
    action[:, [6, 13]] = np.asarray(grips)
    starts = [s for s, _, _ in script.subtasks]
    subtasks = tuple(
        Subtask(start_frame=s, end_frame=e, instruction=i, skill=k)
        for (s, i, k), e in zip(script.subtasks, [*starts[1:], script.n_steps])
    )
    if problems := check_subtasks(subtasks, script.n_steps):
        raise ValueError(f"seed {seed}: bad ground truth: {'; '.join(problems)}")
    recording = EpisodeRecording(
        task=script.task,
        frames={CAMERA_KEY: np.stack(frames)} if render else {},
        arrays={"observation.state": state.astype(np.float32), "action": action.astype(np.float32)},
    )
    return recording, subtasks


def release_convention(recording: EpisodeRecording, subtasks: tuple[Subtask, ...]) -> tuple[Subtask, ...]:
    """The truth relabelled so that a handover ends with the giving arm's release as its own subtask:
    the transfer ends when the receiving (left) gripper's command has closed on the cube; from there
    the right arm lets go and backs off ("release the cube with the right arm")."""
    *before, transfer = subtasks
    left_grip = np.asarray(recording.arrays["action"])[:, NAMES.index("left_gripper")]
    closed = transfer.start_frame + int(np.argmax(left_grip[transfer.start_frame:] <= left_grip.min() + 1e-6))
    relabelled = (
        *before,
        transfer.model_copy(update={"end_frame": closed}),
        Subtask(start_frame=closed, end_frame=transfer.end_frame, instruction="release the cube with the right arm", skill="place"),
    )
    if problems := check_subtasks(relabelled, transfer.end_frame):
        raise ValueError(f"release convention: {'; '.join(problems)}")
    return relabelled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/aloha_gt"), help="dataset folder (replaced)")
    parser.add_argument("--seeds", type=int, default=24, help="episodes attempted (about 60%% are kept)")
    args = parser.parse_args(argv)
    setup_logging()
    truth: list[dict] = []
    released: list[dict] = []  # the same episodes, the giving arm's release its own subtask
    failed: list[int] = []
    started = time.perf_counter()

    def episodes() -> Iterator[EpisodeRecording]:
        for seed in track(range(args.seeds), description="recording", transient=True):
            done = record(seed)
            if done is None:
                failed.append(seed)
                continue
            recording, subtasks = done
            truth.append({
                "episode_index": len(truth), "task": recording.task, "aloha_task": "end_effector_transfer_cube", "seed": seed,
                "n_frames": subtasks[-1].end_frame, "fps": FPS, "subtasks": [s.model_dump() for s in subtasks],
            })
            released.append({**truth[-1], "subtasks": [s.model_dump() for s in release_convention(recording, subtasks)]})
            yield recording

    def finish(root: Path) -> None:
        (root / "truth.jsonl").write_text("".join(json.dumps(line) + "\n" for line in truth))
        (root / "truth_release.jsonl").write_text("".join(json.dumps(line) + "\n" for line in released))
        (root / "eval.json").write_text(json.dumps({"tolerance": TOLERANCE, "relabelled": {"truth_release.jsonl": "release"}}))

    if args.out.exists():
        if not (args.out / "truth.jsonl").exists():
            raise SystemExit(f"{args.out} exists and is not an earlier output of this generator; not replacing it")
        import shutil

        shutil.rmtree(args.out)
    write_lerobot_v3(args.out, episodes(), fps=FPS, feature_names={"observation.state": NAMES, "action": NAMES},
                     robot_type="aloha", finish=finish)
    log.info("%d/%d episodes kept in %.0f s -> %s; seeds skipped: %s", len(truth), args.seeds, time.perf_counter() - started,
             args.out, failed or "none")


if __name__ == "__main__":
    main()
