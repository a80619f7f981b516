"""`atom-annotate`: propose subtasks with a backend (`run`) and score proposals against truth (`eval`)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from atomvla.annotate import store_tables
from atomvla.annotate.backends import BACKENDS, Backend, get_backend
from atomvla.annotate.backends.base import SetupError
from atomvla.annotate.evaluation.plots import plot_episode
from atomvla.annotate.evaluation.report import report, score_episode, table
from atomvla.annotate.evaluation.truth import TruthError, load_truth
from atomvla.annotate.backends.openai_backend import MissingKeyError, OpenAIBackend, OpenAIConfig
from atomvla.annotate.jobs.batch import backend_of, collect, open_episodes, refresh, submit, sync_client
from atomvla.annotate.jobs.cache import ResponseCache
from atomvla.annotate.jobs.engine import SettingsError, build_engine
from atomvla.annotate.jobs.estimate import estimate
from atomvla.annotate.jobs.progress import estimate_table, failures_table, run_progress, summary_table
from atomvla.annotate.jobs.retry import RetryPolicy
from atomvla.annotate.profiles import ProfileError
from atomvla.annotate.runner import Shard, arun, job_id, pending
from atomvla.annotate.selection import SelectionError, select
from atomvla.cli import App, DEFAULT_STORE, StoreOpt, VerboseOpt, console, err_console, fail, setup_logging
from atomvla.curate.store import open_store
from atomvla.curate.episode import Episode
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta, Status

log = logging.getLogger("atomvla.annotate")

app = App(
    help="Propose subtask decompositions with a backend, and evaluate them against ground truth.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise fail(f"{option} {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


# Flags of the model backends; None = the profile's value, else the backend's default.
ProfileOpt = Annotated[
    Optional[str], typer.Option(help="Settings saved by `atom-annotate calibrate` (default: the backend's defaults).")
]
EpisodesOpt = Annotated[
    Optional[str], typer.Option(help="Episode ids, indices and ranges, e.g. `0-5,7` (default: all).")
]
ShardOpt = Annotated[
    Optional[str], typer.Option(help="Run shard i of N (`0/4`): machines split a dataset by a hash of each episode id.")
]
ModelOpt = Annotated[Optional[str], typer.Option(help="openai: model name (default gpt-4o).")]
BaseUrlOpt = Annotated[
    Optional[str], typer.Option(help="openai: an OpenAI-compatible server, e.g. http://gpu-host:8000/v1 (vLLM, SGLang).")
]
ApiKeyEnvOpt = Annotated[
    str, typer.Option(help="openai: environment variable that holds the API key (never pass a key as a flag).")
]
FramesOpt = Annotated[Optional[int], typer.Option(help="openai: frames spread uniformly over each episode (default 14).")]
DetailOpt = Annotated[Optional[str], typer.Option(help="openai: image detail low|high|auto (default low: 85 tokens a frame).")]
CoarseToFineOpt = Annotated[
    Optional[bool], typer.Option("--coarse-to-fine/--no-coarse-to-fine", help="openai: re-ask around each boundary with dense frames.")
]
_FLAGS = {
    "gripper_dim": "--gripper-dim", "ee_dims": "--ee-dims", "model": "--model", "base_url": "--base-url",
    "frames": "--frames", "detail": "--detail", "coarse_to_fine": "--coarse-to-fine",
    "encoder": "--encoder", "boundaries": "--boundaries", "language": "--language", "snap_s": "--snap-s",
}


def _engine(
    db: Store,
    backend: str,
    profile: Optional[str],
    overrides: dict,
    api_key_env: str,
    retry: RetryPolicy = RetryPolicy(),
    prepare: bool = True,
) -> Backend:
    """The configured backend; a missing API key or model is reported here, before any work."""
    try:
        engine = build_engine(db, backend, profile, overrides, flags=_FLAGS, api_key_env=api_key_env, retry=retry)
        if prepare:
            engine.prepare()
    except KeyError as exc:
        raise fail(exc.args[0]) from exc
    except (ProfileError, SettingsError, SetupError) as exc:
        raise fail(str(exc)) from exc
    return engine


def _chosen(db: Store, store: Path, episodes: Optional[str], shard: Optional[str]) -> list[EpisodeMeta]:
    """The episodes `--episodes` selects, within `--shard`."""
    all_episodes = db.episodes()
    if not all_episodes:
        raise fail(f"{store}: no episodes (import a source with `atom-curate import SOURCE --store {store}`)")
    try:
        chosen = select(all_episodes, episodes)
        part = Shard.parse(shard) if shard else None
    except (SelectionError, ValueError) as exc:
        raise fail(str(exc)) from exc
    return [m for m in chosen if m.episode_id in part] if part else chosen


@app.command()
def run(
    store: StoreOpt = DEFAULT_STORE,
    backend: Annotated[str, typer.Option(help=f"Backend: {', '.join(sorted(BACKENDS))}.")] = "heuristic",
    profile: ProfileOpt = None,
    episodes: EpisodesOpt = None,
    shard: ShardOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Propose again where this backend and settings already did.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes in flight at once.")] = 8,
    max_cost: Annotated[
        Optional[float], typer.Option(min=0, help="Stop starting episodes before the spend (US$) would pass this.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the token and dollar estimate and stop.")] = False,
    gripper_dim: Annotated[
        Optional[int], typer.Option(help="heuristic: gripper dim of observation.state (instead of names).")
    ] = None,
    ee_dims: Annotated[
        Optional[str], typer.Option(help="heuristic: end-effector x,y,z dims of observation.state, e.g. 0,1,2.")
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    frames: FramesOpt = None,
    detail: DetailOpt = None,
    coarse_to_fine: CoarseToFineOpt = None,
    encoder: Annotated[
        Optional[str], typer.Option(help="uvd: `pixels` (no weights, the default) or a transformers vision model id or folder.")
    ] = None,
    boundaries: Annotated[Optional[str], typer.Option(help="hybrid: backend whose boundaries are kept (default uvd).")] = None,
    language: Annotated[
        Optional[str], typer.Option(help="hybrid: backend whose instructions and skills are kept (default heuristic).")
    ] = None,
    snap_s: Annotated[
        Optional[float], typer.Option(min=0, help="hybrid: move boundaries to a kinematic event this close, seconds (0: off).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.01, help="Seconds before a model request is abandoned and retried.")] = 120.0,
    attempts: Annotated[int, typer.Option(min=1, help="Tries per model request (429, 5xx and timeouts are retried).")] = 6,
    verbose: VerboseOpt = False,
) -> None:
    """Propose subtasks for the store's episodes; each becomes a revision by the backend.

    A resumable job: a re-run skips what this backend and settings already proposed, and a model
    backend reuses every answer it was already given (response cache next to the store). Episodes
    that fail are listed with the reason; the exit status is then 1.
    """
    setup_logging(verbose)
    db = open_store(store)
    overrides = {
        "gripper_dim": gripper_dim, "ee_dims": _ints(ee_dims, "--ee-dims") if ee_dims else None, "model": model,
        "base_url": base_url, "frames": frames, "detail": detail, "coarse_to_fine": coarse_to_fine,
        "encoder": encoder, "boundaries": boundaries, "language": language, "snap_s": snap_s,
    }
    retry = RetryPolicy(attempts=attempts, timeout_s=timeout)
    engine = _engine(db, backend, profile, overrides, api_key_env, retry, prepare=not dry_run)
    chosen = _chosen(db, store, episodes, shard)
    queued = open_episodes(db, job_id(engine))
    if queued & {m.episode_id for m in chosen}:
        # Answered (or about to be) at Batch price: `atom-annotate batch collect` proposes them.
        err_console.print(f"{len(queued)} episodes are waiting in a Batch API batch; leaving them to `batch collect`")
        chosen = [m for m in chosen if m.episode_id not in queued]
    todo, skipped = pending(db, engine, chosen, overwrite)
    if dry_run:
        title = f"atom-annotate run --dry-run: {backend} ({len(skipped)} already done)"
        console.print(estimate_table(title, estimate(engine, todo), getattr(engine, "model", backend)))
        return
    # --max-cost reserves an estimate per episode in flight (the run's dearest episode once dearer).
    reserve = estimate(engine, todo).usd_per_episode if max_cost is not None else 0.0

    try:
        with run_progress(err_console, backend, len(chosen)) as on_episode:
            result = asyncio.run(
                arun(db, engine, chosen, concurrency=concurrency, overwrite=overwrite, max_cost=max_cost,
                     estimate_usd=reserve, on_episode=on_episode)
            )
    except KeyboardInterrupt:
        # Everything answered is stored or cached: the same command resumes without paying twice.
        raise fail("interrupted; run the same command again to resume", code=130) from None
    console.print(summary_table(f"atom-annotate run: {backend} (job {result.job_id})", result))
    if result.stopped:
        err_console.print(f"[yellow]{result.stopped}; {len(result.not_started)} episodes left for a later run[/]")
    if result.failed:
        console.print(failures_table(result.failed))
    if result.failed or result.not_started:
        raise typer.Exit(1)


batch_app = App(
    help="The OpenAI Batch API: the same requests as `run --backend openai`, at half price, answered within 24 h.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")


def _clients(api_key_env: str):
    """`client_for(batch)`: one client per server the store's batches went to (key from the environment)."""
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
    store: StoreOpt = DEFAULT_STORE,
    profile: ProfileOpt = None,
    episodes: EpisodesOpt = None,
    shard: ShardOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    frames: FramesOpt = None,
    detail: DetailOpt = None,
    coarse_to_fine: CoarseToFineOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Upload the first request of every episode that has no answer yet, as one or more batches."""
    setup_logging(verbose)
    db = open_store(store)
    overrides = {"model": model, "base_url": base_url, "frames": frames, "detail": detail, "coarse_to_fine": coarse_to_fine}
    engine = _engine(db, "openai", profile, overrides, api_key_env)
    chosen = _chosen(db, store, episodes, shard)
    ids = submit(db, engine, chosen, sync_client(engine))
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
    db = open_store(store)
    try:
        states = refresh(db, _clients(api_key_env))
    except MissingKeyError as exc:
        raise fail(str(exc)) from exc
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
    """Cache the answers of finished batches (ledger at Batch prices) and propose those episodes.

    A bad answer's repair request, and coarse-to-fine refinements, go to the live API.
    """
    setup_logging(verbose)
    db = open_store(store)
    cache = ResponseCache.beside(store)
    try:
        got = collect(db, cache, _clients(api_key_env))
    except MissingKeyError as exc:
        raise fail(str(exc)) from exc
    failed = list(got.errors)
    for job, answered in got.answered.items():
        engine = OpenAIBackend(OpenAIConfig.model_validate(got.settings[job]), api_key_env=api_key_env, cache=cache)
        metas = [db.episode(e) for e in answered]
        with run_progress(err_console, "collect", len(metas)) as on_episode:
            result = asyncio.run(arun(db, engine, metas, concurrency=concurrency, on_episode=on_episode))
        console.print(summary_table(f"atom-annotate batch collect (job {job})", result))
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
    job: Annotated[Optional[str], typer.Option(help="List each episode of this job (default: totals per job).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Tokens and dollars spent by model backends: totals per job, or each episode of one job."""
    setup_logging(verbose)
    db = open_store(store)
    if job is None:
        table = Table(title="atom-annotate ledger")
        for col in ("job", "model", "episodes", "input tokens", "output tokens", "$", "cached answers"):
            table.add_column(col, justify="left" if col in ("job", "model") else "right")
        for r in store_tables.ledger_by_job(db):
            table.add_row(r["job_id"], r["models"], str(r["episodes"]), f"{r['input_tokens']:,}", f"{r['output_tokens']:,}",
                          f"{r['cost_usd']:.4f}", str(r["cached"]))
        console.print(table)
        return
    rows = store_tables.ledger_rows(db, job)
    if not rows:
        raise fail(f"{store}: no ledger rows for job {job!r} (see `atom-annotate ledger` for the jobs)")
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


