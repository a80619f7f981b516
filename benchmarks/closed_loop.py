"""Closed-loop success of small CPU policies trained on generated Meta-World demonstrations, and the
papers' central ablation: a task-only prompt against task + self-predicted subtask, same seeds.

    python -m benchmarks.closed_loop --out benchmarks/out/closed_loop \
        --tasks button-press-v3,drawer-close-v3,handle-press-v3,drawer-open-v3 --seeds 16 --steps 1500 --episodes 50

The recipe, each stage skipped when its output exists (so a stopped run continues):
1. demonstrations: `python -m benchmarks.metaworld_gt.generate` per task, seeds 0..N-1 (the scripted
   policies; one process per task), with their exact subtasks;
2. two stores of the same episodes (`atom-curate import` + `import-annotations`): `subtasks` with the
   ground-truth decompositions, `task-only` with every subtask's text replaced by the task itself
   (skill `other`), so its policy learns nothing beyond the task prompt;
3. `atom-train sft --config metaworld-cpu` on each (wall time reported; nice'd, 1 torch thread);
4. `atom-train rollout` of both policies on every task, episodes on seeds 1000.. (never in the
   demonstrations), no videos; success rates with Wilson 95% intervals, same seeds for both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from atomvla.cli import console, setup_logging

EVAL_SEED = 1000  # rollout seeds EVAL_SEED.. never appear among the demonstrations' 0..N-1
VENV_BIN = Path(sys.executable).parent


def _run(*args: str, log: Path) -> float:
    """Run a command (nice'd, one thread), its output to `log`; the wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with log.open("a") as out:
        subprocess.run(["nice", "-n", "10", *args], check=True, stdout=out, stderr=subprocess.STDOUT, env=env)
    return time.perf_counter() - start


def _demonstrations(out: Path, tasks: list[str], seeds: int) -> list[Path]:
    folders = [out / "demos" / task for task in tasks]
    todo = [(t, f) for t, f in zip(tasks, folders) if not (f / "truth.jsonl").exists()]
    procs = [
        subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "benchmarks.metaworld_gt.generate", "--out", str(f),
                          "--tasks", t, "--seeds", str(seeds), "--codec", "h264"],
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


def _stores(out: Path, folders: list[Path]) -> dict[str, Path]:
    stores = {"subtasks": out / "subtasks.sqlite", "task-only": out / "task-only.sqlite"}
    for arm, store in stores.items():
        if store.exists():
            continue
        lines = [{**json.loads(ln), "episode_id": f"{f.name}/{json.loads(ln)['episode_index']}"}
                 for f in folders for ln in (f / "truth.jsonl").read_text().splitlines() if ln.strip()]
        truth = out / f"truth-{arm}.jsonl"
        truth.write_text("".join(json.dumps(_task_only(ln) if arm == "task-only" else ln) + "\n" for ln in lines))
        tmp = store.with_suffix(".tmp.sqlite")
        tmp.unlink(missing_ok=True)
        for f in folders:
            _run(str(VENV_BIN / "atom-curate"), "import", str(f / f.name), "--store", str(tmp), log=out / "stores.log")
        _run(str(VENV_BIN / "atom-curate"), "import-annotations", str(truth), "--author", "truth", "--store", str(tmp),
             log=out / "stores.log")
        tmp.rename(store)
    return stores


def main(
    out: Annotated[Path, typer.Option(help="Working folder (stages already done there are skipped).")] = Path(
        "benchmarks/out/closed_loop"
    ),
    tasks: Annotated[str, typer.Option(help="Meta-World tasks of benchmarks/metaworld_gt (comma-separated).")] = (
        "button-press-v3,drawer-close-v3,handle-press-v3,drawer-open-v3"
    ),
    seeds: Annotated[int, typer.Option(help="Demonstrations per task (seeds 0..N-1).")] = 16,
    steps: Annotated[int, typer.Option(help="SFT steps of each policy.")] = 1500,
    episodes: Annotated[int, typer.Option(help="Closed-loop episodes per task and policy.")] = 50,
    max_steps: Annotated[int, typer.Option(help="Step limit of an episode.")] = 200,
    workers: Annotated[int, typer.Option(help="Rollout processes.")] = 2,
    arms: Annotated[str, typer.Option(help="Policies to train and roll out: subtasks, task-only.")] = "subtasks,task-only",
) -> None:
    setup_logging()
    from benchmarks.metaworld_gt.tasks import TASKS

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if unknown := [t for t in names if t not in TASKS]:
        raise SystemExit(f"not a task of benchmarks/metaworld_gt: {', '.join(unknown)}")
    out.mkdir(parents=True, exist_ok=True)
    stores = _stores(out, _demonstrations(out, names, seeds))
    spec = ",".join(f"{t}={TASKS[t].instruction}" for t in names)
    report: dict = {"tasks": names, "demonstrations_per_task": seeds, "sft_steps": steps, "arms": {}}
    for arm in [a.strip() for a in arms.split(",") if a.strip()]:
        policy = out / f"policy-{arm}"
        timing = out / f"policy-{arm}.wall_s"
        if not timing.exists():
            wall = _run(str(VENV_BIN / "atom-train"), "sft", "--config", "metaworld-cpu", "--dataset", str(stores[arm]),
                        "--out", str(policy), f"train.max_steps={steps}", f"train.save_every={steps}",
                        log=out / f"sft-{arm}.log")
            timing.write_text(f"{wall:.0f}")
        rollout = out / f"rollout-{arm}"
        _run(str(VENV_BIN / "atom-train"), "rollout", "--checkpoint", str(policy), "--tasks", spec,
             "--episodes", str(episodes), "--seed", str(EVAL_SEED), "--max-steps", str(max_steps),
             "--workers", str(workers), "--no-video", "--out", str(rollout), log=out / f"rollout-{arm}.log")
        results = json.loads((rollout / "results.json").read_text())
        report["arms"][arm] = {"train_wall_s": float(timing.read_text()), "tasks": {
            t: {k: r[k] for k in ("successes", "episodes", "success_rate", "ci95", "mean_steps")} | {
                "stalled_in": r["subtasks"]["stalled_in"]} for t, r in results["tasks"].items()}}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for arm, r in report["arms"].items():
        console.print(f"[bold]{arm}[/] (SFT {steps} steps, {r['train_wall_s'] / 60:.1f} min wall)")
        for t, x in r["tasks"].items():
            lo, hi = x["ci95"]
            console.print(f"  {t:18s} {x['successes']:3d}/{x['episodes']} = {x['success_rate']:.0%} [{lo:.0%}, {hi:.0%}]"
                          f"  stalled in {x['stalled_in'] or '-'}")


if __name__ == "__main__":
    typer.run(main)
