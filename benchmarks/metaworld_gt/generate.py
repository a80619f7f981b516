"""Regenerate the Meta-World ground-truth benchmark: a LeRobot v3.0 dataset plus its truth JSONL.

    python -m benchmarks.metaworld_gt.generate --out benchmarks/out/metaworld_gt [--tasks a,b] [--seeds 5]

writes `<out>/lerobot/` (the dataset) and `<out>/truth.jsonl` (one line per episode, the shape of
`shared/fixtures/metaworld_truth.jsonl`). Seeds where the scripted policy fails are skipped and
counted. Rendering is offscreen (`MUJOCO_GL` defaults to `egl`). `--state objects` records the
object and goal positions too; `--fine` uses the finer decompositions of `fine.py` where a task has one.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from enum import Enum
from typing import Annotated, Any, cast

import typer
from rich.progress import track

from atomvla.cli import fail, setup_logging
from atomvla.curate.exports.lerobot_v3 import Codec, EpisodeRecording, write_lerobot_v3
from atomvla.train.sim.metaworld import STATES, feature_names
from benchmarks.metaworld_gt.fine import FINE_TASKS
from benchmarks.metaworld_gt.record import Demo, DemoFailed, record
from benchmarks.metaworld_gt.tasks import TASKS, TaskSpec

log = logging.getLogger("metaworld_gt")

FPS = 20  # Meta-World's control rate in the fixture
DATASET_DIR = "lerobot"
TRUTH_FILE = "truth.jsonl"


def truth_line(episode_index: int, task: str, demo: Demo) -> dict[str, Any]:
    return {
        "episode_index": episode_index,
        "task": demo.recording.task,
        "metaworld_task": task,
        "seed": demo.seed,
        "n_frames": demo.subtasks[-1].end_frame,
        "fps": FPS,
        "subtasks": [s.model_dump() for s in demo.subtasks],
    }


def _demos(specs: Sequence[TaskSpec], seeds: int, state: str, truth: list[dict[str, Any]],
           failed: Counter[str]) -> Iterator[EpisodeRecording]:
    """Record every (task, seed), yield the successful ones and append their truth lines."""
    runs = [(spec, seed) for spec in specs for seed in range(seeds)]
    for spec, seed in track(runs, description="recording", transient=True):
        task = spec.metaworld_task
        try:
            demo = record(spec, seed, state=state)
        except DemoFailed as exc:
            failed[task] += 1
            log.warning("skipped seed %d: %s", seed, exc)
            continue
        truth.append(truth_line(len(truth), task, demo))
        yield demo.recording


def generate(out: Path, specs: Sequence[TaskSpec], seeds: int, codec: Codec, state: str = "hand") -> tuple[int, Counter[str]]:
    """Write the dataset and truth into a temporary folder next to `out`, then swap it in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    truth: list[dict[str, Any]] = []
    failed: Counter[str] = Counter()
    try:
        write_lerobot_v3(tmp / DATASET_DIR, _demos(specs, seeds, state, truth, failed), fps=FPS,
                         feature_names=feature_names(state), robot_type="sawyer", codec=codec)
        (tmp / TRUTH_FILE).write_text("".join(json.dumps(line) + "\n" for line in truth))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(truth), failed


class _CodecChoice(str, Enum):
    av1 = "av1"
    h264 = "h264"


def main(
    out: Annotated[Path, typer.Option(help="Output folder (replaced if it holds an earlier run).")] = Path(
        "benchmarks/out/metaworld_gt"
    ),
    tasks: Annotated[str, typer.Option(help="Comma-separated Meta-World tasks (default: all defined).")] = ",".join(TASKS),
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1 per task.")] = 5,
    codec: Annotated[_CodecChoice, typer.Option(help="Video codec (LeRobot's default: av1).")] = _CodecChoice.av1,
    state: Annotated[str, typer.Option(help=f"State convention: {', '.join(STATES)} (objects adds object and goal positions).")] = "hand",
    fine: Annotated[bool, typer.Option(help=f"Finer decompositions where defined ({', '.join(FINE_TASKS)}).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    setup_logging(verbose)
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    # The policies' gains saturate on purpose; actions are clipped to [-1, 1] as the env does.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if unknown := [t for t in names if t not in TASKS]:
        raise fail(f"unknown task(s) {', '.join(unknown)}; defined: {', '.join(TASKS)}")
    if state not in STATES:
        raise fail(f"unknown state convention {state!r}; defined: {', '.join(STATES)}")
    specs = [FINE_TASKS.get(t, TASKS[t]) if fine else TASKS[t] for t in names]
    if out.exists() and not (out / TRUTH_FILE).exists():
        raise fail(f"{out} exists and is not an earlier output of this generator (no {TRUTH_FILE}); not replacing it")
    start = time.perf_counter()
    n, failed = generate(out, specs, seeds, cast(Codec, codec.value), state)
    log.info("%d episodes from %d tasks x %d seeds in %.0f s -> %s", n, len(names), seeds, time.perf_counter() - start, out)
    if failed:
        log.info("seeds skipped (policy failed): %s", dict(failed))


if __name__ == "__main__":
    typer.run(main)
