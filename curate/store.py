"""The project store: one SQLite file (WAL) with the episode index and every decomposition revision
(append-only). Its schema (every migration) lives here; the tables other areas own are read and
written through their own modules: annotate's jobs, ledger, batches and profiles in
`atomvla.annotate.store_tables`, the review app's drafts and reviews in `atomvla.ui.store_tables`
(but for `Store.reviewed`, the rule every backend follows, which reads who has a draft).

Concurrency: every write is one short `BEGIN IMMEDIATE` transaction, so several annotators and a
running job can share the file. An edit names the revision it was based on and is refused with
`StaleRevisionError` if another edit landed first (optimistic concurrency).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from atomvla.curate.errors import StaleRevisionError, StoreError
from atomvla.schemas import Decomposition, EpisodeMeta, Status

# SQLite's header field for "which application owns this file": b"ATOM".
APPLICATION_ID = 0x41544F4D

# Migration i takes the schema from version i to i + 1; PRAGMA user_version holds the version.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE episodes (
        episode_id    TEXT PRIMARY KEY,
        dataset       TEXT NOT NULL,
        episode_index INTEGER NOT NULL,
        n_frames      INTEGER NOT NULL,
        meta_json     TEXT NOT NULL,
        imported_at   TEXT NOT NULL
    );
    CREATE INDEX episodes_by_dataset ON episodes (dataset, episode_index);
    CREATE TABLE revisions (
        episode_id    TEXT NOT NULL REFERENCES episodes (episode_id),
        revision      INTEGER NOT NULL,
        based_on      INTEGER,
        status        TEXT NOT NULL,
        author        TEXT NOT NULL,
        settings_hash TEXT,
        record_json   TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (episode_id, revision)
    );
    CREATE INDEX revisions_by_author ON revisions (author, settings_hash);
    CREATE TABLE reviews (
        id            INTEGER PRIMARY KEY,
        episode_id    TEXT NOT NULL REFERENCES episodes (episode_id),
        revision      INTEGER NOT NULL,
        reviewer      TEXT NOT NULL,
        verdict       TEXT NOT NULL,
        comment       TEXT,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE jobs (
        job_id        TEXT PRIMARY KEY,
        backend       TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE job_items (
        job_id        TEXT NOT NULL REFERENCES jobs (job_id),
        episode_id    TEXT NOT NULL,
        state         TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        error         TEXT,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (job_id, episode_id)
    );
    """,
    # 2: named backend settings (calibration), the token/dollar ledger, Batch API runs and the
    # review app's autosaved drafts.
    """
    CREATE TABLE profiles (
        backend       TEXT NOT NULL,
        name          TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        report_json   TEXT,
        author        TEXT,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (backend, name)
    );
    CREATE TABLE ledger (
        id            INTEGER PRIMARY KEY,
        job_id        TEXT NOT NULL,
        episode_id    TEXT NOT NULL,
        model         TEXT NOT NULL,
        input_tokens  INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd      REAL NOT NULL,
        cached        INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX ledger_by_job ON ledger (job_id);
    CREATE TABLE batches (
        batch_id      TEXT PRIMARY KEY,
        job_id        TEXT NOT NULL,
        state         TEXT NOT NULL,
        request_json  TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE TABLE drafts (
        episode_id    TEXT NOT NULL REFERENCES episodes (episode_id),
        author        TEXT NOT NULL,
        based_on      INTEGER,
        record_json   TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (episode_id, author)
    );
    """,
    # 3: a profile may carry model weights (a learned backend fine-tuned on accepted episodes).
    """
    ALTER TABLE profiles ADD COLUMN weights BLOB;
    """,
    # 4: the conflicts merges into this store settled and reported (`atom-curate merge` shows each once).
    """
    CREATE TABLE merge_conflicts (
        conflict      TEXT PRIMARY KEY,
        line          TEXT NOT NULL,
        reported_at   TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)



def utc_now() -> str:
    """The time stamp every table stores (ISO 8601, UTC)."""
    return datetime.now(timezone.utc).isoformat()


class Store:
    """`Store(path)` opens the store at `path`, creating it if it does not exist."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise StoreError(f"{self.path}: no such store")
        self._local = threading.local()
        self._migrate()

    # -- connection and schema -------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (rows as `sqlite3.Row`), for reads."""
        # One connection per thread: sqlite3 connections must not be shared across threads.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: not an atomvla store ({exc})") from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front so read-then-write is atomic."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        conn = self.connection()
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not an atomvla store ({exc})") from exc
        if app_id != APPLICATION_ID and not (app_id == 0 and n_tables == 0):
            raise StoreError(
                f"{self.path}: not an atomvla store (it is an SQLite database of another application)"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {version} is newer than this atomvla "
                f"understands ({SCHEMA_VERSION}); upgrade atomvla"
            )
        # Only now, once the file is known to be ours: WAL mode rewrites the file's header, and it
        # persists in the file, so connections opened later in other threads get it too.
        conn.execute("PRAGMA journal_mode=WAL")
        for step in range(version, SCHEMA_VERSION):
            # executescript commits on its own, so the version bump sits inside the script.
            conn.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[step]}\n"
                f"PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={step + 1}; COMMIT;"
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- episodes ------------------------------------------------------------------------

    def upsert_episodes(self, metas: Iterable[EpisodeMeta]) -> dict[str, str]:
        """Add or update episodes in one transaction; returns {episode_id: problem} for those not written.

        Re-importing keeps an episode's revisions; its frame count may not change once it has
        revisions, since they were validated against it.
        """
        metas = list(metas)
        now = utc_now()
        problems: dict[str, str] = {}
        with self.transaction() as conn:
            rows = []
            for m in metas:
                old = conn.execute(
                    "SELECT e.n_frames, (SELECT count(*) FROM revisions r WHERE r.episode_id = e.episode_id)"
                    " FROM episodes e WHERE e.episode_id = ?",
                    (m.episode_id,),
                ).fetchone()
                if old is not None and old[1] and old[0] != m.n_frames:
                    problems[m.episode_id] = (
                        f"episode {m.episode_id}: the source now has {m.n_frames} frames but the "
                        f"store holds {old[1]} revision(s) made for {old[0]} frames; not updated"
                    )
                    continue
                rows.append((m.episode_id, m.dataset, m.episode_index, m.n_frames, m.model_dump_json(), now))
            conn.executemany(
                "INSERT INTO episodes (episode_id, dataset, episode_index, n_frames, meta_json, imported_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (episode_id) DO UPDATE SET"
                " dataset = excluded.dataset, episode_index = excluded.episode_index,"
                " n_frames = excluded.n_frames, meta_json = excluded.meta_json",
                rows,
            )
        return problems

    def episodes(self, dataset: str | None = None) -> list[EpisodeMeta]:
        sql = "SELECT meta_json FROM episodes"
        args: tuple = ()
        if dataset is not None:
            sql += " WHERE dataset = ?"
            args = (dataset,)
        rows = self.connection().execute(sql + " ORDER BY dataset, episode_index", args).fetchall()
        return [EpisodeMeta.model_validate_json(r[0]) for r in rows]

    def episode(self, episode_id: str) -> EpisodeMeta:
        row = self.connection().execute(
            "SELECT meta_json FROM episodes WHERE episode_id = ?", (episode_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no episode {episode_id!r} in the store")
        return EpisodeMeta.model_validate_json(row[0])

    def count_episodes(self) -> int:
        return self.connection().execute("SELECT count(*) FROM episodes").fetchone()[0]

    # -- revisions -----------------------------------------------------------------------

    def add_revision(self, decomposition: Decomposition, based_on: int | None = None) -> Decomposition:
        """Append `decomposition` as the episode's next revision and return it numbered.

        `based_on` is the revision the edit started from (0: none yet); if another revision
        landed since, the edit is refused. `None` appends unconditionally (backends, imports).
        """
        return self.add_revisions([decomposition], based_on=[based_on])[0]

    def add_revisions(
        self, decompositions: Iterable[Decomposition], based_on: Iterable[int | None] | None = None
    ) -> list[Decomposition]:
        """Several revisions in one transaction: all are stored or none is."""
        decompositions = list(decompositions)
        bases = list(based_on) if based_on is not None else [None] * len(decompositions)
        stored: list[Decomposition] = []
        with self.transaction() as conn:
            for dec, base in zip(decompositions, bases, strict=True):
                row = conn.execute(
                    "SELECT n_frames FROM episodes WHERE episode_id = ?", (dec.episode_id,)
                ).fetchone()
                if row is None:
                    raise KeyError(f"{self.path}: no episode {dec.episode_id!r} in the store")
                if row[0] != dec.n_frames:
                    raise ValueError(
                        f"episode {dec.episode_id}: decomposition is for {dec.n_frames} frames, "
                        f"the episode has {row[0]}"
                    )
                latest = conn.execute(
                    "SELECT coalesce(max(revision), 0) FROM revisions WHERE episode_id = ?",
                    (dec.episode_id,),
                ).fetchone()[0]
                if base is not None and base != latest:
                    raise StaleRevisionError(
                        f"episode {dec.episode_id}: your edit is based on revision {base}, but "
                        f"revision {latest} has been saved since; reload the episode and redo the edit"
                    )
                numbered = dec.model_copy(update={"revision": latest + 1})
                conn.execute(
                    "INSERT INTO revisions (episode_id, revision, based_on, status, author,"
                    " settings_hash, record_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dec.episode_id,
                        latest + 1,
                        base,
                        dec.status.value,
                        dec.author,
                        dec.provenance.settings_hash if dec.provenance else None,
                        numbered.model_dump_json(),
                        utc_now(),
                    ),
                )
                stored.append(numbered)
        return stored

    def history(self, episode_id: str) -> list[Decomposition]:
        rows = self.connection().execute(
            "SELECT record_json FROM revisions WHERE episode_id = ? ORDER BY revision", (episode_id,)
        ).fetchall()
        return [Decomposition.model_validate_json(r[0]) for r in rows]

    def revision(self, episode_id: str, revision: int) -> Decomposition:
        row = self.connection().execute(
            "SELECT record_json FROM revisions WHERE episode_id = ? AND revision = ?",
            (episode_id, revision),
        ).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: episode {episode_id!r} has no revision {revision}")
        return Decomposition.model_validate_json(row[0])

    def latest(self, episode_id: str, author: str | None = None) -> Decomposition | None:
        found = self.latest_all(author=author, episode_ids=[episode_id])
        return found.get(episode_id)

    def latest_all(
        self,
        author: str | None = None,
        status: Status | None = None,
        settings_hash: str | None = None,
        episode_ids: Iterable[str] | None = None,
    ) -> dict[str, Decomposition]:
        """The newest revision per episode among those matching `author` / `settings_hash`;
        `status` then filters on the status of that newest revision."""
        where, args = [], []
        if author is not None:
            where.append("author = ?")
            args.append(author)
        if settings_hash is not None:
            where.append("settings_hash = ?")
            args.append(settings_hash)
        if episode_ids is not None:
            ids = list(episode_ids)
            where.append(f"episode_id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        cond = " AND ".join(where) or "1"
        out = {}
        for _, row_status, record_json in _latest(self.connection(), cond, args):
            if status is not None and row_status != Status(status).value:
                continue
            dec = Decomposition.model_validate_json(record_json)
            out[dec.episode_id] = dec
        return out

    def reviewed(self, episode_ids: Iterable[str] | None = None) -> dict[str, str]:
        """{episode_id: why} of the episodes (of `episode_ids`; None: all) that hold a person's work,
        which no backend proposes over: the latest revision is not a backend's own (someone saved,
        accepted, rejected, flagged, restored or imported it), or someone has a draft of it."""
        return {episode_id: work.why for episode_id, work in persons_work(self.connection(), episode_ids).items()}

    def restore(self, episode_id: str, revision: int, author: str, based_on: int | None) -> Decomposition:
        """Make an old revision current again by appending a copy of it (history is never rewritten)."""
        old = self.revision(episode_id, revision)
        copy = old.model_copy(
            update={"author": author, "revision": 0, "created_at": datetime.now(timezone.utc),
                    "note": f"restored from revision {revision}"}
        )
        return self.add_revision(copy, based_on=based_on)

    def revisions_since(self, after: int = 0) -> list[tuple[int, Decomposition]]:
        """(sequence number, revision) of every revision stored after sequence number `after`, in
        storage order: lets a long-lived reader (the review queue) follow the store incrementally."""
        rows = self.connection().execute(
            "SELECT rowid, record_json FROM revisions WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        return [(r[0], Decomposition.model_validate_json(r[1])) for r in rows]

    def episodes_since(self, after: int = 0) -> list[tuple[int, EpisodeMeta]]:
        """(sequence number, episode) of every episode first indexed after sequence number `after`."""
        rows = self.connection().execute(
            "SELECT rowid, meta_json FROM episodes WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        return [(r[0], EpisodeMeta.model_validate_json(r[1])) for r in rows]


def _latest(conn: sqlite3.Connection, where: str, args: Sequence) -> list[tuple[int, str, str]]:
    """(revision, status, record_json) of each episode's newest revision among those `where` selects."""
    return conn.execute(
        f"SELECT r.revision, r.status, r.record_json FROM revisions r JOIN ("
        f" SELECT episode_id, max(revision) AS rev FROM revisions WHERE {where} GROUP BY episode_id"
        f") m ON r.episode_id = m.episode_id AND r.revision = m.rev",
        args,
    ).fetchall()


@dataclass(frozen=True)
class PersonsWork:
    """A person's work on an episode, which no backend proposes over."""

    why: str  # "reviewed by ann (accepted)", "draft by carol"
    saved: bool  # the latest revision is a person's; else someone has a draft
    latest: int  # the episode's latest revision (0: none yet)


def persons_work(conn: sqlite3.Connection, episode_ids: Iterable[str] | None = None) -> dict[str, PersonsWork]:
    """`Store.reviewed`'s rule over any connection to a store, a read-only one included (merge reads its
    sources so: opening one as a `Store` writes to it), for the episodes of `episode_ids` (None: all)."""
    ids = None if episode_ids is None else list(episode_ids)
    where, args = ("1", ()) if ids is None else (f"episode_id IN ({','.join('?' * len(ids))})", ids)
    out: dict[str, PersonsWork] = {}
    latest: dict[str, int] = {}
    for revision, _, record_json in _latest(conn, where, args):
        dec = Decomposition.model_validate_json(record_json)
        latest[dec.episode_id] = revision
        if not by_backend(dec):
            out[dec.episode_id] = PersonsWork(reviewed_by(dec), True, revision)
    drafts = conn.execute(
        f"SELECT episode_id, group_concat(author, ', ') FROM drafts WHERE {where} GROUP BY episode_id", args
    ).fetchall()
    for episode_id, authors in drafts:
        out.setdefault(episode_id, PersonsWork(f"draft by {authors}", False, latest.get(episode_id, 0)))
    return out


def by_backend(dec: Decomposition) -> bool:
    """Is this revision a backend's own output? A backend authors its proposals (and failures) under
    the name its provenance gives; a person's revision has another author (or no provenance), even
    when it restores or imports a backend's subtasks."""
    return dec.provenance is not None and dec.provenance.backend == dec.author


def reviewed_by(dec: Decomposition) -> str:
    """Why a person's revision keeps backends off its episode: "reviewed by ann (needs review)"."""
    return f"reviewed by {dec.author} ({dec.status.value.replace('_', ' ')})"


def open_store(path: Path, create: bool = False) -> Store:
    """The store at `path` for a command; a missing one says how to create it (a UserError)."""
    if not create and not Path(path).exists():
        raise StoreError(f"{path}: no such store; create one with `atom-curate import SOURCE --store {path}`")
    return Store(path, create=create)
