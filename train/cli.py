"""`atom-train`: SFT, world model, GRPO and evaluation on a curated dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.curate.cli_support import console, fail, setup_logging

app = typer.Typer(
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

    for (k, name), _ in sorted(CONFIGS.items()):
        if kind is None or k == kind:
            console.print(f"{k:5s} {name}")


@app.command("sft")
def sft(
    overrides: OverridesArg = None,
    config: ConfigOpt = "tiny-cpu",
    dataset: DatasetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints step-N/, TensorBoard logs tb/.")] = Path(
        "runs/sft"
    ),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    add_skill: Annotated[
        Optional[str], typer.Option("--add-skill", help="Add an expert for this skill to a MoE policy (needs --from).")
    ] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="Checkpoint to start from (with --add-skill).")] = None,
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
    except (ConfigError, DatasetError, CheckpointError) as exc:
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
    except (DatasetError, CheckpointError) as exc:
        raise fail(str(exc)) from exc
    print_report(report, console)
