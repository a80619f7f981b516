"""State-only ground-truth episodes for the learned backend, from every generator in benchmarks/.

    python -m benchmarks.learned_data --out benchmarks/out/learned_data [--seeds N]
        [--sources metaworld,...,humanlike_aloha] [--state objects|hand] [--budget-s 1800] [--ready FILE]

With the defaults, one run writes the whole pretraining set of the packaged weights (every source,
each with its own number of seeds, SEEDS; Meta-World with object and goal state); then
`python -m benchmarks.learned_pretrain` trains on it.

Records each generator's scripted episodes without rendering (the learned backend reads state,
actions and the heuristic's events, no pixels) and writes one pickle per source: a list of
`atomvla.annotate.learned.data.Sample` dicts (source, task, instruction, fps, feature names,
state, action, true subtasks), plus `<source>.json`: episodes kept and skipped per task, why each
was skipped, and the generation's CPU and wall seconds. Sources:

- `metaworld`: the 14 Meta-World tasks; `metaworld_released`: the 25 issue 15 released (both
  benchmarks/metaworld_gt, seeds 0..N-1); their state is `--state`'s convention
  (`atomvla.train.sim.metaworld.STATES`: `objects`, the default, hand xyz and gripper and the
  object's and the goal's xyz; `hand`, without them, for the scene ablation), as is `humanlike`'s;
- `humanlike`: every one of those 39 tasks driven by benchmarks/humanlike_gt's operator (seeds
  1000..1000+N-1, so no episode repeats a scripted one);
- `aloha`: gym-aloha's two-arm cube transfer; it also writes each episode relabelled with the
  release convention (source `aloha_release`: the giving arm's release is its own subtask), which
  pretraining leaves out and the evaluation uses for few-shot;
- `libero`: every benchmarks/libero_gt template from LIBERO's first N initial states;
  `humanlike_libero`: the same templates through humanlike_gt's operator from the last N (its
  samples are source `humanlike`, the human-like sets' tolerance);
- `humanlike_aloha`: the transfer performed as a teleoperator would (aloha_gt `record(humanlike=True)`),
  source `humanlike`;
- `libero_heldout`, `humanlike_libero_heldout`: as `libero` and `humanlike_libero`, for libero_gt's
  HELDOUT templates; never in the default `--sources`, so no pretraining set holds them (the default
  backend is chosen on them);
- `libero_heldout2`, `humanlike_libero_heldout2`: the same for HELDOUT2 (a knob turned on, a
  microwave door pushed shut, placing beside something), kept out like HELDOUT and scored once by
  the lead (benchmarks/out/heldout2/PLAN.md);
- `libero_heldout3`, `humanlike_libero_heldout3`: the same for HELDOUT3 (a drawer pulled open, a
  bowl put into it, the drawer closed again), kept out and scored once by the lead
  (benchmarks/out/heldout3/PLAN.md).

Each episode is bounded (`--episode-s` CPU seconds, and 10x that in wall seconds) and each source too (`--budget-s`, CPU
seconds: the source stops at the first episode that starts past it, and says so). An episode that
fails, raises or runs out of time is logged and skipped; nothing is written half: a source's files
are renamed into place when complete. `--ready FILE` appends one line per finished source (file,
counts) for whoever waits on the data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import signal
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomvla.cli import setup_logging
from atomvla.train.sim.metaworld import STATES

log = logging.getLogger("learned_data")

HUMANLIKE_SEED0 = 1000  # humanlike seeds start here, apart from the scripted sets' 0..N-1
# Seeds per task where --seeds is not given: the packaged weights' set. Human-like Meta-World has 39
# tasks and 6 are enough for its variety; the human-like LIBERO operator fails more often (83 of 150
# kept), so it gets 10.
SEEDS = 8
SOURCE_SEEDS = {"humanlike": 6, "humanlike_libero": 10, "humanlike_libero_heldout": 10, "humanlike_libero_heldout2": 10,
                "humanlike_libero_heldout3": 10}
WALL_FACTOR = 10  # an episode's wall-clock bound, in multiples of its CPU bound (the machine is shared)


class EpisodeTimeout(Exception):
    """An episode ran past its CPU-time bound."""


@dataclass(frozen=True)
class Attempt:
    """One episode to generate: `make` returns its samples (empty when the script failed, with `why`)."""

    task: str
    seed: int
    make: Callable[[], list[dict[str, Any]]]


@dataclass
class Tally:
    kept: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    why: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unattempted: int = 0


def _sample(source: str, task: str, instruction: str, states, actions, subtasks, fps: float, names: dict) -> dict[str, Any]:
    return {
        "source": source,
        "task": task,
        "instruction": instruction,
        "fps": float(fps),
        "feature_names": {k: list(v) for k, v in names.items()},
        "state": np.asarray(states, dtype=np.float32),
        "action": np.asarray(actions, dtype=np.float32),
        "subtasks": [s.model_dump() for s in subtasks],
    }


def _of_recording(source: str, task: str, recording, subtasks, fps: float, names: dict) -> dict[str, Any]:
    arrays = recording.arrays
    return _sample(source, task, recording.task, arrays["observation.state"], arrays["action"], subtasks, fps, names)


def metaworld(seeds: int, state: str, released: bool = False) -> Iterator[Attempt]:
    """The metaworld_gt tasks (`released`: only those issue 15 released, generated apart) with the
    state convention `state`."""
    from atomvla.train.sim.metaworld import feature_names
    from benchmarks.metaworld_gt.generate import FPS
    from benchmarks.metaworld_gt.record import record
    from benchmarks.metaworld_gt.tasks import RELEASED, TASKS

    def make(task: str, seed: int) -> list[dict[str, Any]]:
        demo = record(TASKS[task], seed, render=False, state=state)
        return [_of_recording("metaworld", task, demo.recording, demo.subtasks, FPS, feature_names(state))]

    for task in TASKS:
        if (task in RELEASED) == released:
            yield from (Attempt(task, seed, lambda t=task, s=seed: make(t, s)) for seed in range(seeds))


def humanlike(seeds: int, state: str) -> Iterator[Attempt]:
    """Every metaworld_gt task through humanlike_gt's operator, with the state convention `state`."""
    from atomvla.train.sim.metaworld import feature_names
    from benchmarks.humanlike_gt.generate import FPS, record
    from benchmarks.metaworld_gt.tasks import TASKS

    def make(task: str, seed: int) -> list[dict[str, Any]]:
        recording, subtasks, _ = record(TASKS[task], seed, render=False, state=state)
        return [_of_recording("humanlike", task, recording, subtasks, FPS, feature_names(state))]

    for task in TASKS:
        seeds_ = range(HUMANLIKE_SEED0, HUMANLIKE_SEED0 + seeds)
        yield from (Attempt(task, seed, lambda t=task, s=seed: make(t, s)) for seed in seeds_)


