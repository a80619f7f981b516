"""`atom-annotate`: propose subtasks with a backend (`run`), score proposals against truth (`eval`),
fit a backend's settings to accepted episodes (`calibrate`), and the spend (`ledger`, `batch`).

Imports nothing heavy at module level (backends, models, HTTP clients load inside the commands),
so `--help` and a bad argument answer at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from atomvla.cli import (
    DEFAULT_STORE,
    App,
    JsonOpt,
    OverwriteOpt,
    StoreOpt,
    VerboseOpt,
    check_outputs,
    console,
    err_console,
    fail,
    setup_logging,
    write_json,
)

log = logging.getLogger("atomvla.annotate")

app = App(
    help="Propose subtask decompositions with a backend, and evaluate them against ground truth.",
    no_args_is_help=True,
)

BackendOpt = Annotated[
    str, typer.Option("--backend", help="Backend: heuristic, openai, uvd, hybrid, internvideo, learned "
                                        "(`atom-annotate settings` lists each one's settings).")
]
SettingsArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        metavar="KEY=VALUE",
        help="Backend settings as dotted key=value, e.g. `frames=8 model=gpt-4o-mini`, `ee_dims=0,1,2`, "
        "`boundaries_settings.window_s=0.4` (hybrid); over the profile's. `atom-annotate settings` lists them.",
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    Optional[str],
    typer.Option(help="Settings saved by `atom-annotate calibrate`, for `learned` its fine-tuned weights and exemplars "
                      "(default: the backend's defaults)."),
]
EpisodesOpt = Annotated[
    Optional[str], typer.Option(help="Episode ids, indices and ranges, e.g. `0-5,7` (default: all).")
]
ShardOpt = Annotated[
    Optional[str], typer.Option(help="Run shard i of N (`0/4`): machines split a dataset by a hash of each episode id.")
]
ApiKeyEnvOpt = Annotated[
    str, typer.Option(help="openai: environment variable that holds the API key (never pass a key as a flag).")
]
ToleranceFramesOpt = Annotated[int, typer.Option("--tolerance-frames", min=0, help="Boundary match tolerance, in frames.")]


@app.command()
def run(
    settings: SettingsArg = None,
    store: StoreOpt = DEFAULT_STORE,
    backend: BackendOpt = "heuristic",
    profile: ProfileOpt = None,
    episodes: EpisodesOpt = None,
    shard: ShardOpt = None,
    again: Annotated[bool, typer.Option(
        "--again", help="Propose again where this backend and settings already did (not over a person's work: "
                        "see --include-reviewed).",
    )] = False,
    include_reviewed: Annotated[bool, typer.Option(
        "--include-reviewed",
        help="Propose also for episodes that hold a person's work (saved, accepted, rejected, or someone's draft), "
             "which a run skips otherwise, --again or not. The person's revision stays in the history and the "
             "proposal becomes the latest, so exports of accepted episodes leave the episode out until it is "
             "accepted again. Where these settings proposed before the person's review, add --again.",
    )] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes in flight at once.")] = 8,
    max_cost: Annotated[
        Optional[float], typer.Option(min=0, help="Stop starting episodes before the spend (US$) would pass this.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the token and dollar estimate and stop.")] = False,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=0.01, help="Seconds before a model request is abandoned and retried.")
    ] = 120.0,
    attempts: Annotated[int, typer.Option(min=1, help="Tries per model request (429, 5xx and timeouts are retried).")] = 6,
    verbose: VerboseOpt = False,
) -> None:
    """Propose subtasks for the store's episodes; each becomes a revision by the backend.

    A resumable job: a re-run skips what this backend and settings already proposed, and a model
    backend reuses every answer it was already given (response cache next to the store). Episodes
    that hold a person's work are skipped and listed with who reviewed them (see
    --include-reviewed). Episodes that fail are listed with the reason; the exit status is then 1.
    A backend that cannot serve the selected episodes at all (a learned profile of another robot)
    stops before any work (exit status 2).
    """
    setup_logging(verbose)
    from atomvla.annotate.client.retry import RetryPolicy
    from atomvla.annotate.jobs.engine import build_engine
    from atomvla.annotate.jobs.estimate import estimate
    from atomvla.annotate.jobs.plan import choose, plan
    from atomvla.annotate.jobs.progress import (
        estimate_table, failures_table, reviewed_table, run_with_progress, summary_table,
    )
    from atomvla.curate.store import open_store

    db = open_store(store)
    retry = RetryPolicy(attempts=attempts, timeout_s=timeout_s)
    engine = build_engine(db, backend, profile, settings or (), api_key_env=api_key_env, retry=retry, prepare=not dry_run)
    todo = plan(db, engine, choose(db, episodes, shard), again, include_reviewed)
    if todo.queued:
        # Answered (or about to be) at Batch price: `atom-annotate batch collect` proposes them.
        err_console.print(f"{todo.queued} episodes are waiting in a Batch API batch; leaving them to `batch collect`")
    if dry_run:
        title = (f"atom-annotate run --dry-run: {backend} ({len(todo.done)} already done, "
                 f"{len(todo.reviewed)} reviewed by a person)")
        console.print(estimate_table(title, estimate(engine, todo.todo), getattr(engine, "model", backend)))
        if todo.reviewed:
            console.print(reviewed_table(todo.reviewed))
        return
    # --max-cost reserves an estimate per episode in flight (the run's dearest episode once dearer).
    reserve = estimate(engine, todo.todo).usd_per_episode if max_cost is not None else 0.0
    try:
        result = run_with_progress(err_console, backend, db, engine, todo.chosen, split=todo, concurrency=concurrency,
                                   max_cost=max_cost, estimate_usd=reserve)
    except KeyboardInterrupt:
        # Everything answered is stored or cached: the same command resumes without paying twice.
        raise fail("interrupted; run the same command again to resume", code=130) from None
    console.print(summary_table(f"atom-annotate run: {backend} (job {result.job_id})", result))
    if result.reviewed:
        console.print(reviewed_table(result.reviewed))
    if result.stopped:
        err_console.print(f"[yellow]{result.stopped}; {len(result.not_started)} episodes left for a later run[/]")
    if result.failed:
        console.print(failures_table(result.failed))
    if result.failed or result.not_started:
        raise typer.Exit(1)


@app.command()
def settings(
    backend: Annotated[Optional[str], typer.Option(help="Only this backend's settings.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Every backend's settings: the KEY=VALUE that `run`, `batch submit` and `calibrate` take,
    with their type, default and meaning ([fitted] marks what `calibrate` searches)."""
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.annotate.backends import BACKENDS, get_backend
    from atomvla.annotate.overrides import settings_rows

    for name in [backend] if backend else sorted(BACKENDS):
        config = get_backend(name).Config
        searched = getattr(config, "search_space", {})
        table = Table(title=f"{name} settings", title_justify="left")
        for col in ("setting", "type", "default", "meaning"):
            table.add_column(col)
        for key, kind, default, meaning in settings_rows(config):
            fitted = f" [fitted: {', '.join(map(str, searched[key]))}]" if key in searched else ""
            table.add_row(key, kind, default, meaning + fitted)
        console.print(table)


