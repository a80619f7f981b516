"""Run one backend over store episodes as a resumable job: concurrent, budgeted, recorded.

Every episode ends as a stored revision (`proposed`, or `failed` with the reason when a model's
answer stayed invalid after its repair request) or as a failed job item with the error (the
episode could not be read, or the server kept failing): the next run retries those. An episode
whose latest revision by this backend has the same settings hash is skipped, and a model backend
finds answers it already paid for in its response cache, so a run killed at any point and started
again asks nothing twice. Each episode's tokens and dollars go to the store's ledger.

An episode that holds a person's work (`Store.reviewed`: saved, accepted, rejected, or a draft) is
skipped with the reason unless the run includes reviewed episodes on purpose: a proposal would
become its latest revision, and exports of accepted episodes would leave it out. Before the job
starts, the backend checks the episodes' metadata (`Backend.check_episodes`): a refusal writes
nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import openai

from atomvla.annotate import store_tables
from atomvla.annotate.backends.base import Backend, BackendError
from atomvla.annotate.client.retry import ResponseError, RetriesExhausted
from atomvla.errors import UserError
from atomvla.annotate.client.pricing import SPENT, Usage
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, DecompositionError, EpisodeMeta, Status

log = logging.getLogger(__name__)

Outcome = Literal["proposed", "skipped", "failed"]
# Errors that end one episode and not the run: the episode's data, the model's answer, the server.
EPISODE_ERRORS = (BackendError, SourceError, DecompositionError, RetriesExhausted, ResponseError, openai.APIError)


class ShardError(UserError, ValueError):
    """A `--shard` that is not i/N with 0 <= i < N."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: episodes are dealt by a hash of their id, the same on every machine."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ShardError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
        if not (n >= 1 and 0 <= i < n):
            raise ShardError(f"--shard {text!r}: need 0 <= i < N")
        return cls(i, n)

    def __contains__(self, episode_id: str) -> bool:
        return int(hashlib.sha256(episode_id.encode()).hexdigest()[:12], 16) % self.count == self.index


@dataclass
class RunResult:
    job_id: str
    proposed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already proposed by this backend with these settings
    reviewed: list[tuple[str, str]] = field(default_factory=list)  # (episode id, why): a person's work, left alone
    failed: list[tuple[str, str]] = field(default_factory=list)  # (episode id, why)
    not_started: list[str] = field(default_factory=list)  # left for a later run (budget reached)
    usage: Usage = field(default_factory=Usage)
    stopped: str | None = None  # why the run stopped early


def job_id(backend: Backend) -> str:
    """One job per backend and settings: a re-run with the same settings resumes it."""
    return f"{backend.name}-{backend.settings_hash}"


@dataclass(frozen=True)
class Pending:
    """What a run proposes, checked by the backend, and what it leaves and why."""

    todo: list[EpisodeMeta]
    done: list[str]  # this backend's latest revision has these settings
    reviewed: list[tuple[str, str]]  # (episode id, why): a person's work (Store.reviewed)


def pending(
    store: Store, backend: Backend, episodes: Sequence[EpisodeMeta], overwrite: bool, include_reviewed: bool = False
) -> Pending:
    """Split `episodes`: a person's work is left unless `include_reviewed`; what this backend
    already proposed with these settings is left unless `overwrite` (each flag lifts one rule). The
    backend then checks what is left (`Backend.check_episodes`), so a refusal comes before any work."""
    people = {} if include_reviewed else store.reviewed()
    latest = {} if overwrite else store.latest_all(author=backend.name)
    done = {
        episode_id
        for episode_id, dec in latest.items()
        if dec.provenance is not None and dec.provenance.settings_hash == backend.settings_hash
    }
    out = Pending([], [], [])
    for meta in episodes:
        if meta.episode_id in people:
            out.reviewed.append((meta.episode_id, people[meta.episode_id]))
        elif meta.episode_id in done:
            out.done.append(meta.episode_id)
        else:
            out.todo.append(meta)
    backend.check_episodes(out.todo)
    return out


