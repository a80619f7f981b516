"""`atom-curate`: import sources into the store, list episodes, load and export annotations, quality
checks, the report, the Hub, merging stores and Label Studio.

Imports nothing heavy at module level (readers, exporters, pandas, pyarrow, the Hub and Label
Studio clients load inside the commands), so `--help` and a bad argument answer at once.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer

from atomvla.cli import (
    DEFAULT_STORE,
    App,
    DatasetNameOpt,
    JsonOpt,
    OverwriteOpt,
    StatusOpt,
    StoreOpt,
    VerboseOpt,
    check_outputs,
    console,
    err_console,
    fail,
    parse_status,
    progress_bar,
    setup_logging,
    write_json,
)
from atomvla.curate.labelstudio.cli import app as labelstudio_app

log = logging.getLogger("atomvla.curate")

app = App(
    help="Curate robot demonstrations: import sources into the store and list them, load and export subtask "
    "annotations, check their quality, write an HTML report, publish to the Hub, merge stores, and round-trip "
    "with Label Studio.",
    no_args_is_help=True,
)
app.add_typer(labelstudio_app, name="labelstudio")

# Episodes are written in batches: each batch is one transaction, so a killed import leaves whole
# episodes only, and a re-run picks up where it stopped.
IMPORT_BATCH = 256


@app.command("import")
def import_(
    source: Annotated[str, typer.Argument(help="Dataset folder or file, or a Hub dataset repo id.")],
    store: StoreOpt = DEFAULT_STORE,
    format: Annotated[
        Optional[str], typer.Option("--format", help="Reader to use instead of auto-detection (a wrong name lists the readers).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Index the episodes of SOURCE into the store (frames stay in the source).

    Bad episodes are reported and skipped; the exit status is 1 if any was skipped.
    """
    setup_logging(verbose)
    from atomvla.curate.errors import SourceError
    from atomvla.curate.sources import open_source
    from atomvla.curate.store import open_store
    from atomvla.schemas import EpisodeMeta
    # An existing store is checked before the source is read (perhaps downloaded); a new one is
    # created with the first episode to store, so a source that yields none leaves no store behind.
    db = open_store(store) if store.exists() else None
    try:
        reader = open_source(source, format)
    except SourceError as exc:
        raise fail(str(exc)) from exc

    imported: list[EpisodeMeta] = []
    skipped: list[str] = []
    batch: list[EpisodeMeta] = []

    def flush() -> None:
        nonlocal db
        if not batch:
            return
        if db is None:
            db = open_store(store, create=True)
        refused = db.upsert_episodes(batch)
        skipped.extend(refused.values())
        imported.extend(m for m in batch if m.episode_id not in refused)
        batch.clear()

    with progress_bar("[bold]import[/] {task.description}") as progress:
        bar = progress.add_task(str(reader.root), total=None)
        try:
            for item in reader.scan():
                if isinstance(item, SourceError):
                    skipped.append(str(item))  # listed in the summary
                    log.debug("skipped: %s", item)
                else:
                    batch.append(item)
                    if len(batch) >= IMPORT_BATCH:
                        flush()
                progress.advance(bar)
        except SourceError as exc:
            flush()
            raise fail(str(exc)) from exc
        flush()

    if not imported and not skipped:
        raise fail(f"{reader.root}: no episodes found (read as {reader.name}); nothing imported")
    _print_import_summary(reader.name, reader.root, imported, skipped)
    if skipped:
        raise typer.Exit(1)


def _print_import_summary(fmt: str, root: Path, imported: list, skipped: list[str]) -> None:
    from rich.table import Table

    table = Table(title=f"Imported {len(imported)} episode(s) from {root} ({fmt})")
    for col in ("dataset", "episodes", "frames", "fps", "tasks", "cameras"):
        table.add_column(col, justify="right" if col in ("episodes", "frames", "fps", "tasks") else "left")
    for dataset in sorted({m.dataset for m in imported}):
        eps = [m for m in imported if m.dataset == dataset]
        table.add_row(
            dataset,
            str(len(eps)),
            str(sum(m.n_frames for m in eps)),
            ", ".join(f"{f:g}" for f in sorted({m.fps for m in eps})),
            str(len({m.task for m in eps})),
            ", ".join(sorted({c.key for m in eps for c in m.cameras})),
        )
    console.print(table)
    if skipped:
        console.print(f"[bold yellow]{len(skipped)} episode(s) skipped:[/]")
        for s in skipped:
            console.print(f"  - {s}", highlight=False)


