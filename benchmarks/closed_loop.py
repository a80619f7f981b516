"""Closed-loop success of small CPU policies trained on generated Meta-World demonstrations, and the
papers' central ablation: a task-only prompt against task + self-predicted subtask, same seeds.

    python -m benchmarks.closed_loop --out benchmarks/out/closed_loop     # the defaults are the recipe
    # the two arms in parallel (one process each); the task-only arm rolled out on pick-place alone:
    python -m benchmarks.closed_loop --arms subtasks & \
    python -m benchmarks.closed_loop --arms task-only --eval-tasks pick-place-v3

The recipe, each stage skipped when its output exists (so a stopped run continues):
1. demonstrations: `python -m benchmarks.metaworld_gt.generate --state objects --fine` per task, seeds
   0..N-1 (the scripted policies; one process per task), with their exact subtasks; the state holds
   hand + gripper + the object's and the goal's positions; pick-place in 3 subtasks (reach, grasp, place);
2. a store per arm of the same episodes (`atom-curate import` + `import-annotations`): `subtasks` with the
   ground-truth decompositions, `task-only` with every subtask's text replaced by the task itself
   (skill `other`), so its policy learns nothing beyond the task prompt;
3. `atom-train sft --config metaworld-cpu` on each (wall and CPU time reported; one torch thread);
4. `atom-train rollout --env metaworld-objects` of each policy, episodes on seeds 1000.. (never in the
   demonstrations), no videos; success rates with Wilson 95% intervals, same seeds for both arms.
Stages run under `nice -n $CLOSED_LOOP_NICE` (default 10). report.json gathers the arms' figures.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from atomvla.cli import console, setup_logging

EVAL_SEED = 1000  # rollout seeds EVAL_SEED.. never appear among the demonstrations' 0..N-1
TASKS = "button-press-v3,drawer-close-v3,handle-press-v3,pick-place-v3"
STEPS = 1500
MAX_STEPS = 150
ARMS = ("subtasks", "task-only")
VENV_BIN = Path(sys.executable).parent


NICE = int(os.environ.get("CLOSED_LOOP_NICE", "10"))  # the stages share the machine: nice'd by default


def _run(*args: str, log: Path) -> dict[str, float]:
    """Run a command (nice'd, one thread), its output to `log`; its wall and CPU seconds (user + system)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("a") as out:
        subprocess.run(["nice", "-n", str(NICE), *args], check=True, stdout=out, stderr=subprocess.STDOUT, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(cpu, 1)}


def _demonstrations(out: Path, tasks: list[str], seeds: int, state: str, fine: bool) -> list[Path]:
    folders = [out / "demos" / task for task in tasks]
    todo = [(t, f) for t, f in zip(tasks, folders) if not (f / "truth.jsonl").exists()]
    procs = [
        subprocess.Popen(["nice", "-n", str(NICE), sys.executable, "-m", "benchmarks.metaworld_gt.generate", "--out", str(f),
                          "--tasks", t, "--seeds", str(seeds), "--codec", "h264", "--state", state,
                          "--fine" if fine else "--no-fine"],
                         stdout=(out / f"demos-{t}.log").open("w"), stderr=subprocess.STDOUT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
        for t, f in todo
    ]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"a demonstration generator failed: see {out}/demos-*.log")
    for task, f in zip(tasks, folders):  # one store holds every task: datasets named by task, not `lerobot`
        if (f / "lerobot").exists():
            (f / "lerobot").rename(f / task)
    return folders


def _task_only(line: dict) -> dict:
    return {**line, "subtasks": [{**s, "instruction": line["task"], "skill": "other"} for s in line["subtasks"]]}


def _stores(out: Path, folders: list[Path], arms: list[str]) -> dict[str, Path]:
    stores = {arm: out / f"{arm}.sqlite" for arm in arms}
    for arm, store in stores.items():
        if store.exists():
            continue
        lines = [{**json.loads(ln), "episode_id": f"{f.name}/{json.loads(ln)['episode_index']}"}
                 for f in folders for ln in (f / "truth.jsonl").read_text().splitlines() if ln.strip()]
        truth = out / f"truth-{arm}.jsonl"
        truth.write_text("".join(json.dumps(_task_only(ln) if arm == "task-only" else ln) + "\n" for ln in lines))
        tmp = store.with_suffix(f".tmp{os.getpid()}.sqlite")
        tmp.unlink(missing_ok=True)
        for f in folders:
            _run(str(VENV_BIN / "atom-curate"), "import", str(f / f.name), "--store", str(tmp), log=out / "stores.log")
        _run(str(VENV_BIN / "atom-curate"), "import-annotations", str(truth), "--author", "truth", "--store", str(tmp),
             log=out / "stores.log")
        tmp.rename(store)
    return stores


def _successes(rollout: Path, task: str) -> dict[int, bool]:
    return {int(f.stem): json.loads(f.read_text())["success"] for f in (rollout / "episodes" / task).glob("*.json")}


def _paired(out: Path, tasks: list[str]) -> dict[str, dict]:
    """Per task both arms ran: the episodes (same seeds) only one arm solved, and the exact two-sided
    McNemar p-value on those discordant pairs (binomial, p = 1/2)."""
    paired = {}
    for task in tasks:
        a, b = (_successes(out / f"rollout-{arm}", task) for arm in ARMS)
        seeds = sorted(a.keys() & b.keys())
        if not seeds:
            continue
        only_a, only_b = sum(a[i] and not b[i] for i in seeds), sum(b[i] and not a[i] for i in seeds)
        n, k = only_a + only_b, min(only_a, only_b)
        p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
        paired[task] = {"episodes": len(seeds), "only_subtasks": only_a, "only_task_only": only_b,
                        "both": sum(a[i] and b[i] for i in seeds), "neither": sum(not (a[i] or b[i]) for i in seeds),
                        "mcnemar_p": p}
    return paired


def main(
    out: Annotated[Path, typer.Option(help="Working folder (stages already done there are skipped).")] = Path(
        "benchmarks/out/closed_loop"
    ),
    tasks: Annotated[str, typer.Option(help="Meta-World tasks of benchmarks/metaworld_gt (comma-separated).")] = TASKS,
    seeds: Annotated[int, typer.Option(help="Demonstrations per task (seeds 0..N-1).")] = 50,
    state: Annotated[str, typer.Option(help="Recorded state: hand (hand + gripper) or objects (+ object and goal positions).")] = "objects",
    fine: Annotated[bool, typer.Option(help="3-subtask decompositions where benchmarks/metaworld_gt/fine.py has one.")] = True,
    steps: Annotated[int, typer.Option(help="SFT steps of each policy.")] = STEPS,
    episodes: Annotated[int, typer.Option(help="Closed-loop episodes per task and policy.")] = 50,
    max_steps: Annotated[int, typer.Option(help="Step limit of an episode.")] = MAX_STEPS,
    workers: Annotated[int, typer.Option(help="Rollout processes.")] = 2,
    arms: Annotated[str, typer.Option(help="Policies to train and roll out: subtasks, task-only.")] = "subtasks,task-only",
    eval_tasks: Annotated[str, typer.Option(help="Tasks to roll out (default: every trained task).")] = "",
    overrides: Annotated[str, typer.Option(help="Extra SFT overrides, space-separated KEY=VALUE.")] = "",
) -> None:
    setup_logging()
    from atomvla.train.sim.metaworld import SIMULATOR_NAMES
    from benchmarks.metaworld_gt.tasks import TASKS as SPECS

    if state not in SIMULATOR_NAMES:
        raise SystemExit(f"--state {state!r}: choose from {', '.join(SIMULATOR_NAMES)}")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if unknown := [t for t in names if t not in SPECS]:
        raise SystemExit(f"not a task of benchmarks/metaworld_gt: {', '.join(unknown)}")
    arm_names = [a.strip() for a in arms.split(",") if a.strip()]
    if unknown := [a for a in arm_names if a not in ARMS]:
        raise SystemExit(f"not an arm: {', '.join(unknown)} (choose from {', '.join(ARMS)})")
    out.mkdir(parents=True, exist_ok=True)
    stores = _stores(out, _demonstrations(out, names, seeds, state, fine), arm_names)
    evaluated = [t.strip() for t in eval_tasks.split(",") if t.strip()] or names
    if unknown := [t for t in evaluated if t not in names]:
        raise SystemExit(f"--eval-tasks: not trained on {', '.join(unknown)}")
    spec = ",".join(f"{t}={SPECS[t].instruction}" for t in evaluated)
    report: dict = {"tasks": names, "demonstrations_per_task": seeds, "state": state, "fine": fine, "sft_steps": steps,
                    "overrides": overrides.split(), "max_steps": max_steps, "arms": {}}
    report_file = out / "report.json"  # arms run by separate invocations (e.g. in parallel) add up in it
    for arm in arm_names:
        policy = out / f"policy-{arm}"
        timing = out / f"policy-{arm}.time.json"
        if not timing.exists():
            cost = _run(str(VENV_BIN / "atom-train"), "sft", "--config", "metaworld-cpu", "--dataset", str(stores[arm]),
                        "--out", str(policy), f"train.max_steps={steps}", f"train.save_every={steps}", *overrides.split(),
                        log=out / f"sft-{arm}.log")
            timing.write_text(json.dumps(cost))
        rollout = out / f"rollout-{arm}"
        _run(str(VENV_BIN / "atom-train"), "rollout", "--checkpoint", str(policy), "--env", SIMULATOR_NAMES[state],
             "--tasks", spec, "--episodes", str(episodes), "--seed", str(EVAL_SEED), "--max-steps", str(max_steps),
             "--workers", str(workers), "--no-video", "--out", str(rollout), log=out / f"rollout-{arm}.log")
        results = json.loads((rollout / "results.json").read_text())
        measured = {t: {k: r[k] for k in ("successes", "episodes", "success_rate", "ci95", "mean_steps")}
                    | {"stalled_in": r["subtasks"]["stalled_in"]} for t, r in results["tasks"].items()}
        earlier = json.loads(report_file.read_text())["arms"] if report_file.exists() else {}
        report["arms"] = {**earlier, **report["arms"]}
        report["arms"][arm] = {"train": json.loads(timing.read_text()),
                               "tasks": {**earlier.get(arm, {}).get("tasks", {}), **measured}}
        report["paired"] = _paired(out, names)
        report_file.write_text(json.dumps(report, indent=2))
    for task, x in report.get("paired", {}).items():
        console.print(f"{task}: same seeds, only subtasks succeeded {x['only_subtasks']}, only task-only "
                      f"{x['only_task_only']}, both {x['both']}, neither {x['neither']}; exact McNemar p = {x['mcnemar_p']:.3f}")
    for arm, r in report["arms"].items():
        t = r["train"]
        console.print(f"[bold]{arm}[/] (SFT {steps} steps: {t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} min CPU)")
        for task, x in r["tasks"].items():
            lo, hi = x["ci95"]
            console.print(f"  {task:18s} {x['successes']:3d}/{x['episodes']} = {x['success_rate']:.0%} [{lo:.0%}, {hi:.0%}]"
                          f"  mean steps {x['mean_steps']:.0f}  stalled in {x['stalled_in'] or '-'}")


if __name__ == "__main__":
    typer.run(main)
