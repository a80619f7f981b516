"""State-only ground-truth episodes for the learned backend, from every generator in benchmarks/.

    python -m benchmarks.learned_data --out benchmarks/out/learned_data [--seeds 8] [--sources metaworld,metaworld_released,humanlike,aloha,libero]

Records each generator's scripted episodes without rendering (the learned backend reads state,
actions and the heuristic's events, no pixels) and writes one pickle per source: a list of
`atomvla.annotate.learned.data.Sample` dicts (source, task, instruction, fps, feature names,
state, action, true subtasks). Slow sources can be generated separately and are merged by
`benchmarks/learned_pretrain.py`. Failed seeds are skipped and logged. `aloha` also writes each
episode relabelled with the release convention (source `aloha_release`: the giving arm's release
is its own subtask), which pretraining leaves out and the evaluation uses for few-shot.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from atomvla.cli import setup_logging

log = logging.getLogger("learned_data")


def _sample(source: str, task: str, recording, subtasks, fps: float, names: dict) -> dict[str, Any]:
    return {
        "source": source,
        "task": task,
        "instruction": recording.task,
        "fps": float(fps),
        "feature_names": {k: list(v) for k, v in names.items()},
        "state": np.asarray(recording.arrays["observation.state"], dtype=np.float32),
        "action": np.asarray(recording.arrays["action"], dtype=np.float32),
        "subtasks": [s.model_dump() for s in subtasks],
    }


def metaworld(seeds: int, released: bool = False) -> Iterator[dict[str, Any]]:
    """The metaworld_gt tasks (`released`: only those issue 15 released, generated apart)."""
    from benchmarks.metaworld_gt.generate import FPS
    from benchmarks.metaworld_gt.record import FEATURE_NAMES, DemoFailed, record
    from benchmarks.metaworld_gt.tasks import RELEASED, TASKS

    for task, spec in TASKS.items():
        if (task in RELEASED) != released:
            continue
        for seed in range(seeds):
            try:
                demo = record(spec, seed, render=False)
            except DemoFailed as exc:
                log.info("metaworld %s seed %d skipped: %s", task, seed, exc)
                continue
            yield _sample("metaworld", task, demo.recording, demo.subtasks, FPS, FEATURE_NAMES)


def humanlike(seeds: int) -> Iterator[dict[str, Any]]:
    """humanlike_gt's default tasks (those with a grasp first, and three without)."""
    from benchmarks.humanlike_gt.generate import DEFAULT_TASKS, FPS, record
    from benchmarks.metaworld_gt.record import FEATURE_NAMES, DemoFailed
    from benchmarks.metaworld_gt.tasks import TASKS

    for task in DEFAULT_TASKS:
        spec = TASKS[task]
        for seed in range(seeds):
            try:
                recording, subtasks, _ = record(spec, 1000 + seed, render=False)
            except DemoFailed as exc:
                log.info("humanlike %s seed %d skipped: %s", task, seed, exc)
                continue
            yield _sample("humanlike", task, recording, subtasks, FPS, FEATURE_NAMES)


def aloha(seeds: int) -> Iterator[dict[str, Any]]:
    from benchmarks.aloha_gt.generate import FPS, NAMES, record, release_convention

    names = {"observation.state": NAMES, "action": NAMES}
    for seed in range(seeds * 3):  # about 60 % of the seeds are kept
        done = record(seed, render=False)
        if done is None:
            continue
        recording, subtasks = done
        yield _sample("aloha", "aloha-transfer-cube", recording, subtasks, FPS, names)
        yield _sample("aloha_release", "aloha-transfer-cube-release", recording, release_convention(recording, subtasks), FPS, names)


def libero(seeds: int) -> Iterator[dict[str, Any]]:
    from benchmarks.libero_gt.generate import FEATURE_NAMES, IMAGE_SIZE
    from benchmarks.libero_gt.rollout import FPS, StepFailed, run
    from benchmarks.libero_gt.scene import Scene, init_states
    from benchmarks.libero_gt.templates import TEMPLATES
    from atomvla.curate.exports.lerobot_v3 import EpisodeRecording

    for tmpl in TEMPLATES:
        scene = Scene(tmpl.suite, tmpl.problem, image_size=IMAGE_SIZE)
        states = init_states(tmpl.suite, tmpl.problem)
        for seed in range(min(seeds, len(states))):
            try:
                rollout = run(scene, tmpl, states[seed], seed)
            except StepFailed as exc:
                log.info("libero %s seed %d skipped: %s", tmpl.name, seed, exc)
                continue
            recording = EpisodeRecording(task=tmpl.task, frames={}, arrays={
                "observation.state": rollout.states, "action": rollout.actions})
            yield _sample("libero", f"libero-{tmpl.name}", recording, rollout.subtasks, FPS, FEATURE_NAMES)
        scene.close()


SOURCES: dict[str, Callable[[int], Iterator[dict[str, Any]]]] = {
    "metaworld": metaworld, "metaworld_released": lambda seeds: metaworld(seeds, released=True),
    "humanlike": humanlike, "aloha": aloha, "libero": libero,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/learned_data"))
    parser.add_argument("--seeds", type=int, default=8, help="seeds per task")
    parser.add_argument("--sources", default=",".join(SOURCES))
    args = parser.parse_args(argv)
    setup_logging()
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (s.strip() for s in args.sources.split(",") if s.strip()):
        started = time.perf_counter()
        samples = list(SOURCES[name](args.seeds))
        path = args.out / f"{name}.pkl"
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(pickle.dumps(samples, protocol=4))
        tmp.rename(path)
        tasks = len({s["task"] for s in samples})
        log.info("%s: %d episodes of %d tasks in %.0f s -> %s", name, len(samples), tasks, time.perf_counter() - started, path)


if __name__ == "__main__":
    main()