@app.command("ls")
def ls(
    store: StoreOpt = DEFAULT_STORE,
    dataset_name: DatasetNameOpt = None,
    status: StatusOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many rows (0: all).")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """List the episodes in the store with the status of their latest decomposition."""
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.curate.dataset_names import check_dataset_name
    from atomvla.curate.store import open_store

    wanted = parse_status(status)
    db = open_store(store)
    check_dataset_name(db, dataset_name)
    metas = db.episodes(dataset_name)
    latest = db.latest_all()
    if wanted is not None:
        metas = [m for m in metas if m.episode_id in latest and latest[m.episode_id].status == wanted]
    shown = metas[: limit or None]
    more = f", the first {len(shown)} shown" if len(shown) < len(metas) else ""
    table = Table(title=f"{len(metas)} episode(s) in {store}{more}")
    for col in ("episode", "task", "frames", "fps", "subtasks", "status", "author", "rev"):
        table.add_column(col, justify="right" if col in ("frames", "fps", "subtasks", "rev") else "left")
    for m in shown:
        dec = latest.get(m.episode_id)
        table.add_row(
            m.episode_id, m.task, str(m.n_frames), f"{m.fps:g}",
            str(len(dec.subtasks)) if dec else "-",
            dec.status.value if dec else "unlabelled",
            dec.author if dec else "-",
            str(dec.revision) if dec else "-",
        )
    console.print(table)
    counts = Counter(latest[m.episode_id].status.value if m.episode_id in latest else "unlabelled" for m in metas)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                  or ("no episode matches" if db.count_episodes() else "empty store"))


@app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="File (jsonl) or folder (lerobot, parquet) to write; must not exist unless --overwrite.")],
    to: Annotated[
        str,
        typer.Option("--to", help="Export format: jsonl (interchange file), lerobot (LeRobot v3.0 dataset with subtasks), "
                     "parquet (plain dataset for `datasets.load_dataset`)."),
    ] = "jsonl",
    store: StoreOpt = DEFAULT_STORE,
    status: Annotated[
        Optional[str],
        typer.Option(help="Only episodes whose latest revision has this status (lerobot, parquet: accepted unless given)."),
    ] = None,
    author: Annotated[Optional[str], typer.Option(help="Use each episode's latest revision by this author.")] = None,
    dataset_name: DatasetNameOpt = None,
    language: Annotated[
        bool, typer.Option(help="lerobot: write LeRobot's language columns (--no-language for LeRobot < 0.6, which rejects them).")
    ] = True,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export each selected episode's latest decomposition.

    OUT is written under a temporary name and renamed when complete, so an interrupted export
    never leaves anything that looks finished (and the next export to OUT removes what it left);
    with --overwrite an existing OUT is kept until the new one is complete.
    """
    setup_logging(verbose)
    from atomvla.curate.errors import SourceError
    from atomvla.curate.exports.base import ExportError, get_exporter
    from atomvla.curate.dataset_names import check_dataset_name
    from atomvla.output import check_output
    from atomvla.curate.exports.records import proposals_of
    from atomvla.curate.store import open_store

    wanted = parse_status(status)
    db = open_store(store)
    check_dataset_name(db, dataset_name)
    exporter = get_exporter(to, **({"language": language} if to == "lerobot" else {}))
    check_output(out, overwrite, folder=exporter.is_folder)
    wanted = wanted if wanted is not None else exporter.default_status
    latest = db.latest_all(author=author, status=wanted)
    records = [(m, latest[m.episode_id]) for m in db.episodes(dataset_name) if m.episode_id in latest]
    if not records and exporter.is_folder:
        which = f"with status {wanted.value}" if wanted is not None else "with a decomposition"
        raise fail(f"{store}: no episodes {which}{f' by {author}' if author else ''}"
                   f"{f' in dataset {dataset_name}' if dataset_name else ''}; nothing written")
    proposals = {m.episode_id: proposals_of(db.history(m.episode_id)) for m, _ in records}
    try:
        with progress_bar(f"[bold]export[/] {exporter.name}") as progress:
            bar = progress.add_task(str(out), total=len(records))
            exporter.write(records, out, proposals, progress=lambda: progress.advance(bar), overwrite=overwrite)
    except (ExportError, FileExistsError, SourceError, ValueError) as exc:
        raise fail(f"{out}: {exc}" if not str(exc).startswith(str(out)) else str(exc)) from exc
    console.print(f"wrote {len(records)} episode(s) to {out} ({exporter.name})")


@app.command("qa")
def qa(
    store: StoreOpt = DEFAULT_STORE,
    dataset_name: DatasetNameOpt = None,
    json_out: JsonOpt = None,
    fail_on: Annotated[
        Optional[str], typer.Option("--fail-on", help="Exit 1 if any finding is this severe: error or warning.")
    ] = None,
    motion: Annotated[bool, typer.Option(help="Read each episode's arrays to find boundaries where nothing moves.")] = True,
    limit: Annotated[int, typer.Option(help="Show at most this many findings in the table (0: all).")] = 50,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Quality checks: contract rules, episodes without an accepted decomposition, subtasks much
    shorter or longer than their skill elsewhere, boundaries where nothing moves, and agreement
    (boundary F1, segment IoU) between backends and between annotators."""
    from atomvla.curate.dataset_names import check_dataset_name
    from atomvla.curate.quality.checks import SEVERITY_RANK, QaConfig, run_qa
    from atomvla.curate.quality.render import print_report
    from atomvla.curate.store import open_store

    setup_logging(verbose)
    if fail_on is not None and fail_on not in ("error", "warning"):
        raise fail(f"--fail-on must be error or warning, not {fail_on!r}")
    check_outputs(overwrite, files=(json_out,))
    db = open_store(store)
    check_dataset_name(db, dataset_name)
    with progress_bar("[bold]qa[/] motion") as progress:
        bar = progress.add_task("motion", total=db.count_episodes() if motion else 0)
        report = run_qa(db, QaConfig(motion=motion), dataset_name, progress=lambda: progress.advance(bar))
    if json_out is not None:
        write_json(json_out, report.as_dict(), overwrite)
    if json_out is None or str(json_out) != "-":
        print_report(report, console, limit)
    if fail_on is not None and report.worst() >= SEVERITY_RANK[fail_on]:
        raise typer.Exit(1)


@app.command("push")
def push(
    folder: Annotated[Path, typer.Argument(help="A folder written by `export --to lerobot` or `--to parquet`.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Dataset repo on the Hub, ORG/NAME (created if missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    revision: Annotated[
        Optional[str], typer.Option("--revision", help="Tag for this published revision (default: atomvla-<UTC time>).")
    ] = None,
    license: Annotated[Optional[str], typer.Option(help="License id for the dataset card (e.g. apache-2.0).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Publish an export to the Hugging Face Hub: create the repo, write the dataset card, upload
    (re-run an interrupted push to resume it: files already on the Hub are not sent again), tag.

    The token comes from `hf auth login` or HF_TOKEN; HF_ENDPOINT selects another Hub.
    """
    from atomvla.curate.hub import PushError, http_client
    from atomvla.curate.hub import push as push_folder

    setup_logging(verbose)
    # huggingface_hub's HTTP client logs every request at INFO
    logging.getLogger(http_client.__name__).setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        with err_console.status(f"pushing {folder} to {repo_id}"):
            result = push_folder(folder, repo_id, private=private, tag=revision, license=license)
    except PushError as exc:
        raise fail(str(exc)) from exc
    console.print(f"pushed {folder} to {result.repo_url} at commit {result.commit[:12]}, tagged {', '.join(result.tags)}")


@app.command("report")
def report(
    store: StoreOpt = DEFAULT_STORE,
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html and its images (a previous report there is replaced only with --overwrite).")] = Path("report"),
    dataset_name: DatasetNameOpt = None,
    timelines: Annotated[int, typer.Option(help="Episodes drawn as a timeline strip with key frames.")] = 24,
    overwrite: OverwriteOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """A static HTML report: dataset summary, subtasks per episode and duration per skill,
    quality findings and agreement, model cost, and timelines with key frames."""
    from atomvla.curate.dataset_names import check_dataset_name
    from atomvla.curate.report.build import ReportConfig, build_report
    from atomvla.curate.store import open_store

    setup_logging(verbose)
    db = open_store(store)
    check_dataset_name(db, dataset_name)
    with progress_bar("[bold]report[/] timelines") as progress:
        bar = progress.add_task("timelines", total=timelines)
        try:
            path = build_report(db, out, ReportConfig(timelines=timelines, dataset=dataset_name),
                                progress=lambda: progress.advance(bar), overwrite=overwrite)
        except FileExistsError as exc:
            raise fail(str(exc)) from exc
    console.print(f"wrote {path / 'index.html'}")


@app.command("import-annotations")
def import_annotations(
    file: Annotated[Path, typer.Argument(help="JSON Lines file of decompositions (interchange format).")],
    author: Annotated[str, typer.Option(help="Author recorded on the new revisions (e.g. 'truth', a tool's name).")],
    store: StoreOpt = DEFAULT_STORE,
    dataset_name: Annotated[
        Optional[str],
        typer.Option("--dataset-name", help="Dataset (as `atom-curate ls` names it) the episode indices refer to "
                                            "(needed if the store holds several)."),
    ] = None,
    min_frames: Annotated[int, typer.Option(help="Shortest subtask accepted, in frames.")] = 2,
    verbose: VerboseOpt = False,
) -> None:
    """Load decompositions (ground truth, another tool's output) as new revisions.

    Each is stored with its line's `status`, `accepted` when the line has none (so the file can
    stand for a reviewer's accepts, e.g. for `atom-annotate calibrate --author`). Bad lines are
    reported and skipped (exit status 1); the good ones are stored in one transaction.
    """
    setup_logging(verbose)
    from atomvla.curate.interchange_io import match_episodes, read_jsonl
    from atomvla.curate.store import open_store
    from atomvla.schemas import DecompositionError

    db = open_store(store)
    lines, problems = read_jsonl(file)
    matched, unmatched = match_episodes(file, lines, db.episodes(), dataset_name)
    problems += unmatched
    decs = []
    for line, meta in matched:
        try:
            decs.append(line.record.to_decomposition(meta.episode_id, author, min_frames))
        except DecompositionError as exc:
            problems.append(f"{file}:{line.lineno}: episode {meta.episode_id}: " + "; ".join(exc.problems))
    stored = db.add_revisions(decs)
    console.print(f"stored {len(stored)} revision(s) by {author!r} from {file}")
    if problems:
        console.print(f"[bold yellow]{len(problems)} line(s) skipped:[/]")
        for p in problems:
            console.print(f"  - {p}", highlight=False)
        raise typer.Exit(1)


@app.command()
def merge(
    sources: Annotated[list[Path], typer.Argument(help="Stores to bring in, e.g. one per `--shard i/N` machine.")],
    store: StoreOpt = DEFAULT_STORE,
    verbose: VerboseOpt = False,
) -> None:
    """Merge SOURCES into --store (created if missing) without duplicates, in one transaction.

    Episodes are matched by id; identical revisions (same author, status, settings, subtasks) are
    kept once and new ones numbered after the store's own; jobs, ledger, reviews, profiles,
    batches and drafts come along.
    A backend's proposal never goes over a person's work: where --store holds one (saved, accepted,
    rejected, a draft) or a source's latest revision of the episode is a person's, backend revisions
    brought in after it are left out and listed ("kept ..."); `atom-annotate run --include-reviewed`
    on the merged store proposes over it on purpose. Each such conflict is listed once: a later merge
    that settles it again counts it (--verbose lists it). Incompatible stores are refused and nothing
    is written. A merge that brings nothing new (the same sources again) says so in one line.
    """
    setup_logging(verbose)
    from rich.table import Table

    from atomvla.curate.merge import merge_stores

    report = merge_stores(sources, store)
    hidden = len(report.kept_earlier) if not verbose else 0
    if report.nothing_new:  # e.g. the same sources again: not the table an earlier merge printed
        listed = " (--verbose lists what was kept)" if hidden else ""
        console.print(f"nothing new merged into {store}: {report.duplicate_revisions} revision(s) already merged, "
                      f"{report.left_out_revisions} left out over a person's work{listed}", highlight=False)
    else:
        table = Table(title=f"merged {len(sources)} store(s) into {store}")
        for col in ("episodes", "revisions", "duplicate revisions", "left out (a person's work)", "reviews", "job items", "ledger rows"):
            table.add_column(col, justify="right")
        table.add_row(*(str(v) for v in (report.episodes, report.revisions, report.duplicate_revisions, report.left_out_revisions,
                                         report.reviews, report.job_items, report.ledger)))
        console.print(table)
        if hidden:
            console.print(f"{hidden} conflict(s) settled as an earlier merge into {store} reported them, not listed "
                          "again (--verbose lists them)", highlight=False)
    for line in (report.kept_earlier if verbose else []) + report.kept:
        console.print(f"[yellow]kept[/] {line}", highlight=False)
