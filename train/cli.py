"""`atom-train`: SFT, world model, GRPO and evaluation on a curated dataset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.cli import (
    App,
    ConfigOpt,
    OverridesArg,
    OverwriteOpt,
    VerboseOpt,
    check_outputs,
    console,
    fail,
    setup_logging,
)
from atomvla.curate.errors import SourceError

app = App(
    help="Train on a curated dataset (an `atom-curate export --to lerobot` folder, a Hub repo id, or a store): "
    "sft and eval (stage I), wm and grpo (stage II); rollout and serve run a trained policy.",
    no_args_is_help=True,
)

DatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Curated LeRobot v3 export folder, Hub dataset repo id, or store file (.sqlite)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the memory plan per GPU (parameters, gradients, optimizer states, "
                       "activations) and whether it fits --gpu-memory; train nothing.")
]
GpuMemoryOpt = Annotated[float, typer.Option("--gpu-memory", help="GB of memory per GPU the --dry-run plan must fit.")]
WorldSizeOpt = Annotated[
    Optional[int], typer.Option("--world-size", help="Processes (GPUs) the --dry-run plans for (default: $WORLD_SIZE or 1).")
]


def _print_plan(plan) -> None:
    console.print(plan.table())
    if not plan.fits:
        raise typer.Exit(1)


@contextmanager
def _interrupted_exits_130() -> Iterator[None]:
    """A run stopped by Ctrl-C or SIGTERM after saving its last step (`train.loop.StopOnSignal`): its
    message, and the shell's code for Ctrl-C."""
    from atomvla.train.loop import Interrupted

    try:
        yield
    except Interrupted as exc:
        raise fail(str(exc), code=130) from exc


def _world(world_size: Optional[int]) -> int:
    import os

    return world_size or int(os.environ.get("WORLD_SIZE", "1"))


@app.callback()
def main() -> None:
    """Train policies and world models on curated atomic-subtask data."""


@app.command("configs")
def configs(
    kind: Annotated[Optional[str], typer.Option(help="Only configs of this kind (sft, wm, grpo).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """List the named configs."""
    setup_logging(verbose)
    from atomvla.train.config import CONFIGS

    if kind is not None and kind not in CONFIGS:
        raise fail(f"--kind {kind!r}: choose one of {', '.join(CONFIGS)}")
    for k, registry in CONFIGS.items():
        if kind is None or k == kind:
            for name in registry.names():
                console.print(f"{k:5s} {name}")


@app.command("sft")
def sft(
    overrides: OverridesArg = None,
    config: ConfigOpt = "tiny-cpu",
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints step-N/, TensorBoard logs tb/.")] = Path(
        "runs/sft"
    ),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out, with its config (overrides apply).")
    ] = False,
    add_skill: Annotated[
        Optional[str], typer.Option("--add-skill", help="Add an expert for this skill to a MoE policy (needs --from).")
    ] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="Start from this checkpoint's weights, config and statistics (needed by --add-skill).")] = None,
    dry_run: DryRunOpt = False,
    gpu_memory: GpuMemoryOpt = 80.0,
    world_size: WorldSizeOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Stage I: train the VLA (VLM + DiT action head) on task + current-subtask prompts.

    Runs on one CPU or GPU as is; for several GPUs or nodes launch it with `torchrun` or
    `accelerate launch` (FSDP2 when several processes run; `train.fsdp=false` for DDP).
    """
    setup_logging(verbose)
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.config import ConfigError, get_config
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.sft import train_sft

    try:
        cfg = get_config(config, overrides or (), kind="sft")
        if dry_run:
            from atomvla.train.memory_plan import plan_sft

            return _print_plan(plan_sft(cfg, _world(world_size), gpu_memory))
        with _interrupted_exits_130():
            result = train_sft(cfg, dataset, out, resume=resume, add_skill=add_skill, from_checkpoint=from_,
                               overrides=tuple(overrides or ()))
    except (ConfigError, DatasetError, CheckpointError, SourceError) as exc:
        raise fail(str(exc)) from exc
    if result.checkpoint is not None:
        console.print(f"last loss {result.losses[-1]:.4f}; checkpoint {result.checkpoint}")


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="SFT checkpoint (step-N folder or a run folder).")],
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and the plot.")] = Path("runs/eval"),
    max_samples: Annotated[int, typer.Option(help="Held-out samples evaluated at most (spread evenly).")] = 256,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Held-out action error (overall, per subtask, per skill), subtask-generation match rate per
    distance to a boundary, and a plot of predicted against true action chunks."""
    setup_logging(verbose)
    check_outputs(overwrite, folders=(out,))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atomvla.cli import err_console
    from atomvla.output import new_folder
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.eval import evaluate, print_report

    try:
        # OUT appears whole, or not at all. Generating each sample's subtask takes minutes on a CPU: a bar.
        with new_folder(out, overwrite) as tmp, Progress(TextColumn("{task.description}"), BarColumn(),
                                                         MofNCompleteColumn(), TimeElapsedColumn(),
                                                         console=err_console, transient=True) as bar:
            task = bar.add_task("held-out samples", total=None)
            report = evaluate(checkpoint, dataset, tmp, max_samples=max_samples,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (DatasetError, CheckpointError, SourceError) as exc:
        raise fail(str(exc)) from exc
    print_report(report, out, console)


@app.command("wm")
def wm(
    overrides: OverridesArg = None,
    config: ConfigOpt = "tiny-cpu",
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder: world_model.safetensors, wm_eval.json, tb/.")] = Path(
        "runs/wm"
    ),
    latents: Annotated[
        Optional[Path],
        typer.Option("--latents", help="Latent cache folder (default OUT/latents; with --resume, the run's own); frames are encoded once and reused."),
    ] = None,
    device: Annotated[str, typer.Option(help="Where the encoder runs to fill the latent cache (cpu, cuda).")] = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out, with its config (overrides apply).")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stage II: encode every frame once with the frozen V-JEPA 2 encoder (latent cache), train the
    action-conditioned latent predictor (teacher forcing + rollout, L1), and report its error
    against copying the current latent forward."""
    setup_logging(verbose)
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.config import ConfigError, get_config
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.latents import LatentCacheError
    from atomvla.train.worldmodel import config as _wm_configs  # noqa: F401  (registers the wm configs)
    from atomvla.train.worldmodel.train import train_world_model

    try:
        cfg = get_config(config, overrides or (), kind="wm")
        with _interrupted_exits_130():
            _, report = train_world_model(cfg, dataset, out, latents, device, resume, tuple(overrides or ()))
    except (ConfigError, DatasetError, LatentCacheError, CheckpointError, SourceError, ValueError) as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"one-step L1 {report['one_step_l1']:.4f} vs copy {report['copy_l1']:.4f}; "
        f"{report['rollout_steps']}-step rollout {report['rollout_l1']:.4f} vs copy {report['rollout_copy_l1']:.4f} "
        f"({report['windows']} windows); world model in {out}"
    )