batch_app = App(
    help="The OpenAI Batch API: the same requests as `run --backend openai`, at half price, answered within 24 h.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")


def _clients(api_key_env: str):
    """`client_for(batch)`: one client per server the store's batches went to (key from the environment)."""
    from atomvla.annotate.jobs.batch import backend_of, sync_client

    clients: dict = {}

    def client_for(batch: dict):
        engine = backend_of(batch, api_key_env, None)
        url = engine.config.base_url
        if url not in clients:
            clients[url] = sync_client(engine)
        return clients[url]

    return client_for


@batch_app.command("submit")
def batch_submit(
    settings: SettingsArg = None,
    store: StoreOpt = DEFAULT_STORE,
    profile: ProfileOpt = None,
    episodes: EpisodesOpt = None,
    shard: ShardOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    verbose: VerboseOpt = False,
) -> None:
    """Upload the first request of every episode that has no answer yet, as one or more batches
    (the openai backend, with the same KEY=VALUE settings as `run`); episodes that hold a person's
    work are left out, as `run` leaves them."""
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.annotate import store_tables
    from atomvla.annotate.jobs.batch import submit, sync_client
    from atomvla.annotate.jobs.engine import build_engine
    from atomvla.annotate.jobs.plan import choose
    from atomvla.annotate.jobs.runner import job_id
    from atomvla.curate.store import open_store

    db = open_store(store)
    engine = build_engine(db, "openai", profile, settings or (), api_key_env=api_key_env)
    ids = submit(db, engine, choose(db, episodes, shard), sync_client(engine))
    if not ids:
        console.print("nothing to submit: every selected episode is proposed, answered or already in a batch")
        return
    table = Table(title=f"atom-annotate batch submit (job {job_id(engine)})")
    table.add_column("batch")
    table.add_column("episodes", justify="right")
    for b in store_tables.batches(db):
        if b["batch_id"] in ids:
            table.add_row(b["batch_id"], str(len(b["request"]["episodes"])))
    console.print(table)