def aloha(seeds: int, humanlike: bool = False) -> Iterator[Attempt]:
    """The two-arm transfer (`humanlike`: performed as a teleoperator would, source `humanlike`,
    seeds from HUMANLIKE_SEED0, without the release relabelling)."""
    from benchmarks.aloha_gt.generate import FPS, NAMES, record, release_convention

    names = {"observation.state": NAMES, "action": NAMES}

    def make(seed: int) -> list[dict[str, Any]]:
        done = record(seed, render=False, humanlike=humanlike)
        if done is None:
            raise RuntimeError("the scripted transfer failed (the task's top reward never reached)")
        recording, subtasks = done
        if humanlike:
            return [_of_recording("humanlike", "aloha-transfer-cube", recording, subtasks, FPS, names)]
        release = release_convention(recording, subtasks)
        return [_of_recording("aloha", "aloha-transfer-cube", recording, subtasks, FPS, names),
                _of_recording("aloha_release", "aloha-transfer-cube-release", recording, release, FPS, names)]

    # about 60 % of the seeds succeed: try three times as many
    first = HUMANLIKE_SEED0 if humanlike else 0
    yield from (Attempt("aloha-transfer-cube", seed, lambda s=seed: make(s)) for seed in range(first, first + seeds * 3))


def libero(seeds: int, humanlike: bool = False, templates: str = "TEMPLATES") -> Iterator[Attempt]:
    """Every libero_gt template of the tuple named `templates` (TEMPLATES, HELDOUT, HELDOUT2 or HELDOUT3); one
    scene per template, built when its first episode starts.
    `humanlike`: through humanlike_gt's operator, from LIBERO's initial states counted from the last
    (the scripted episodes take them from the first), labelled source `humanlike`."""
    from benchmarks.humanlike_gt.teleop import Operator
    from benchmarks.libero_gt.generate import FEATURE_NAMES
    from benchmarks.libero_gt.rollout import FPS, run
    from benchmarks.libero_gt.scene import Scene, init_states
    from benchmarks.libero_gt import templates as sets

    scenes: dict[str, Any] = {}

    def make(tmpl, seed: int) -> list[dict[str, Any]]:
        for name in [n for n in scenes if n != tmpl.name]:  # one scene open at a time
            scenes.pop(name).close()
        if tmpl.name not in scenes:
            scenes[tmpl.name] = Scene(tmpl.suite, tmpl.problem)
        states = init_states(tmpl.suite, tmpl.problem)
        if seed >= len(states):
            raise RuntimeError(f"LIBERO has {len(states)} initial states for {tmpl.problem}")
        state = states[len(states) - 1 - seed] if humanlike else states[seed]
        rollout = run(scenes[tmpl.name], tmpl, state, seed, Operator.sample(seed) if humanlike else None)
        source = "humanlike" if humanlike else "libero"
        return [_sample(source, f"libero-{tmpl.name}", tmpl.task, rollout.states, rollout.actions, rollout.subtasks, FPS,
                        FEATURE_NAMES)]

    try:
        for tmpl in getattr(sets, templates):
            yield from (Attempt(f"libero-{tmpl.name}", seed, lambda t=tmpl, s=seed: make(t, s)) for seed in range(seeds))
    finally:
        for scene in scenes.values():
            scene.close()


