"""What the four console scripts share: the console, logging, `fail`, the common options, and
`App`, a `typer.Typer` whose commands turn any `UserError` into one line on stderr (exit 2).

Kept light on purpose: it imports typer and rich only, so every `--help` starts fast.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from atomvla.errors import UserError

# Results (tables, summaries) go to stdout, so they can be piped; logs, progress and errors to stderr.
# Piped output is not squeezed into 80 columns: tables of long task strings, and log lines in a
# nohup or CI log, stay readable (an 80-column log wrapped mid-figure and padded every line).
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DEFAULT_STORE = Path("atomvla.sqlite")

StoreOpt = Annotated[
    Path,
    typer.Option("--store", envvar="ATOMVLA_STORE", help="SQLite store of the project (env ATOMVLA_STORE).", show_default=True),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the outputs (--out, --json, --plots) where they exist (refused otherwise).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON to this path ('-' for stdout).")]
# The values of `atomvla.schemas.Status`, written out so `--help` need not import the schemas
# (pydantic); tests/core/test_cli_startup.py checks they agree.
STATUSES = ("proposed", "accepted", "rejected", "needs_review", "failed")
StatusOpt = Annotated[
    Optional[str],
    typer.Option("--status", help=f"Only episodes whose latest revision has this status: {', '.join(STATUSES)}."),
]
DatasetNameOpt = Annotated[
    Optional[str],
    typer.Option("--dataset-name", help="Only episodes of this dataset (the name `atom-curate ls` shows before each id)."),
]
ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Named config, e.g. tiny-cpu (`atom-train configs` lists them).")]
OverridesArg = Annotated[
    Optional[list[str]],
    typer.Argument(metavar="KEY=VALUE", help="Dotted `key=value` overrides of the config's fields, e.g. `train.lr=3e-4`.",
                   show_default=False),
]


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
        force=True,
    )


def check_outputs(overwrite: bool, files: tuple[Path | None, ...] = (), folders: tuple[Path | None, ...] = ()) -> None:
    """Before any work: refuse each given OUT that exists without `--overwrite` ('-' is stdout)."""
    from atomvla.output import check_output

    for paths, folder in ((files, False), (folders, True)):
        for path in paths:
            if path is not None and str(path) != "-":
                check_output(path, overwrite, folder)


def write_json(path: Path, data: Any, overwrite: bool = False) -> None:
    """What `--json PATH` asks for: `data` as indented JSON at `path` (written whole, never over an
    existing file without `overwrite`), or on stdout for '-'."""
    import json

    from atomvla.output import write_text

    text = json.dumps(data, indent=2, default=str) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    write_text(path, text, overwrite)


def parse_status(text: str | None) -> Any:
    """`--status` as an `atomvla.schemas.Status` (None stays None); another word is a UserError."""
    if text is None:
        return None
    from atomvla.schemas import Status

    try:
        return Status(text)
    except ValueError:
        raise UserError(f"--status {text!r}: choose one of {', '.join(STATUSES)}") from None


def progress_bar(label: str) -> Any:
    """A transient `rich.progress.Progress` on stderr: spinner, `label` (markup; `{task.description}`
    reads the task's), bar, done/total and elapsed time. rich.progress loads only when a bar is shown."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Report an error the user can act on (no traceback) and return the Exit to raise."""
    # One line however narrow the terminal (long file paths would otherwise wrap), so it greps.
    # The message is text, not markup: `observation.state[x,y]` in a robot layout is no style tag.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _user_errors_fail(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)  # typer reads the signature and annotations through __wrapped__
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc)) from exc

    return run


class App(typer.Typer):
    """A Typer app whose commands and callbacks report `UserError` as one line, exit 2."""

    def __init__(self, **kwargs: Any):
        # A bug's traceback stays plain: typer's pretty one prints local variables (API keys among them).
        kwargs.setdefault("pretty_exceptions_enable", False)
        # Plain click help: typer's rich help imports rich.markdown and friends, which doubles the
        # time `--help` and a bad argument take (benchmarks/cli_startup.py).
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(*args, **kwargs)
        return lambda fn: (register(_user_errors_fail(fn)), fn)[1]

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().callback(*args, **kwargs)
        return lambda fn: (register(_user_errors_fail(fn)), fn)[1]
