"""Run one backend over store episodes: propose, store, skip what is already proposed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from atomvla.annotate.backends.base import Backend, BackendError
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.store import Store
from atomvla.schemas import DecompositionError, EpisodeMeta

log = logging.getLogger(__name__)

Outcome = Literal["proposed", "skipped", "failed"]


@dataclass
class RunResult:
    proposed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (episode id, why)


def run_backend(
    store: Store,
    backend: Backend,
    episodes: Sequence[EpisodeMeta],
    overwrite: bool = False,
    on_episode: Callable[[str, Outcome], None] | None = None,
) -> RunResult:
    """Propose for each episode and store it as a `proposed` revision authored by the backend.

    An episode whose latest revision by this backend has the same settings hash is skipped unless
    `overwrite`. An episode the backend cannot handle is reported and the run goes on: failures are
    returned, not stored.
    """
    latest = store.latest_all(author=backend.name)
    result = RunResult()
    for meta in episodes:
        previous = latest.get(meta.episode_id)
        outcome: Outcome
        if (
            not overwrite
            and previous is not None
            and previous.provenance is not None
            and previous.provenance.settings_hash == backend.settings_hash
        ):
            result.skipped.append(meta.episode_id)
            outcome = "skipped"
        else:
            try:
                store.add_revision(backend.propose(Episode(meta)))
                result.proposed.append(meta.episode_id)
                outcome = "proposed"
            except (BackendError, SourceError, DecompositionError) as exc:
                log.error("%s", exc)
                result.failed.append((meta.episode_id, str(exc)))
                outcome = "failed"
        if on_episode is not None:
            on_episode(meta.episode_id, outcome)
    return result
