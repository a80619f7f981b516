"""`atom-annotate`: propose subtasks with a backend (`run`) and score proposals against truth (`eval`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from atomvla.annotate.backends import BACKENDS, get_backend
from atomvla.annotate.evaluation.plots import plot_episode
from atomvla.annotate.evaluation.report import report, score_episode, table
from atomvla.annotate.evaluation.truth import TruthError, load_truth
from atomvla.annotate.runner import run_backend
from atomvla.annotate.selection import SelectionError, select
from atomvla.curate.cli_support import (
    DEFAULT_STORE,
    StoreOpt,
    VerboseOpt,
    console,
    err_console,
    fail,
    open_store,
    setup_logging,
)
from atomvla.curate.episode import Episode
from atomvla.schemas import Status

log = logging.getLogger("atomvla.annotate")

app = typer.Typer(
    help="Propose subtask decompositions with a backend, and evaluate them against ground truth.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise fail(f"{option} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


@app.command()
def run(
    store: StoreOpt = DEFAULT_STORE,
    backend: Annotated[str, typer.Option(help=f"Backend: {', '.join(sorted(BACKENDS))}.")] = "heuristic",
    episodes: Annotated[
        Optional[str], typer.Option(help="Episode ids, indices and ranges, e.g. `0-5,7` (default: all).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Propose again where this backend and settings already did.")] = False,
    gripper_dim: Annotated[
        Optional[int], typer.Option(help="heuristic: gripper dim of observation.state (instead of names).")
    ] = None,
    ee_dims: Annotated[
        Optional[str], typer.Option(help="heuristic: end-effector x,y,z dims of observation.state, e.g. 0,1,2.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Propose subtasks for the store's episodes; each becomes a `proposed` revision by the backend.

    Episodes the backend cannot handle are reported and skipped; the exit status is then 1.
    """
    setup_logging(verbose)
    try:
        cls = get_backend(backend)
    except KeyError as exc:
        raise fail(exc.args[0]) from exc
    overrides = {"gripper_dim": gripper_dim, "ee_dims": _ints(ee_dims, "--ee-dims") if ee_dims else None}
    try:
        config = cls.Config(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise fail(f"bad settings for the {backend} backend: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    engine = cls(config)

    db = open_store(store)
    all_episodes = db.episodes()
    if not all_episodes:
        raise fail(f"{store}: no episodes (import a source with `atom-curate import SOURCE --store {store}`)")
    try:
        chosen = select(all_episodes, episodes)
    except SelectionError as exc:
        raise fail(str(exc)) from exc

    with Progress(
        TextColumn(f"[bold]{backend}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as progress:
        bar = progress.add_task(backend, total=len(chosen))
        result = run_backend(db, engine, chosen, overwrite, on_episode=lambda _id, _outcome: progress.advance(bar))

    summary = Table(title=f"atom-annotate run: {backend} (settings {engine.settings_hash})")
    for col in ("proposed", "skipped (already proposed)", "failed"):
        summary.add_column(col, justify="right")
    summary.add_row(str(len(result.proposed)), str(len(result.skipped)), str(len(result.failed)))
    console.print(summary)
    if result.failed:
        failures = Table(title="failed episodes", show_lines=True)
        failures.add_column("episode")
        failures.add_column("why")
        for episode_id, why in result.failed:
            failures.add_row(episode_id, why)
        console.print(failures)
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    truth: Annotated[Path, typer.Option(help="Ground-truth JSON Lines (interchange shape).")],
    store: StoreOpt = DEFAULT_STORE,
    backend: Annotated[
        Optional[str], typer.Option(help="Author of the proposals to score (default: every backend with proposals).")
    ] = None,
    tolerance: Annotated[int, typer.Option(min=0, help="Boundary match tolerance, in frames.")] = 3,
    dataset: Annotated[
        Optional[str], typer.Option(help="Dataset the truth's episode indices refer to (stores with several).")
    ] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON here.")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write one timeline PNG per episode under this folder.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Score each episode's latest proposal against the truth: boundaries, counts, segments, objects."""
    setup_logging(verbose)
    db = open_store(store)
    try:
        truths = load_truth(truth, db.episodes(), dataset)
    except TruthError as exc:
        raise fail(str(exc)) from exc

    if backend is not None:
        by_author = {backend: db.latest_all(author=backend)}
        if not by_author[backend]:
            raise fail(f"{store}: no revisions by {backend!r} (registered backends: {', '.join(sorted(BACKENDS))})")
    else:
        by_author = {name: latest for name in sorted(BACKENDS) if (latest := db.latest_all(author=name))}
        if not by_author:
            raise fail(f"{store}: no proposals from any backend ({', '.join(sorted(BACKENDS))}); run `atom-annotate run` first")

    reports = {}
    for author, proposals in by_author.items():
        scores = []
        for t in truths:
            pred = proposals.get(t.meta.episode_id)
            usable = pred is not None and pred.status is not Status.failed
            scores.append(
                score_episode(t.meta.episode_id, t.meta.task, pred.subtasks if usable else None, t.record.subtasks, tolerance)
            )
            if plots is not None:
                plot_episode(scores[-1], Episode(t.meta), plots / author, author)
        reports[author] = report(scores, tolerance)
        console.print(table(f"{author} vs {truth.name} ({len(truths)} episodes)", reports[author]))
    if plots is not None:
        log.info("plots written under %s", plots)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(reports, indent=2))
        log.info("report written to %s", json_out)
