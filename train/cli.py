"""`atom-train`: SFT, world model, GRPO and evaluation on a curated dataset (arrives with the training issues)."""

import typer

app = typer.Typer(
    help="Train on a curated dataset: sft | wm | grpo | eval. Not built yet.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Train policies and world models on curated atomic-subtask data."""
