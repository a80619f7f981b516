"""`atom-review`: the browser review app over the store."""

from __future__ import annotations

import logging
import os
from typing import Annotated, Optional

import typer

from atomvla.cli import App, DEFAULT_STORE, StoreOpt, VerboseOpt, err_console, setup_logging
from atomvla.curate.store import open_store
from atomvla.ui.auth import AuthError, check_exposure, parse_auth

log = logging.getLogger(__name__)

app = App(add_completion=False)


@app.command()
def main(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on; any but 127.0.0.1/localhost needs --auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    auth: Annotated[
        Optional[str],
        typer.Option(help="Logins: a file of `user:password` lines, or one `user:password`. "
                          "The logged-in name is the author of that annotator's revisions."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Review and correct subtask boundaries in a browser: a queue of episodes, a frame viewer,
    a timeline of the subtasks, keyboard editing, autosaved drafts and revision history."""
    setup_logging(verbose)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    try:
        logins = parse_auth(auth) if auth else None
        check_exposure(host, logins)
    except AuthError as exc:
        # One line whatever the terminal width: scripts and logs grep for it.
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from exc
    db = open_store(store)
    # Gradio looks up outside hosts for analytics unless told not to; the app needs none of them.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from atomvla.ui.app import build

    demo, assets = build(db)
    log.info("serving %s on http://%s:%d%s", store, host, port, " (login required)" if logins else "")
    demo.launch(server_name=host, server_port=port, auth=logins, auth_message="atom-review: log in to annotate",
                show_error=True, quiet=True, **assets)