def _settings_help() -> str:
    """Each calibratable backend's settings with their meaning, for `calibrate --help`."""
    lines = []
    for name in sorted(BACKENDS):
        config = BACKENDS[name].Config
        searched = getattr(config, "search_space", {})
        for field, info in config.model_fields.items() if searched else ():
            fitted = f" [fitted: {', '.join(map(str, searched[field]))}]" if field in searched else ""
            lines.append(f"{name}.{field} (default {info.default}): {info.description}{fitted}")
    return "\n\n".join(lines)


@app.command(
    help="Fit a backend's settings to the episodes whose latest revision by AUTHOR is `accepted` (3-5 are enough) "
    "and save them as a named profile; `atom-annotate run --profile NAME` then uses them (a new settings hash, so "
    "episodes are proposed again). Reports boundary F1 before, with leave-one-out (each example scored with settings "
    "fitted on the others) and after.\n\nSettings (conventions a team may differ on):\n\n" + _settings_help()
)
def calibrate(
    author: Annotated[str, typer.Option(help="Annotator whose accepted revisions are the examples.")],
    profile: Annotated[str, typer.Option(help="Profile name to save the settings under (replaces one of that name).")],
    store: StoreOpt = DEFAULT_STORE,
    backend: Annotated[str, typer.Option(help=f"Backend: {', '.join(sorted(BACKENDS))}.")] = "heuristic",
    tolerance: Annotated[int, typer.Option(min=0, help="Boundary match tolerance, in frames.")] = 5,
    verbose: VerboseOpt = False,
) -> None:
    from rich.progress import Progress
    from rich.table import Table

    from atomvla.annotate.calibrate import CalibrationError, accepted_examples, n_candidates
    from atomvla.annotate.calibrate import calibrate as fit
    from atomvla.annotate.profiles import save_profile

    setup_logging(verbose)
    try:
        cls = get_backend(backend)
    except KeyError as exc:
        raise fail(exc.args[0]) from exc
    db = open_store(store)
    examples = accepted_examples(db, author)
    try:
        with Progress(console=err_console, transient=True) as progress:
            bar = progress.add_task(f"calibrating {backend}", total=n_candidates(cls))
            config, rep = fit(cls, examples, tolerance, on_config=lambda: progress.advance(bar))
    except CalibrationError as exc:
        raise fail(f"{store}: author {author!r}: {exc}") from exc
    engine = cls(config)
    save_profile(db, engine, profile, rep.as_dict(), author)

    summary = Table(title=f"calibrate {backend} on {rep.n_examples} episodes accepted by {author} (±{tolerance} frames)")
    for col in ("F1 before", "F1 leave-one-out", "F1 fitted", "settings changed", "profile (settings hash)"):
        summary.add_column(col)
    changed = ", ".join(f"{k}={v}" for k, v in rep.changed.items()) or "none"
    summary.add_row(f"{rep.f1_before:.2f}", f"{rep.f1_loo:.2f}", f"{rep.f1_fit:.2f}", changed, f"{profile} ({engine.settings_hash})")
    console.print(summary)
