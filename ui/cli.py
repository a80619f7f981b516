"""`atom-review`: the browser review app over the store (arrives with the review issue)."""

import typer

app = typer.Typer(
    help="Review and correct subtask boundaries in a browser (Gradio app over the store). Not built yet.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """Review subtask decompositions in the browser."""