# Each source from (seeds, the Meta-World state convention); the other robots have their own state.
SOURCES: dict[str, Callable[[int, str], Iterator[Attempt]]] = {
    "metaworld": metaworld, "metaworld_released": lambda seeds, state: metaworld(seeds, state, released=True),
    "humanlike": humanlike, "aloha": lambda seeds, _: aloha(seeds), "libero": lambda seeds, _: libero(seeds),
    "humanlike_libero": lambda seeds, _: libero(seeds, humanlike=True),
    "humanlike_aloha": lambda seeds, _: aloha(seeds, humanlike=True),
}
# Named with --sources only, never by default: kept out of pretraining and of every choice made for
# either backend, to choose the default backend on (issue 15).
HELDOUT_SOURCES: dict[str, Callable[[int, str], Iterator[Attempt]]] = {
    "libero_heldout": lambda seeds, _: libero(seeds, templates="HELDOUT"),
    "humanlike_libero_heldout": lambda seeds, _: libero(seeds, humanlike=True, templates="HELDOUT"),
    "libero_heldout2": lambda seeds, _: libero(seeds, templates="HELDOUT2"),
    "humanlike_libero_heldout2": lambda seeds, _: libero(seeds, humanlike=True, templates="HELDOUT2"),
    "libero_heldout3": lambda seeds, _: libero(seeds, templates="HELDOUT3"),
    "humanlike_libero_heldout3": lambda seeds, _: libero(seeds, humanlike=True, templates="HELDOUT3"),
}


def _on_timeout(signum, frame) -> None:
    raise EpisodeTimeout


def _bounded(attempt: Attempt, episode_s: float) -> list[dict[str, Any]]:
    """Run one attempt under a CPU-time alarm (ITIMER_PROF counts this process's CPU seconds), and a
    wall-clock one WALL_FACTOR times longer for a simulator that hangs without using the CPU."""
    timers = ((signal.SIGPROF, signal.ITIMER_PROF, episode_s), (signal.SIGALRM, signal.ITIMER_REAL, episode_s * WALL_FACTOR))
    previous = [signal.signal(sig, _on_timeout) for sig, _, _ in timers]
    for _, timer, seconds in timers:
        signal.setitimer(timer, seconds)
    try:
        return attempt.make()
    finally:
        for (sig, timer, _), handler in zip(timers, previous):
            signal.setitimer(timer, 0)
            signal.signal(sig, handler)


