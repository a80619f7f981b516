"""Run a policy's rollouts: check everything first, run the missing episodes in worker processes
(one that dies fails only its episode and is replaced), report.

    OUT/run.json                      what was asked (a re-run with other settings is refused)
    OUT/episodes/ENV_ID/NNNN.json     one result per finished episode (resume skips these)
    OUT/videos/ENV_ID/NNNN.mp4        the episode with the announced subtask drawn on it
    OUT/results.json                  per task: success rate, Wilson 95% interval, steps, subtasks
    OUT/success.png                   the per-task success plot
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomvla.errors import UserError
from atomvla.train.rollout.episode import EpisodeResult, run_episode
from atomvla.train.rollout.layout import check_layout, checkpoint_layout, metadata_layout
from atomvla.train.rollout.report import plot_success, task_summary
from atomvla.train.rollout.workers import run_in_workers
from atomvla.train.sim import SIMULATORS, SimEnv, env_id_in_suite, instruction_of

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
PLOT_FILE = "success.png"
FPS = 20  # Meta-World's and LIBERO's control rate, as the datasets were recorded


class RolloutError(UserError, ValueError):
    """Tasks, a policy or an output folder that a rollout cannot run with."""


@dataclass(frozen=True)
class RolloutSpec:
    simulator: str
    tasks: tuple[tuple[str, str], ...]  # (env id, instruction)
    episodes: int
    out: Path
    checkpoint: Path | None = None  # a local policy, or
    server: str | None = None  # ws://host:port of `atom-train serve`
    token: str | None = None
    seed: int = 0  # episode i of every task runs with seed + i
    max_steps: int | None = None  # default: the simulator's episode limit
    workers: int = 1
    video: bool = True
    device: str = "cpu"
    episode_timeout_s: float = 900.0  # a worker that hangs this long in one episode is killed


def parse_tasks(text: str, simulator: str = "metaworld", suite: str | None = None) -> tuple[tuple[str, str], ...]:
    """`TASK[=INSTRUCTION][,TASK[=INSTRUCTION]...]` (an instruction holds no comma) as (env id,
    instruction) pairs. A TASK is an env id, or with `suite` a task's name or number in that suite;
    the instruction may be left out where the simulator gives one (LIBERO's suites)."""
    sim = SIMULATORS[simulator]
    items = [s.strip() for s in text.split(",") if s.strip()]
    tasks = []
    for item in items:
        task, _, instruction = item.partition("=")
        env_id = env_id_in_suite(sim, suite, task.strip())
        instruction = instruction.strip() or instruction_of(sim, env_id)
        if not instruction:
            raise RolloutError(f"--tasks: {task.strip()!r} has no instruction (write ENV_ID=INSTRUCTION)")
        tasks.append((env_id, instruction))
    if not tasks:
        raise RolloutError("--tasks is empty (write ENV_ID=INSTRUCTION[,ENV_ID=INSTRUCTION...])")
    if len({t for t, _ in tasks}) < len(tasks):
        raise RolloutError("--tasks names an env twice")
    return tuple(tasks)


@dataclass(frozen=True)
class _Job:
    env_id: str
    instruction: str
    episode: int
    seed: int


def _episode_file(out: Path, env_id: str, episode: int) -> Path:
    return out / "episodes" / env_id / f"{episode:04d}.json"


def _video_file(out: Path, env_id: str, episode: int) -> Path:
    return out / "videos" / env_id / f"{episode:04d}.mp4"


def _policy_layout(spec: RolloutSpec) -> tuple[str, Any]:
    if spec.server is not None:
        from atomvla.train.serve.client import PolicyClient

        client = PolicyClient(spec.server, spec.token)
        client.close()
        return client.metadata.get("checkpoint", spec.server), metadata_layout(client.metadata)
    path, layout = checkpoint_layout(spec.checkpoint)
    return str(path.resolve()), layout  # absolute: a resumed run may be started from elsewhere


def _check_run_file(spec: RolloutSpec, checkpoint: str, max_steps: int) -> None:
    """Write OUT/run.json, or check that the rollout resumed there asked for the same thing."""
    asked = {"simulator": spec.simulator, "checkpoint": checkpoint, "seed": spec.seed, "max_steps": max_steps,
             "tasks": dict(spec.tasks)}
    run_file = spec.out / RUN_FILE
    if run_file.exists():
        before = json.loads(run_file.read_text())
        changed = [k for k in asked if k != "tasks" and before.get(k) != asked[k]]
        changed += [f"the instruction of {t}" for t, i in spec.tasks if before.get("tasks", {}).get(t, i) != i]
        if changed:
            raise RolloutError(f"{spec.out} holds a rollout with another {', '.join(changed)}; pass another --out")
        asked["tasks"] = {**before.get("tasks", {}), **asked["tasks"]}
    spec.out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(asked, indent=2))