@batch_app.command("status")
def batch_status(store: StoreOpt = DEFAULT_STORE, api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY", verbose: VerboseOpt = False) -> None:
    """The state of every batch in the store, refreshed from the API."""
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.annotate.jobs.batch import refresh
    from atomvla.curate.store import open_store

    states = refresh(open_store(store), _clients(api_key_env))
    table = Table(title="atom-annotate batch status")
    for col in ("batch", "state", "requests", "completed", "failed"):
        table.add_column(col, justify="left" if col in ("batch", "state") else "right")
    for s in states:
        table.add_row(s.batch_id, s.state, str(s.total), str(s.completed), str(s.failed))
    console.print(table)


@batch_app.command("collect")
def batch_collect(
    store: StoreOpt = DEFAULT_STORE,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes in flight (repairs and refinements go live).")] = 8,
    verbose: VerboseOpt = False,
) -> None:
    """Cache the answers of finished batches (ledger at Batch prices) and propose those episodes
    (not those a person reviewed meanwhile: listed, their answers stay cached).

    A bad answer's repair request, and coarse-to-fine refinements, go to the live API.
    """
    setup_logging(verbose)
    from atomvla.annotate.backends.openai_backend import OpenAIBackend, OpenAIConfig
    from atomvla.annotate.client.cache import ResponseCache
    from atomvla.annotate.client.pricing import Usage
    from atomvla.annotate.jobs.batch import collect
    from atomvla.annotate.jobs.progress import failures_table, reviewed_table, run_with_progress, summary_table
    from atomvla.curate.store import open_store

    db = open_store(store)
    cache = ResponseCache.beside(store)
    got = collect(db, cache, _clients(api_key_env))
    failed = list(got.errors)
    for job, answered in got.answered.items():
        engine = OpenAIBackend(OpenAIConfig.model_validate(got.settings[job]), api_key_env=api_key_env, cache=cache)
        metas = [db.episode(e) for e in answered]
        result = run_with_progress(err_console, "collect", db, engine, metas, concurrency=concurrency)
        # The run read the batch's answers from the cache (free); collect bought them.
        result.usage = got.spent.get(job, Usage()) + result.usage
        console.print(summary_table(f"atom-annotate batch collect (job {job})", result))
        if result.reviewed:
            console.print(reviewed_table(result.reviewed))
        failed += result.failed
    if got.waiting:
        err_console.print(f"still running: {', '.join(got.waiting)} (collect again later)")
    elif not got.answered and not failed:
        console.print("nothing to collect: no batch is waiting (`atom-annotate batch status` lists them)")
    if failed:
        console.print(failures_table(failed))
        raise typer.Exit(1)


@app.command()
def ledger(
    store: StoreOpt = DEFAULT_STORE,
    job: Annotated[
        Optional[str], typer.Option(help="List each episode of this job (with --by model: its totals per model).")
    ] = None,
    by: Annotated[
        Literal["job", "model"],
        typer.Option(help="Totals per job, or per model (what each model cost; over --job's rows when given)."),
    ] = "job",
    verbose: VerboseOpt = False,
) -> None:
    """Tokens and dollars spent by model backends: totals per job or per model, or each episode of one job."""
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.annotate import store_tables
    from atomvla.curate.store import open_store

    db = open_store(store)
    rows = store_tables.ledger_rows(db, job) if job is not None else []
    if job is not None and not rows:
        raise fail(f"{store}: no ledger rows for job {job!r} (see `atom-annotate ledger` for the jobs)")
    if by == "model":
        table = Table(title="atom-annotate ledger per model" + (f": job {job}" if job is not None else ""))
        for col in ("model", "jobs", "episodes", "input tokens", "output tokens", "$", "cached answers"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in store_tables.ledger_by_model(db, job):
            table.add_row(r["model"], str(r["jobs"]), str(r["episodes"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                          f"{r['cost_usd']:.4f}", str(r["cached"]))
        console.print(table)
        return
    if job is None:
        table = Table(title="atom-annotate ledger")
        for col in ("job", "model", "episodes", "input tokens", "output tokens", "$", "cached answers"):
            table.add_column(col, justify="left" if col in ("job", "model") else "right")
        for r in store_tables.ledger_by_job(db):
            table.add_row(r["job_id"], r["models"], str(r["episodes"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                          f"{r['cost_usd']:.4f}", str(r["cached"]))
        console.print(table)
        return
    table = Table(title=f"atom-annotate ledger: job {job}")
    for col in ("episode", "model", "input tokens", "output tokens", "$", "cached", "at"):
        table.add_column(col, justify="left" if col in ("episode", "model", "at") else "right")
    for r in rows:
        table.add_row(r["episode_id"], r["model"], f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", f"{r['cost_usd']:.4f}",
                      str(r["cached"]), r["created_at"][:19])
    console.print(table)


@app.command("eval")
def eval_(
    truth: Annotated[Path, typer.Option(help="Ground-truth JSON Lines (interchange shape).")],
    store: StoreOpt = DEFAULT_STORE,
    backend: Annotated[
        Optional[str], typer.Option(help="Author of the proposals to score (default: every backend with proposals).")
    ] = None,
    tolerance_frames: ToleranceFramesOpt = 3,
    dataset_name: Annotated[
        Optional[str],
        typer.Option("--dataset-name", help="Dataset (as `atom-curate ls` names it) the truth's episode indices refer to "
                                            "(stores with several)."),
    ] = None,
    json_out: JsonOpt = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write one timeline PNG per episode under this folder.")] = None,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score each episode's latest proposal against the truth: boundaries, counts, segments, objects."""
    setup_logging(verbose)
    check_outputs(overwrite, files=(json_out,), folders=(plots,))
    from contextlib import nullcontext

    from atomvla.output import new_folder
    from atomvla.annotate.backends import BACKENDS
    from atomvla.annotate.evaluation.plots import plot_episode
    from atomvla.annotate.evaluation.report import report, score_episode, table
    from atomvla.annotate.evaluation.truth import load_truth
    from atomvla.curate.episode import Episode
    from atomvla.curate.store import open_store
    from atomvla.schemas import Status

    db = open_store(store)
    truths = load_truth(truth, db.episodes(), dataset_name)
    if backend is not None:
        by_author = {backend: db.latest_all(author=backend)}
        if not by_author[backend]:
            raise fail(f"{store}: no revisions by {backend!r} (registered backends: {', '.join(sorted(BACKENDS))})")
    else:
        by_author = {name: latest for name in sorted(BACKENDS) if (latest := db.latest_all(author=name))}
        if not by_author:
            raise fail(f"{store}: no proposals from any backend ({', '.join(sorted(BACKENDS))}); run `atom-annotate run` first")

    reports = {}
    with new_folder(plots, overwrite) if plots is not None else nullcontext() as plot_dir:
        for author, proposals in by_author.items():
            scores = []
            for t in truths:
                pred = proposals.get(t.meta.episode_id)
                usable = pred is not None and pred.status is not Status.failed
                scores.append(score_episode(
                    t.meta.episode_id, t.meta.task, pred.subtasks if usable else None, t.record.subtasks, tolerance_frames
                ))
                if plot_dir is not None:
                    plot_episode(scores[-1], Episode(t.meta), plot_dir / author, author)
            reports[author] = report(scores, tolerance_frames)
            console.print(table(f"{author} vs {truth.name} ({len(truths)} episodes)", reports[author]))
    if plots is not None:
        log.info("plots written under %s", plots)
    if json_out is not None:
        write_json(json_out, reports, overwrite)
        log.info("report written to %s", json_out)


@app.command(
    help="Fit a backend's settings to the episodes whose latest revision by AUTHOR is `accepted` (3-5 are enough) "
    "and save them as a named profile; `atom-annotate run --profile NAME` then uses them (a new settings hash, so "
    "episodes are proposed again). Reports boundary F1 before, with leave-one-out (each example scored with settings "
    "fitted on the others) and after. The settings searched (conventions a team may differ on) are marked [fitted] "
    "in `atom-annotate settings`. `--backend learned` searches no settings: it fine-tunes its network on the accepted "
    "episodes (leave-one-out becomes 5-fold past 5 examples), saves the weights in the profile with up to 8 of those "
    "episodes (each at most 60 s) as exemplars that new episodes are aligned to, and reports whether decoding keeps "
    "the heuristic's and the exemplars' priors."
)
def calibrate(
    author: Annotated[str, typer.Option(help="Annotator whose accepted revisions are the examples.")],
    profile: Annotated[str, typer.Option(help="Profile name to save the settings under (replaces one of that name).")],
    store: StoreOpt = DEFAULT_STORE,
    backend: BackendOpt = "heuristic",
    tolerance_frames: ToleranceFramesOpt = 5,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    from rich.progress import Progress
    from rich.table import Table

    from atomvla.annotate.backends import get_backend
    from atomvla.annotate.calibrate import CalibrationError, accepted_examples, calibrate_profile, n_steps
    from atomvla.annotate.profiles import save_profile
    from atomvla.curate.store import open_store

    cls = get_backend(backend)
    db = open_store(store)
    examples = accepted_examples(db, author)
    try:
        with Progress(console=err_console, transient=True) as progress:
            bar = progress.add_task(f"calibrating {backend}", total=n_steps(cls, len(examples)))
            engine, rep, weights = calibrate_profile(cls, examples, tolerance_frames, on_step=lambda: progress.advance(bar))
    except CalibrationError as exc:
        raise fail(f"{store}: author {author!r}: {exc}") from exc
    save_profile(db, engine, profile, rep.as_dict(), author, weights=weights)

    summary = Table(title=f"calibrate {backend} on {rep.n_examples} episodes accepted by {author} (±{tolerance_frames} frames)")
    for col in ("F1 before", "F1 leave-one-out", "F1 fitted", "settings changed", "profile (settings hash)"):
        summary.add_column(col)
    changed = ", ".join(f"{k}={v}" for k, v in rep.changed.items()) or "none"
    summary.add_row(f"{rep.f1_before:.2f}", f"{rep.f1_loo:.2f}", f"{rep.f1_fit:.2f}", changed, f"{profile} ({engine.settings_hash})")
    console.print(summary)