@app.command("grpo")
def grpo(
    overrides: OverridesArg = None,
    config: ConfigOpt = "tiny-cpu",
    policy: Annotated[Optional[Path], typer.Option("--policy", help="SFT checkpoint to tune (also the KL reference).")] = None,
    world_model: Annotated[Optional[Path], typer.Option("--world-model", help="Folder written by `atom-train wm`.")] = None,
    dataset: DatasetOpt = None,
    latents: Annotated[
        Optional[Path], typer.Option("--latents", help="Latent cache (default: the one the world model was trained on).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints step-N/, metrics.jsonl, tb/.")] = Path(
        "runs/grpo"
    ),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out, with its config (overrides apply).")
    ] = False,
    dry_run: DryRunOpt = False,
    gpu_memory: GpuMemoryOpt = 80.0,
    world_size: WorldSizeOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Stage II: offline GRPO of the SFT policy, rewarded by the world model (subgoal energy,
    final-goal energy, deviation from the expert chunk; weights `rewards.subgoal=…`,
    `rewards.final=…`, `rewards.deviation=…`, 0 switches a term off), KL to the SFT policy.

    The dataset defaults to the policy's. Checkpoints are policy checkpoints: `atom-train eval`
    reads them. Multi-GPU: launch with `torchrun` or `accelerate launch`, as for `sft`.
    """
    setup_logging(verbose)
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.config import ConfigError, get_config
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.grpo import config as _grpo_configs  # noqa: F401  (registers the grpo configs)
    from atomvla.train.grpo.train import train_grpo
    from atomvla.train.latents import LatentCacheError
    from atomvla.train.rewards import RewardError
    from atomvla.train.worldmodel.world_model import WorldModelError

    try:
        cfg = get_config(config, overrides or (), kind="grpo")
        if dry_run:
            from atomvla.train.memory_plan import plan_grpo

            return _print_plan(plan_grpo(cfg, _policy_config(policy), _world(world_size), gpu_memory))
        with _interrupted_exits_130():
            result = train_grpo(cfg, out, policy, world_model, dataset, latents, resume, tuple(overrides or ()))
    except (ConfigError, DatasetError, CheckpointError, LatentCacheError, WorldModelError, RewardError, SourceError) as exc:
        raise fail(str(exc)) from exc
    if result.metrics:
        last = result.metrics[-1]
        terms = ", ".join(f"{k.removeprefix('reward_')} {v:.4f}" for k, v in last.items() if k.startswith("reward_"))
        console.print(f"step {last['step']:.0f}: reward {terms}; kl {last['kl']:.5f}; checkpoint {result.checkpoint}")


@app.command("rollout")
def rollout(
    tasks: Annotated[str, typer.Option("--tasks", help="ENV_ID=INSTRUCTION[,ENV_ID=INSTRUCTION...]: the envs and the task prompt of each (no commas in a prompt). With --suite, a task's name or number in the suite, its instruction the suite's unless given.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="SFT checkpoint (step-N folder or a run folder).")] = None,
    env: Annotated[str, typer.Option("--env", help="Simulator: metaworld (hand state), metaworld-objects (hand + object + goal state), libero.")] = "metaworld",
    suite: Annotated[Optional[str], typer.Option("--suite", help="The simulator's suite the --tasks are in (libero: libero_10, libero_goal, ...).")] = None,
    episodes: Annotated[int, typer.Option("--episodes", help="Episodes per task; episode i runs with seed SEED+i.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, success.png, videos/; a re-run resumes there.")] = Path("runs/rollout"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first episode (task variation, reset, policy noise).")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Parallel processes, each with its own policy and envs.")] = 1,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Step limit per episode (default: the simulator's).")] = None,
    server: Annotated[Optional[str], typer.Option("--server", help="Act through `atom-train serve` at ws://HOST:PORT instead of --checkpoint.")] = None,
    token: Annotated[Optional[str], typer.Option("--token", envvar="ATOMVLA_SERVE_TOKEN", help="The server's token (env ATOMVLA_SERVE_TOKEN).")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write one MP4 per episode.")] = True,
    device: Annotated[str, typer.Option(help="Where a local policy runs (cpu, cuda).")] = "cpu",
    episode_timeout: Annotated[float, typer.Option("--episode-timeout", min=1, help="Seconds one episode may take; a simulator or policy that hangs longer is killed and its episode fails with the reason.")] = 900.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run a policy in closed loop in a simulator: success per task (Wilson 95% interval), the subtasks
    it announced and where failed episodes stalled, one video per episode. A killed rollout re-run
    with the same --out continues where it stopped."""
    setup_logging(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atomvla.cli import err_console
    from atomvla.train.rollout.run import RESULTS_FILE, RolloutSpec, parse_tasks
    from atomvla.train.rollout.run import rollout as run_rollout

    spec = RolloutSpec(env, parse_tasks(tasks, env, suite), episodes, out, checkpoint, server, token, seed, max_steps,
                       workers, video, device, episode_timeout)
    wins: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("rollouts", total=None)

        def advance(result, done: int, total: int) -> None:
            wins[result.env_id] = wins.get(result.env_id, 0) + result.success
            bar.update(task, completed=done, total=total,
                       description="rollouts " + " ".join(f"{k} {v}✓" for k, v in wins.items()))

        results = run_rollout(spec, advance)
    for env_id, r in results["tasks"].items():
        lo, hi = r["ci95"]
        stalled = ", ".join(f"{k or '?'} ({v})" for k, v in r["subtasks"]["stalled_in"].items())
        console.print(f"{env_id}: {r['successes']}/{r['episodes']} success {r['success_rate']:.0%} [{lo:.0%}, {hi:.0%}], "
                      f"{r['mean_steps']:.0f} steps" + (f"; stalled in: {stalled}" if stalled else "")
                      + (f"; {r['crashed']} crashed" if r["crashed"] else ""))
    console.print(f"results in {out / RESULTS_FILE}")


@app.command("serve")
def serve(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="SFT checkpoint (step-N folder or a run folder).")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free one).")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", envvar="ATOMVLA_SERVE_TOKEN", help="Clients must send `Authorization: Api-Key TOKEN` (env ATOMVLA_SERVE_TOKEN).")] = None,
    device: Annotated[str, typer.Option(help="Where the policy runs (cpu, cuda).")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of each connection's action noise.")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a policy over a websocket in openpi's protocol: metadata on connect, then one msgpack
    observation {images: {camera: HxWx3 uint8}, state, task} in, {actions (H x A float32), subtask,
    skill} out. One connection is one episode."""
    setup_logging(verbose)
    import asyncio

    from atomvla.train.policy import load_policy
    from atomvla.train.serve.server import PolicyServer, ServeError, is_loopback

    if not is_loopback(host) and not token:
        raise ServeError(f"binding {host} exposes the policy beyond this machine: pass --token")
    server = PolicyServer(load_policy(checkpoint, device, seed), token, seed)
    try:
        asyncio.run(server.run(host, port))
    except KeyboardInterrupt:
        pass


def _policy_config(policy: Optional[Path]):
    """The SFT config of GRPO's --policy checkpoint (what the memory plan builds)."""
    from atomvla.train.checkpoint import Checkpoint, CheckpointError, resolve_checkpoint
    from atomvla.train.config import SFTConfig, from_dict

    if policy is None:
        raise CheckpointError("grpo --dry-run needs --policy (the SFT checkpoint whose model it plans for)")
    return from_dict(SFTConfig, Checkpoint(resolve_checkpoint(policy)).config)