def generate(name: str, seeds: int, budget_s: float, episode_s: float, state: str = "hand") -> tuple[list[dict[str, Any]], Tally]:
    """Every attempt of a source, each bounded, the source bounded by `budget_s` CPU seconds."""
    samples: list[dict[str, Any]] = []
    tally = Tally()
    started = time.process_time()
    attempts = {**SOURCES, **HELDOUT_SOURCES}[name](seeds, state)
    for attempt in attempts:
        if time.process_time() - started > budget_s:
            tally.unattempted = 1 + sum(1 for _ in attempts)
            log.warning("%s: CPU budget of %.0f s spent; %d episodes not attempted", name, budget_s, tally.unattempted)
            break
        try:
            made = _bounded(attempt, episode_s)
        except EpisodeTimeout:
            reason = f"over {episode_s:g} CPU s"
        except Exception as exc:  # a failed script, a simulator error: skip the episode, keep the run
            reason = f"{type(exc).__name__}: {exc}"
        else:
            samples += made
            tally.kept[attempt.task] += 1
            continue
        tally.skipped[attempt.task] += 1
        tally.why[attempt.task].append(f"seed {attempt.seed}: {reason}")
        log.info("%s %s seed %d skipped: %s", name, attempt.task, attempt.seed, reason)
    return samples, tally


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    tmp.rename(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/learned_data"))
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds per task for every source (aloha: 3x this many tried); default {SEEDS}, "
                             f"{', '.join(f'{k} {v}' for k, v in SOURCE_SEEDS.items())}")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated, of: {', '.join(SOURCES)}; held out, never by default: {', '.join(HELDOUT_SOURCES)}")
    parser.add_argument("--budget-s", type=float, default=1800.0, help="CPU seconds per source")
    parser.add_argument("--episode-s", type=float, default=60.0, help="CPU seconds per episode")
    parser.add_argument("--ready", type=Path, help="append a line per finished source to this file")
    parser.add_argument("--state", choices=list(STATES), default="objects",
                        help="Meta-World state convention (metaworld, metaworld_released, humanlike): objects (hand, gripper, "
                             "object and goal xyz; the packaged weights'), or hand (without the scene: its ablation)")
    args = parser.parse_args(argv)
    # MuJoCo reads MUJOCO_GL once, at its first import: a Meta-World source imports it first, and a
    # LIBERO scene made later in the same process then failed to create its (unused) offscreen
    # context ("gladLoadGL error") on every episode. Choose headless EGL before any simulator loads.
    os.environ.setdefault("MUJOCO_GL", "egl")
    setup_logging()
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    names = [s.strip() for s in args.sources.split(",") if s.strip()]
    if unknown := [n for n in names if n not in SOURCES and n not in HELDOUT_SOURCES]:
        raise SystemExit(f"unknown source(s) {', '.join(unknown)}; defined: {', '.join([*SOURCES, *HELDOUT_SOURCES])}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        seeds = args.seeds if args.seeds is not None else SOURCE_SEEDS.get(name, SEEDS)
        cpu, wall = time.process_time(), time.perf_counter()
        samples, tally = generate(name, seeds, args.budget_s, args.episode_s, args.state)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        episodes = Counter(s["task"] for s in samples)
        manifest = {
            "source": name, "seeds": seeds, "state": args.state, "episodes": len(samples), "tasks": len(episodes),
            "per_task": dict(episodes), "skipped": dict(tally.skipped), "why_skipped": dict(tally.why),
            "unattempted": tally.unattempted, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
        }
        path = args.out / f"{name}.pkl"
        _write(path, pickle.dumps(samples, protocol=4))
        _write(path.with_suffix(".json"), json.dumps(manifest, indent=1).encode())
        line = (f"{path}: {len(samples)} episodes of {len(episodes)} tasks, {sum(tally.skipped.values())} skipped, "
                f"{cpu:.0f} CPU s ({wall:.0f} s wall); per task {json.dumps(dict(episodes))}")
        log.info("%s", line)
        if args.ready:
            with args.ready.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())} {line}\n")


if __name__ == "__main__":
    main()
