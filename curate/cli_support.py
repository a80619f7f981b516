"""What every console script shares: logging through rich, the `--store` option, exit codes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from atomvla.curate.errors import StoreError
from atomvla.curate.store import Store

# Results (tables, summaries) go to stdout, so they can be piped; logs, progress and errors to stderr.
# Piped output is not squeezed into 80 columns: tables of long task strings stay readable.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

DEFAULT_STORE = Path("atomvla.sqlite")

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="ATOMVLA_STORE",
        help="SQLite store of the project (env ATOMVLA_STORE).",
        show_default=True,
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=True)],
        force=True,
    )


def open_store(path: Path, create: bool = False) -> Store:
    """The store at `path` for a command; a missing or unusable one is a clean error, not a traceback."""
    if not create and not path.exists():
        raise fail(f"{path}: no such store; create one with `atom-curate import SOURCE --store {path}`")
    try:
        return Store(path, create=create)
    except StoreError as exc:
        raise fail(str(exc)) from exc


def fail(message: str, code: int = 2) -> typer.Exit:
    """Report an error the user can act on (no traceback) and return the Exit to raise."""
    # One line however narrow the terminal (long file paths would otherwise wrap), so it greps.
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
