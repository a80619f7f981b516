"""`atom-curate labelstudio export|import`: the round trip with a Label Studio server.

label_studio_sdk (half a second to import) loads inside the commands only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.cli import (
    DEFAULT_STORE,
    App,
    DatasetNameOpt,
    StatusOpt,
    StoreOpt,
    VerboseOpt,
    console,
    fail,
    parse_status,
    progress_bar,
    setup_logging,
)

app = App(
    help="Round trip with Label Studio: episodes out as video tasks with the current subtasks as predictions, "
    "annotations back as revisions. The access token comes from LABEL_STUDIO_API_KEY.",
    no_args_is_help=True,
)

def _setup_logging(verbose: bool) -> None:
    setup_logging(verbose)
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)  # one line per request


UrlOpt = Annotated[str, typer.Option("--url", help="Label Studio server, e.g. http://127.0.0.1:8080.")]
ProjectOpt = Annotated[str, typer.Option("--project", help="Project title.")]


@app.command("export")
def export(
    url: UrlOpt,
    project: ProjectOpt,
    store: StoreOpt = DEFAULT_STORE,
    media_root: Annotated[
        Optional[Path],
        typer.Option("--media-root", envvar="LOCAL_FILES_DOCUMENT_ROOT",
                     help="The server's LOCAL_FILES_DOCUMENT_ROOT: episode clips are written under it and served from it."),
    ] = None,
    dataset_name: DatasetNameOpt = None,
    status: StatusOpt = None,
    camera: Annotated[Optional[str], typer.Option(help="Camera to show (default: each episode's first).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Create project PROJECT with one task per episode, its latest decomposition as a prediction.

    Each episode's clip is cut from the source video by copying packets (encoded once only when it
    cannot be cut, e.g. frames stored in HDF5) into MEDIA_ROOT/atomvla/PROJECT/.
    """
    _setup_logging(verbose)
    from atomvla.curate.dataset_names import check_dataset_name
    from atomvla.curate.errors import SourceError
    from atomvla.curate.labelstudio.roundtrip import export_project
    from atomvla.curate.labelstudio.server import LabelStudioError, Server
    from atomvla.curate.store import open_store

    if media_root is None:
        raise fail("--media-root (or LOCAL_FILES_DOCUMENT_ROOT) is needed: the folder the server serves local files from")
    wanted = parse_status(status)
    db = open_store(store)
    check_dataset_name(db, dataset_name)
    metas = db.episodes(dataset_name)
    if wanted is not None:
        latest = db.latest_all(status=wanted)
        metas = [m for m in metas if m.episode_id in latest]
    try:
        server = Server(url)
        with progress_bar("[bold]clips[/]") as bar:
            task = bar.add_task("clips", total=len(metas))
            report = export_project(db, server, project, media_root, metas, camera,
                                    progress=lambda meta: bar.advance(task))
    except (LabelStudioError, SourceError) as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"project {project!r} (id {report.project_id}) at {server.url}: {report.tasks} task(s), "
        f"{report.predictions} with a prediction; clips: {report.copied} copied, {report.encoded} encoded, "
        f"{report.reused} reused"
    )


@app.command("import")
def import_(
    url: UrlOpt,
    project: ProjectOpt,
    store: StoreOpt = DEFAULT_STORE,
    verbose: VerboseOpt = False,
) -> None:
    """Store each submitted annotation of PROJECT as an accepted revision authored by its Label Studio user.

    Annotations already imported and not edited since are skipped; unreadable ones are listed
    (exit status 1) and the others stored in one transaction.
    """
    _setup_logging(verbose)
    from atomvla.curate.labelstudio.roundtrip import import_annotations
    from atomvla.curate.labelstudio.server import LabelStudioError, Server
    from atomvla.curate.store import open_store

    db = open_store(store)
    try:
        report = import_annotations(db, Server(url), project)
    except LabelStudioError as exc:
        raise fail(str(exc)) from exc
    console.print(f"stored {len(report.stored)} revision(s) from project {project!r}; {report.unchanged} unchanged")
    if report.problems:
        console.print(f"[bold yellow]{len(report.problems)} annotation(s) skipped:[/]")
        for p in report.problems:
            console.print(f"  - {p}", highlight=False)
        raise typer.Exit(1)
