"""`atom-review`: the browser review app over the store."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.cli import App, DEFAULT_STORE, StoreOpt, VerboseOpt, console, fail, setup_logging

log = logging.getLogger(__name__)

app = App(add_completion=False)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Address to listen on; any but 127.0.0.1/localhost needs --auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    auth: Annotated[
        Optional[str],
        typer.Option(help="Logins file written by `atom-review passwd FILE USER` (salted hashes and roles). "
                          "The logged-in name is the author of that login's revisions."),
    ] = None,
    learn: Annotated[
        bool,
        typer.Option("--learn/--no-learn",
                     help="After each accept, fit a backend to that dataset's accepted episodes in the background "
                          "and propose its untouched episodes again."),
    ] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Review and correct subtask boundaries in a browser: a queue of episodes, a frame viewer,
    a timeline of the subtasks, keyboard editing, autosaved drafts and revision history.

    With no command, serves the app; `passwd` adds a login to a logins file.
    """
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose)
    # Here, not at the top: the store and auth import the schemas, gradio the rest; --help needs none.
    from atomvla.curate.store import open_store
    from atomvla.ui.auth import AuthError, ClientAddress, LoginGuard, check_exposure, parse_auth

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    try:
        logins = parse_auth(auth) if auth else None
        check_exposure(host, logins)
    except AuthError as exc:
        raise fail(str(exc)) from exc
    db = open_store(store)
    _check_port(host, port)
    # Gradio looks up outside hosts for analytics unless told not to; the app needs none of them.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from atomvla.ui.app import build

    demo, assets = build(db, learn=learn, roles=logins.roles if logins else None)
    log.info("serving %s on http://%s:%d%s", store, host, port, " (login required)" if logins else "")
    from starlette.middleware import Middleware

    demo.launch(server_name=host, server_port=port, auth=LoginGuard(logins).check if logins else None,
                auth_message="atom-review: log in to annotate", show_error=True, quiet=True,
                app_kwargs={"middleware": [Middleware(ClientAddress)]}, **assets)


def _check_port(host: str, port: int) -> None:
    """Refuse a port that cannot be listened on before the app is built: Gradio's own refusal comes
    after the "serving" line, as a traceback that names its environment variable, not --port."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
            probe.bind(address)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); is another server using it? "
                   "choose another --port") from exc


@app.command()
def passwd(
    file: Annotated[Path, typer.Argument(help="Logins file for --auth (created if missing, mode 0600).")],
    user: Annotated[str, typer.Argument(help="Login name; the author of that login's revisions.")],
    role: Annotated[
        str, typer.Option(help="annotator: save and flag; reviewer: also accept and reject.")
    ] = "annotator",
    verbose: VerboseOpt = False,
) -> None:
    """Add USER to FILE, or set their password and role, storing a salted scrypt hash. The password
    is asked twice without echo, or read from the first line of stdin when it is not a terminal."""
    setup_logging(verbose)
    from atomvla.ui.auth import set_password

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {user}: ")
        if getpass.getpass("again: ") != password:
            raise fail("the passwords differ; nothing written")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    replaced = set_password(file, user, password, role)
    console.print(f"{'updated' if replaced else 'added'} {user} ({role}) in {file}")
