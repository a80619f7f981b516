"""Which episodes a command runs: the `--episodes` selection within `--shard`, less those waiting
in a Batch API batch (`batch collect` proposes them at Batch price), less those this backend
already proposed with these settings, less those that hold a person's work; the backend then checks
what is left (`Backend.check_episodes`), so a refusal comes before any work, `--dry-run`'s too.
The run is given the plan (`arun(split=...)`), so a store's reviews are read and checked once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atomvla.annotate.backends.base import Backend
from atomvla.annotate.jobs.batch import open_episodes
from atomvla.annotate.jobs.runner import Pending, Shard, job_id, pending
from atomvla.annotate.selection import select
from atomvla.curate.errors import StoreError
from atomvla.curate.store import Store
from atomvla.schemas import EpisodeMeta


def choose(store: Store, episodes: str | None, shard: str | None) -> list[EpisodeMeta]:
    """The episodes `episodes` (ids, indices, ranges; None: all) selects, within `shard` (`i/N`)."""
    everything = store.episodes()
    if not everything:
        raise StoreError(f"{store.path}: no episodes (import a source with `atom-curate import SOURCE --store {store.path}`)")
    chosen = select(everything, episodes)
    part = Shard.parse(shard) if shard else None
    return [m for m in chosen if m.episode_id in part] if part else chosen


@dataclass(frozen=True)
class Plan(Pending):
    """`pending` of the chosen episodes not queued (`todo`, `done`, `reviewed`), and those episodes."""

    chosen: list[EpisodeMeta]  # what the run is given, with this plan as its split
    queued: int  # left to `batch collect`


def plan(store: Store, engine: Backend, chosen: Sequence[EpisodeMeta], again: bool, include_reviewed: bool) -> Plan:
    queued = open_episodes(store, job_id(engine))
    runnable = [m for m in chosen if m.episode_id not in queued]
    split = pending(store, engine, runnable, again, include_reviewed)
    return Plan(split.todo, split.done, split.reviewed, runnable, len(chosen) - len(runnable))
