"""The review queue: every episode with the status of its latest revision, its backends, the
latest proposal's confidence and how much the backends disagree; filtered, sorted and counted.

It follows the store incrementally (`Store.episodes_since` / `revisions_since`), so a refresh after
a save reads one row, and a 10,000-episode store is read once, at start.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from itertools import combinations

from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta, Status

UNLABELLED = "unlabelled"
# What "next" opens and what the default filter shows: episodes nobody has decided on yet.
UNREVIEWED = (Status.needs_review.value, Status.proposed.value, UNLABELLED)
STATUSES = (Status.needs_review.value, Status.proposed.value, Status.accepted.value,
            Status.rejected.value, Status.failed.value, UNLABELLED)
SORTS = ("queue order", "confidence (lowest first)", "disagreement (highest first)", "status (to review first)")
# The status sort: what is left to decide first, in the order "next" takes it, then what is decided.
STATUS_RANK = {s: k for k, s in enumerate(UNREVIEWED + (Status.failed.value, Status.rejected.value,
                                                        Status.accepted.value))}


@dataclass
class QueueRow:
    """One episode in the queue; what it is sorted and filtered by is computed when a revision
    arrives (`add`), not per query, so a 10,000-row queue sorts in milliseconds."""

    episode_id: str
    dataset: str
    episode_index: int
    task: str
    n_frames: int
    status: str = UNLABELLED  # of the latest revision
    by_author: dict[str, Decomposition] = field(default_factory=dict)  # latest revision per author
    backends: frozenset[str] = frozenset()
    confidence: float | None = None  # of the newest revision that states one
    disagreement: float | None = None  # see `add`
    learned_from: int | None = None  # the latest revision was re-proposed from this many accepts
    # What search matches, lower case: the id, the task, the latest revision's subtask instructions.
    text: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.text = f"{self.episode_id}\n{self.task}".lower()

    def add(self, dec: Decomposition) -> None:
        """Take in a newer revision of this episode."""
        self.status = dec.status.value
        self.text = "\n".join([self.episode_id, self.task, *(s.instruction for s in dec.subtasks)]).lower()
        self.by_author[dec.author] = dec
        self.learned_from = dec.provenance.learned_from if dec.provenance is not None else None
        if dec.provenance is not None:
            self.backends = self.backends | {dec.provenance.backend}
            if dec.provenance.confidence is not None:
                self.confidence = dec.provenance.confidence
        # Largest boundary disagreement between two authors' latest proposals, as a fraction of the
        # episode (0: same boundaries); None with fewer than two proposals.
        proposals = [d.boundaries for d in self.by_author.values() if d.subtasks]
        self.disagreement = (
            max(_boundary_distance(a, b) for a, b in combinations(proposals, 2)) / self.n_frames
            if len(proposals) >= 2 else None
        )


def _boundary_distance(a: list[int], b: list[int]) -> float:
    """Symmetric mean distance (frames) from each boundary to the nearest boundary of the other set."""
    if not a or not b:
        return 0.0 if a == b else float(max(a + b))

    def one_way(x: list[int], y: list[int]) -> float:
        return sum(min(abs(i - j) for j in y) for i in x) / len(x)

    return (one_way(a, b) + one_way(b, a)) / 2


@dataclass(frozen=True)
class QueueFilter:
    status: str | None = None  # one of STATUSES, "unreviewed", or None for all
    backend: str | None = None
    task: str | None = None
    sort: str = SORTS[0]
    search: str = ""  # words that must all occur in the episode's id, task or subtask instructions

    def keep(self, row: QueueRow) -> bool:
        if self.status == "unreviewed":
            if row.status not in UNREVIEWED:
                return False
        elif self.status and row.status != self.status:
            return False
        if self.backend and self.backend not in row.backends:
            return False
        if self.task and row.task != self.task:
            return False
        return all(word in row.text for word in self.search.lower().split())


class ReviewQueue:
    def __init__(self, store: Store):
        self.store = store
        self._rows: dict[str, QueueRow] = {}
        self._order: list[str] = []  # episodes in (dataset, episode_index) order
        self._seen_episodes = 0
        self._seen_revisions = 0
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Read what the store gained since the last refresh."""
        with self._lock:
            new_eps = self.store.episodes_since(self._seen_episodes)
            for seq, meta in new_eps:
                self._rows[meta.episode_id] = _row(meta)
                self._seen_episodes = seq
            if new_eps:
                self._order = sorted(self._rows, key=lambda e: (self._rows[e].dataset, self._rows[e].episode_index))
            for seq, dec in self.store.revisions_since(self._seen_revisions):
                row = self._rows.get(dec.episode_id)
                if row is not None:
                    row.add(dec)
                self._seen_revisions = seq

    def version(self) -> int:
        """Grows whenever the store gains an episode or a revision (after a refresh)."""
        self.refresh()
        return self._seen_episodes + self._seen_revisions

    def __contains__(self, episode_id: str) -> bool:
        return episode_id in self._rows

    def select(self, flt: QueueFilter) -> list[QueueRow]:
        self.refresh()
        rows = [self._rows[e] for e in self._order if flt.keep(self._rows[e])]
        if flt.sort == SORTS[1]:
            rows.sort(key=lambda r: (r.confidence is None, r.confidence if r.confidence is not None else 0.0))
        elif flt.sort == SORTS[2]:
            rows.sort(key=lambda r: -(r.disagreement or 0.0))
        elif flt.sort == SORTS[3]:
            rows.sort(key=lambda r: STATUS_RANK[r.status])
        return rows

    def counts(self) -> dict[str, int]:
        """Episodes per status of their latest revision."""
        out = dict.fromkeys(STATUSES, 0)
        for row in self._rows.values():
            out[row.status] += 1
        return out

    def next_unreviewed(self, flt: QueueFilter, after: str | None) -> str | None:
        """The first unreviewed episode after `after` in the filtered, sorted queue (wrapping round)."""
        rows = [r for r in self.select(flt) if r.status in UNREVIEWED]
        if not rows:
            return None
        ids = [r.episode_id for r in rows]
        if after in ids:
            k = ids.index(after)
            ids = ids[k + 1 :] + ids[:k]
        return ids[0] if ids else None

    def backends(self) -> list[str]:
        return sorted({b for r in self._rows.values() for b in r.backends})

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self._rows.values()})


def _row(meta: EpisodeMeta) -> QueueRow:
    return QueueRow(meta.episode_id, meta.dataset, meta.episode_index, meta.task, meta.n_frames)
