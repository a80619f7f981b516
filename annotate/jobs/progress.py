"""The run's console: a progress bar with rate, ETA and spend, and the summary tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from atomvla.annotate.backends.base import Backend
from atomvla.annotate.jobs.estimate import Estimate
from atomvla.annotate.jobs.runner import Outcome, RunResult, arun
from atomvla.annotate.client.pricing import Usage
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta

SHOWN = 5  # episode ids the skipped-as-reviewed table names per reason


@contextmanager
def run_progress(console: Console, label: str, total: int) -> Iterator:
    """Yields `on_episode(episode_id, outcome, usage)` that advances a bar showing episodes/s,
    ETA, dollars spent and failures so far."""
    with Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} ep/s"),
        TimeRemainingColumn(),
        TextColumn("${task.fields[spent]:.4f}"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(label, total=total, rate=0.0, spent=0.0, failed=0)
        start = time.perf_counter()
        state = {"done": 0, "spent": 0.0, "failed": 0}

        def on_episode(_episode_id: str, outcome: Outcome, usage: Usage) -> None:
            state["spent"] += usage.cost_usd
            state["failed"] += outcome == "failed"
            if outcome != "skipped":
                state["done"] += 1
            rate = state["done"] / max(time.perf_counter() - start, 1e-9)
            progress.update(bar, advance=1, rate=rate, spent=state["spent"], failed=state["failed"])

        yield on_episode


def run_with_progress(
    console: Console, label: str, store: Store, engine: Backend, episodes: Sequence[EpisodeMeta], **options
) -> RunResult:
    """`arun(store, engine, episodes, **options)` behind a progress bar."""
    with run_progress(console, label, len(episodes)) as on_episode:
        return asyncio.run(arun(store, engine, episodes, on_episode=on_episode, **options))


def estimate_table(title: str, est: Estimate, model: str) -> Table:
    t = Table(title=title)
    for col in ("episodes", "input tokens/episode", "output tokens/episode", f"$ ({model})", "$ Batch API"):
        t.add_column(col, justify="right")
    t.add_row(
        str(est.episodes),
        f"{est.input_tokens_per_episode:,.0f}",
        f"{est.output_tokens_per_episode:,.0f}",
        f"{est.usd:,.4f}",
        f"{est.batch_usd:,.4f}",
    )
    return t


def summary_table(title: str, result: RunResult) -> Table:
    t = Table(title=title)
    for col in ("proposed", "skipped (already proposed)", "skipped (reviewed by a person)", "failed", "not started",
                "input tokens", "output tokens", "$ spent", "cached answers"):
        t.add_column(col, justify="right")
    u = result.usage
    t.add_row(
        str(len(result.proposed)), str(len(result.skipped)), str(len(result.reviewed)), str(len(result.failed)),
        str(len(result.not_started)), f"{u.input_tokens:,}", f"{u.output_tokens:,}", f"{u.cost_usd:.4f}", str(u.cached),
    )
    return t


def reviewed_table(reviewed: list[tuple[str, str]]) -> Table:
    """The episodes skipped as a person's work, one row per reason, naming the first SHOWN of each."""
    by_why: dict[str, list[str]] = {}
    for episode_id, why in reviewed:
        by_why.setdefault(why, []).append(episode_id)
    t = Table(title="skipped: a person's work (--include-reviewed proposes over it)")
    t.add_column("why")
    t.add_column("episodes", justify="right")
    t.add_column("which")
    for why, ids in by_why.items():
        more = f", ... ({len(ids) - SHOWN} more)" if len(ids) > SHOWN else ""
        t.add_row(Text(why), str(len(ids)), Text(", ".join(ids[:SHOWN]) + more))
    return t


def failures_table(failed: list[tuple[str, str]]) -> Table:
    t = Table(title="failed episodes", show_lines=True)
    t.add_column("episode")
    t.add_column("why")
    for episode_id, why in failed:
        # Text, not markup: a reason may hold brackets (a robot layout `observation.state[x,y]`)
        t.add_row(Text(episode_id), Text(why))
    return t