def prepare(spec: RolloutSpec) -> tuple[str, int]:
    """Everything that can be refused, before any episode: tasks, env ids, layouts, steps, --out.
    Returns the policy's name (checkpoint path) and the step limit."""
    if (spec.checkpoint is None) == (spec.server is None):
        raise RolloutError("pass either --checkpoint or --server")
    if spec.episodes < 1 or spec.workers < 1:
        raise RolloutError("--episodes and --workers must be at least 1")
    sim = SIMULATORS[spec.simulator]
    layouts = {env_id: sim.layout(env_id) for env_id, _ in spec.tasks}  # unknown env ids fail here
    name, layout = _policy_layout(spec)
    for env_id, env_layout in layouts.items():
        check_layout(layout, f"policy {name}", env_layout, f"{spec.simulator} env {env_id}")
    envs = {env_id: sim.make(env_id) for env_id, _ in spec.tasks}  # made, not started
    for env_id, env in envs.items():
        seeds = getattr(env, "seeds", None)  # a simulator whose seeds are recorded initial states
        if seeds is not None and not 0 <= spec.seed <= spec.seed + spec.episodes <= seeds:
            raise RolloutError(f"{spec.simulator} env {env_id} has seeds 0 to {seeds - 1} (its recorded initial "
                               f"states); --seed {spec.seed} --episodes {spec.episodes} needs {spec.seed} to "
                               f"{spec.seed + spec.episodes - 1}")
    limit = min(env.max_steps for env in envs.values())
    max_steps = spec.max_steps if spec.max_steps is not None else limit
    if not 1 <= max_steps <= limit:
        raise RolloutError(f"--max-steps {max_steps}: {spec.simulator} episodes last 1 to {limit} steps")
    _check_run_file(spec, name, max_steps)
    return name, max_steps


# --- workers: each process holds one policy and its envs -------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(sim: Any, spec: RolloutSpec, max_steps: int, threads: int | None) -> None:
    """`sim` is the simulator itself (pickled by reference to its class), not its name: a plug-in
    registered at run time need not be registered again in the worker."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if spec.server is not None:
        from atomvla.train.serve.client import PolicyClient

        policy: Any = PolicyClient(spec.server, spec.token)
    else:
        from atomvla.train.policy import load_policy

        policy = load_policy(spec.checkpoint, spec.device)
    _worker.update(sim=sim, spec=spec, max_steps=max_steps, policy=policy, envs={})


def _run_job(job: _Job) -> EpisodeResult:
    spec: RolloutSpec = _worker["spec"]
    envs: dict[str, SimEnv] = _worker["envs"]
    if job.env_id not in envs:
        envs[job.env_id] = _worker["sim"].make(job.env_id)
    policy = _worker["policy"]
    if hasattr(policy, "generator"):  # a local policy: its noise depends on the episode only, not on the order
        policy.generator.manual_seed(job.seed)
    video = _video_file(spec.out, job.env_id, job.episode) if spec.video else None
    return run_episode(envs[job.env_id], policy, job.env_id, job.instruction, job.episode, job.seed,
                       _worker["max_steps"], video, FPS, spec.out)


def _close_worker() -> None:
    for env in _worker.get("envs", {}).values():
        env.close()
    if hasattr(_worker.get("policy"), "close"):
        _worker["policy"].close()
    _worker.clear()


def _save(spec: RolloutSpec, result: EpisodeResult) -> None:
    path = _episode_file(spec.out, result.env_id, result.episode)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json()))
    tmp.rename(path)  # a finished episode is a complete file: resume trusts it


def _run_jobs(spec: RolloutSpec, max_steps: int, jobs: Sequence[_Job]) -> Iterator[EpisodeResult]:
    """Every episode in a worker process, even with one worker: a simulator that segfaults takes
    down its worker, not the rollout."""

    def died(job: _Job, how: str) -> EpisodeResult:
        if spec.video:  # what the worker had written of the episode's video
            video = _video_file(spec.out, job.env_id, job.episode)
            video.with_name(video.name + ".part").unlink(missing_ok=True)
        error = f"the worker process died during the episode ({how}); a new worker took over"
        return EpisodeResult(job.env_id, job.episode, job.seed, False, 0, [], None, error, None)

    threads = None if spec.workers == 1 else 1  # one thread each where they share the cores
    sim = SIMULATORS[spec.simulator]
    for result in run_in_workers(spec.workers, _init_worker, (sim, spec, max_steps, threads), _run_job,
                                 _close_worker, jobs, died, spec.episode_timeout_s):
        _save(spec, result)
        yield result


def _load_result(path: Path) -> EpisodeResult | None:
    try:
        return EpisodeResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # cut short by a kill: run it again


def rollout(spec: RolloutSpec, progress: Callable[[EpisodeResult, int, int], None] | None = None) -> dict[str, Any]:
    """Run what is missing, then write and return results.json's content."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    checkpoint, max_steps = prepare(spec)
    done: dict[tuple[str, int], EpisodeResult] = {}
    jobs = []
    for env_id, instruction in spec.tasks:
        for i in range(spec.episodes):
            found = _load_result(_episode_file(spec.out, env_id, i))
            if found is not None:
                done[env_id, i] = found
            else:
                jobs.append(_Job(env_id, instruction, i, spec.seed + i))
    if done:
        log.info("resuming in %s: %d episodes already done, %d to run", spec.out, len(done), len(jobs))
    for result in _run_jobs(spec, max_steps, jobs):
        done[result.env_id, result.episode] = result
        if progress is not None:
            progress(result, len(done), spec.episodes * len(spec.tasks))
    tasks = {
        env_id: task_summary(instruction, [done[env_id, i] for i in range(spec.episodes)])
        for env_id, instruction in spec.tasks
    }
    results = {"checkpoint": checkpoint, "simulator": spec.simulator, "seed": spec.seed, "max_steps": max_steps,
               "tasks": tasks}
    (spec.out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    plot_success(tasks, spec.out / PLOT_FILE)
    return results

