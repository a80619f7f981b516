"""`atom-train`: SFT, world model, GRPO and evaluation on a curated dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.cli import App, console, fail, setup_logging
from atomvla.curate.errors import SourceError

app = App(
    help="Train on a curated dataset (an `atom-curate export --to lerobot` folder, a Hub repo id, or a store): "
    "sft | eval (| wm | grpo).",
    no_args_is_help=True,
)

ConfigOpt = Annotated[str, typer.Option("--config", help="Named config (e.g. tiny-cpu, qwen3vl-4b).")]
DatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Curated LeRobot v3 export folder, Hub dataset repo id, or store file (.sqlite)."),
]
OverridesArg = Annotated[
    Optional[list[str]], typer.Argument(help="Config overrides, key=value with dotted keys (train.max_steps=200).")
]


@app.callback()
def main() -> None:
    """Train policies and world models on curated atomic-subtask data."""


@app.command("configs")
def configs(kind: Annotated[Optional[str], typer.Option(help="Only configs of this kind (sft, wm, grpo).")] = None) -> None:
    """List the named configs."""
    from atomvla.train.config import CONFIGS

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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Stage I: train the VLA (VLM + DiT action head) on task + current-subtask prompts.

    Runs on one CPU or GPU as is; for several GPUs or nodes launch it with `torchrun` or
    `accelerate launch` (DDP; `train.distributed=fsdp` for FSDP).
    """
    setup_logging(verbose)
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.config import ConfigError, get_config
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.sft import train_sft

    try:
        cfg = get_config(config, overrides or (), kind="sft")
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Held-out action error (overall, per subtask, per skill), subtask-generation match rate per
    distance to a boundary, and a plot of predicted against true action chunks."""
    setup_logging(verbose)
    from atomvla.train.checkpoint import CheckpointError
    from atomvla.train.data.episodes import DatasetError
    from atomvla.train.eval import evaluate, print_report

    try:
        report = evaluate(checkpoint, dataset, out, max_samples=max_samples)
    except (DatasetError, CheckpointError, SourceError) as exc:
        raise fail(str(exc)) from exc
    print_report(report, console)


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
        typer.Option("--latents", help="Latent cache folder (default OUT/latents); frames are encoded once and reused."),
    ] = None,
    device: Annotated[str, typer.Option(help="Where the encoder and predictor run (cpu, cuda).")] = "cpu",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Stage II: encode every frame once with the frozen V-JEPA 2 encoder (latent cache), train the
    action-conditioned latent predictor (teacher forcing + rollout, L1), and report its error
    against copying the current latent forward."""
    setup_logging(verbose)
    from atomvla.train.config import ConfigError, get_config
    from atomvla.train.data.episodes import DatasetError, open_dataset
    from atomvla.train.latents import LatentCacheError
    from atomvla.train.worldmodel import config as _wm_configs  # noqa: F401  (registers the wm configs)
    from atomvla.train.worldmodel.train import train_world_model

    try:
        cfg = get_config(config, overrides or (), kind="wm")
        if not dataset:
            raise DatasetError("no dataset: pass --dataset (an export folder, a Hub repo id, or a store file)")
        _, report = train_world_model(cfg, open_dataset(dataset), out, latents or out / "latents", device)
    except (ConfigError, DatasetError, LatentCacheError, SourceError, ValueError) as exc:
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
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
        result = train_grpo(cfg, out, policy, world_model, dataset, latents, resume, tuple(overrides or ()))
    except (ConfigError, DatasetError, CheckpointError, LatentCacheError, WorldModelError, RewardError, SourceError) as exc:
        raise fail(str(exc)) from exc
    if result.metrics:
        last = result.metrics[-1]
        terms = ", ".join(f"{k.removeprefix('reward_')} {v:.4f}" for k, v in last.items() if k.startswith("reward_"))
        console.print(f"step {last['step']:.0f}: reward {terms}; kl {last['kl']:.5f}; checkpoint {result.checkpoint}")