async def arun(
    store: Store,
    backend: Backend,
    episodes: Sequence[EpisodeMeta],
    *,
    concurrency: int = 8,
    overwrite: bool = False,
    include_reviewed: bool = False,
    max_cost: float | None = None,
    estimate_usd: float = 0.0,
    on_episode: Callable[[str, Outcome, Usage], None] | None = None,
    split: Pending | None = None,
) -> RunResult:
    """Propose for every episode with at most `concurrency` at a time.

    `split`: what `pending` returned for these `episodes`, `overwrite` and `include_reviewed` (the CLI's
    plan computed it for its own use), run as it is; computed here when None.
    `max_cost`: no episode is started once the spend so far, plus a reservation for each episode in
    flight and for the next one, would pass it; a reservation is the larger of `estimate_usd` and
    the dearest episode so far. Episodes not started stay pending for a later run.
    """
    if split is None:  # before the job row: a refusal leaves the store as it was
        split = pending(store, backend, episodes, overwrite, include_reviewed)
    todo = split.todo
    result = RunResult(job_id(backend), skipped=split.done, reviewed=split.reviewed)
    for episode_id in [*split.done, *(e for e, _ in split.reviewed)]:
        if on_episode is not None:
            on_episode(episode_id, "skipped", Usage())
    store_tables.start_job(store, result.job_id, backend.name, backend.config.model_dump(mode="json"), [m.episode_id for m in todo])
    model = getattr(backend, "model", None) or backend.name
    queue: asyncio.Queue[EpisodeMeta] = asyncio.Queue()
    for meta in todo:
        queue.put_nowait(meta)
    reserve = estimate_usd
    in_flight = 0
    # One writer thread: SQLite works outside the event loop, so requests keep flowing while it
    # writes, and writes never contend for the lock (a contended writer sleeps in SQLite's busy wait).
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")

    async def write(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(writer, fn, *args)

    def over_budget() -> bool:
        return max_cost is not None and result.usage.cost_usd + (in_flight + 1) * reserve > max_cost

    def add_spend(episode_id: str, usage: Usage) -> None:
        # A row per model called (a hybrid's parts may call two), all in one transaction.
        spends = [store_tables.Spend(s.model or model, s.input_tokens, s.output_tokens, s.cost_usd, s.cached)
                  for s in usage.by_model() if s.requests or s.cached]
        store_tables.add_ledger_rows(store, result.job_id, episode_id, spends)

    def record(episode_id: str, dec: Decomposition, usage: Usage) -> Outcome:
        """Store one answered episode. The ledger first: a crash before the revision lands re-reads
        the answer from the cache (free), never leaving paid tokens unrecorded."""
        add_spend(episode_id, usage)
        store.add_revision(dec)
        if dec.status is Status.failed:
            store_tables.mark_job_item(store, result.job_id, episode_id, "failed", dec.note)
            result.failed.append((episode_id, f"episode {episode_id}: {dec.note}"))
            return "failed"
        store_tables.mark_job_item(store, result.job_id, episode_id, "done")
        result.proposed.append(episode_id)
        return "proposed"

    async def one(meta: EpisodeMeta) -> None:
        nonlocal reserve
        episode_id = meta.episode_id
        outcome: Outcome
        spending: list[Usage] = []  # the requests paid for, in case the episode fails after them
        token = SPENT.set(spending)
        try:
            dec, usage = await backend.apropose(Episode(meta))
        except EPISODE_ERRORS as exc:
            why = str(exc) if isinstance(exc, (BackendError, SourceError, DecompositionError)) else f"episode {episode_id}: {exc}"
            log.error("%s", why)
            usage, outcome = sum(spending, Usage()), "failed"
            await write(add_spend, episode_id, usage)
            await write(store_tables.mark_job_item, store, result.job_id, episode_id, "failed", why)
            result.failed.append((episode_id, why))
        else:
            outcome = await write(record, episode_id, dec, usage)
        finally:
            SPENT.reset(token)
        result.usage += usage
        reserve = max(reserve, usage.cost_usd)
        if on_episode is not None:
            on_episode(episode_id, outcome, usage)

    async def worker() -> None:
        nonlocal in_flight
        while not queue.empty() and result.stopped is None:
            if over_budget():
                result.stopped = f"stopped before passing --max-cost ${max_cost:g}"
                return
            meta = queue.get_nowait()
            in_flight += 1
            try:
                await one(meta)
            finally:
                in_flight -= 1

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        writer.shutdown(wait=True)
    if result.stopped is not None:  # after the episodes in flight at the stop: what the run spent in all
        result.stopped += f" (spent ${result.usage.cost_usd:.4f})"
    while not queue.empty():
        result.not_started.append(queue.get_nowait().episode_id)
    return result


def run_backend(
    store: Store,
    backend: Backend,
    episodes: Sequence[EpisodeMeta],
    overwrite: bool = False,
    on_episode: Callable[[str, Outcome], None] | None = None,
    concurrency: int = 1,
) -> RunResult:
    """`arun` from synchronous code (tests)."""
    callback = (lambda episode_id, outcome, _usage: on_episode(episode_id, outcome)) if on_episode is not None else None
    return asyncio.run(arun(store, backend, episodes, concurrency=concurrency, overwrite=overwrite, on_episode=callback))
