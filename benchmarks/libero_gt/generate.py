"""Generate long-horizon LIBERO episodes with exact subtask boundaries.

    python -m benchmarks.libero_gt.generate --out benchmarks/out/libero_gt [--seeds 5] [--templates A,B]

Writes a LeRobot v3.0 dataset to OUT (replacing an earlier one once the new one is complete) and
its ground truth to OUT/truth.jsonl (one line per kept
episode, in the shape of the Meta-World fixture's truth plus `template`, `seed` and `env_id`, the
`atom-train rollout --env libero` env that replays it). Seed i starts from LIBERO's i-th recorded
initial state of the template's problem, as the rollout adapter's seed i does; episodes whose
scripted grasp or placement fails are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from atomvla.cli import setup_logging
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.train.sim.libero import CAMERA_KEY, FEATURE_NAMES, IMAGE_SIZE
from rich.progress import Progress

from .rollout import FPS, Rollout, StepFailed, run
from .scene import Scene, init_states
from .templates import TEMPLATES, Template, template

log = logging.getLogger(__name__)



@dataclass
class Tally:
    """The truth lines of the kept episodes, and the skipped ones per template."""

    failed: Counter[str] = field(default_factory=Counter)
    truth: list[dict] = field(default_factory=list)


def _truth_line(index: int, tmpl: Template, seed: int, rollout: Rollout) -> dict:
    return {
        "episode_index": index,
        "task": tmpl.task,
        "template": tmpl.name,
        "seed": seed,
        "env_id": f"{tmpl.suite}/{tmpl.problem}",
        "n_frames": len(rollout.actions),
        "fps": FPS,
        "subtasks": [s.model_dump() for s in rollout.subtasks],
    }


def episodes(
    templates: tuple[Template, ...], seeds: int, tally: Tally, progress: Progress
) -> Iterator[EpisodeRecording]:
    """Roll out every template from its first `seeds` initial states, rendering kept episodes only."""
    bar = progress.add_task("episodes", total=len(templates) * seeds)
    for tmpl in templates:
        scene = Scene(tmpl.suite, tmpl.problem, image_size=IMAGE_SIZE)
        states = init_states(tmpl.suite, tmpl.problem)
        if seeds > len(states):
            raise ValueError(
                f"{tmpl.name}: {seeds} seeds asked, LIBERO has {len(states)} initial states for {tmpl.problem}"
            )
        for seed in range(seeds):
            progress.update(bar, description=f"{tmpl.name} seed {seed}")
            try:
                rollout = run(scene, tmpl, states[seed], seed)
            except StepFailed as e:
                log.info("%s seed %d skipped: %s", tmpl.name, seed, e)
                tally.failed[tmpl.name] += 1
                progress.advance(bar)
                continue
            frames = np.stack([scene.render_state(s) for s in rollout.sim_states])
            tally.truth.append(_truth_line(len(tally.truth), tmpl, seed, rollout))
            progress.advance(bar)
            yield EpisodeRecording(
                task=tmpl.task,
                frames={CAMERA_KEY: frames},
                arrays={
                    "observation.state": rollout.states.astype(np.float32),
                    "action": rollout.actions.astype(np.float32),
                },
            )
        scene.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/libero_gt"), help="dataset folder (replaced)")
    parser.add_argument("--seeds", type=int, default=5, help="episodes attempted per template")
    parser.add_argument("--templates", help="comma-separated template names (default: all)")
    args = parser.parse_args(argv)
    setup_logging()
    templates = tuple(template(n.strip()) for n in args.templates.split(",")) if args.templates else TEMPLATES

    # Build next to OUT and swap at the end: an earlier output survives a failed or cut run.
    partial = args.out.with_name(f".{args.out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    tally = Tally()
    started = time.perf_counter()
    with Progress() as progress:
        write_lerobot_v3(
            partial,
            episodes(templates, args.seeds, tally, progress),
            fps=FPS,
            feature_names=FEATURE_NAMES,
            robot_type="panda",
        )
    with (partial / "truth.jsonl").open("w") as f:
        f.writelines(json.dumps(line) + "\n" for line in tally.truth)
    shutil.rmtree(args.out, ignore_errors=True)
    partial.rename(args.out)

    kept = Counter(line["template"] for line in tally.truth)
    for tmpl in templates:
        log.info("%-28s kept %d, skipped %d", tmpl.name, kept[tmpl.name], tally.failed[tmpl.name])
    attempted = len(templates) * args.seeds
    log.info(
        "%d/%d episodes kept (%.0f%% skipped) in %.0f s -> %s",
        len(tally.truth),
        attempted,
        100 * (attempted - len(tally.truth)) / attempted,
        time.perf_counter() - started,
        args.out,
    )


if __name__ == "__main__":
    main()
