"""The project store: one SQLite file (WAL) with the episode index, every decomposition revision
(append-only), reviews, and job state for resumable annotation runs.

Concurrency: every write is one short `BEGIN IMMEDIATE` transaction, so several annotators and a
running job can share the file. An edit names the revision it was based on and is refused with
`StaleRevisionError` if another edit landed first (optimistic concurrency).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
)
SCHEMA_VERSION = len(MIGRATIONS)

JOB_ITEM_STATES = ("pending", "done", "failed")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _draft_row(row: sqlite3.Row) -> dict:
    return {
        "episode_id": row["episode_id"],
        "author": row["author"],
        "based_on": row["based_on"],
        "record": json.loads(row["record_json"]),
        "updated_at": row["updated_at"],
    }


class Store:
    """`Store(path)` opens the store at `path`, creating it if it does not exist."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise StoreError(f"{self.path}: no such store")
        self._local = threading.local()
        self._migrate()

    # -- connection and schema -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
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
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front so read-then-write is atomic."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        conn = self._conn()
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
        now = _now()
        problems: dict[str, str] = {}
        with self._write() as conn:
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
        rows = self._conn().execute(sql + " ORDER BY dataset, episode_index", args).fetchall()
        return [EpisodeMeta.model_validate_json(r[0]) for r in rows]

    def episode(self, episode_id: str) -> EpisodeMeta:
        row = self._conn().execute(
            "SELECT meta_json FROM episodes WHERE episode_id = ?", (episode_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no episode {episode_id!r} in the store")
        return EpisodeMeta.model_validate_json(row[0])

    def count_episodes(self) -> int:
        return self._conn().execute("SELECT count(*) FROM episodes").fetchone()[0]

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
        with self._write() as conn:
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
                        _now(),
                    ),
                )
                stored.append(numbered)
        return stored

    def history(self, episode_id: str) -> list[Decomposition]:
        rows = self._conn().execute(
            "SELECT record_json FROM revisions WHERE episode_id = ? ORDER BY revision", (episode_id,)
        ).fetchall()
        return [Decomposition.model_validate_json(r[0]) for r in rows]

    def revision(self, episode_id: str, revision: int) -> Decomposition:
        row = self._conn().execute(
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
        rows = self._conn().execute(
            f"SELECT r.record_json, r.status FROM revisions r JOIN ("
            f" SELECT episode_id, max(revision) AS rev FROM revisions WHERE {cond} GROUP BY episode_id"
            f") m ON r.episode_id = m.episode_id AND r.revision = m.rev",
            args,
        ).fetchall()
        out = {}
        for record_json, row_status in rows:
            if status is not None and row_status != Status(status).value:
                continue
            dec = Decomposition.model_validate_json(record_json)
            out[dec.episode_id] = dec
        return out

    def restore(self, episode_id: str, revision: int, author: str, based_on: int | None) -> Decomposition:
        """Make an old revision current again by appending a copy of it (history is never rewritten)."""
        old = self.revision(episode_id, revision)
        copy = old.model_copy(
            update={"author": author, "revision": 0, "created_at": datetime.now(timezone.utc),
                    "note": f"restored from revision {revision}"}
        )
        return self.add_revision(copy, based_on=based_on)

    # -- reviews -------------------------------------------------------------------------

    def add_review(self, episode_id: str, revision: int, reviewer: str, verdict: str, comment: str = "") -> None:
        self.revision(episode_id, revision)  # the reviewed revision must exist
        with self._write() as conn:
            conn.execute(
                "INSERT INTO reviews (episode_id, revision, reviewer, verdict, comment, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (episode_id, revision, reviewer, verdict, comment, _now()),
            )

    def reviews(self, episode_id: str) -> list[dict]:
        rows = self._conn().execute(
            "SELECT revision, reviewer, verdict, comment, created_at FROM reviews"
            " WHERE episode_id = ? ORDER BY id",
            (episode_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    # -- drafts: the review app's autosave, one per episode and author ---------------------

    def save_draft(self, episode_id: str, author: str, based_on: int | None, record: dict) -> None:
        """Replace `author`'s draft of the episode; `record` is the app's own JSON (may break the contract)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO drafts (episode_id, author, based_on, record_json, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (episode_id, author) DO UPDATE SET based_on = excluded.based_on,"
                " record_json = excluded.record_json, updated_at = excluded.updated_at",
                (episode_id, author, based_on, json.dumps(record), _now()),
            )

    def draft(self, episode_id: str, author: str) -> dict | None:
        """{episode_id, author, based_on, record, updated_at}, or None when `author` has no draft of it."""
        row = self._conn().execute(
            "SELECT episode_id, author, based_on, record_json, updated_at FROM drafts"
            " WHERE episode_id = ? AND author = ?",
            (episode_id, author),
        ).fetchone()
        return None if row is None else _draft_row(row)

    def drafts(self, author: str) -> list[dict]:
        """Every draft by `author`, the most recently saved first."""
        rows = self._conn().execute(
            "SELECT episode_id, author, based_on, record_json, updated_at FROM drafts"
            " WHERE author = ? ORDER BY updated_at DESC",
            (author,),
        ).fetchall()
        return [_draft_row(r) for r in rows]

    def delete_draft(self, episode_id: str, author: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM drafts WHERE episode_id = ? AND author = ?", (episode_id, author))

    def revisions_since(self, after: int = 0) -> list[tuple[int, Decomposition]]:
        """(sequence number, revision) of every revision stored after sequence number `after`, in
        storage order: lets a long-lived reader (the review queue) follow the store incrementally."""
        rows = self._conn().execute(
            "SELECT rowid, record_json FROM revisions WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        return [(r[0], Decomposition.model_validate_json(r[1])) for r in rows]

    def episodes_since(self, after: int = 0) -> list[tuple[int, EpisodeMeta]]:
        """(sequence number, episode) of every episode first indexed after sequence number `after`."""
        rows = self._conn().execute(
            "SELECT rowid, meta_json FROM episodes WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        return [(r[0], EpisodeMeta.model_validate_json(r[1])) for r in rows]

    # -- jobs: resumable runs -------------------------------------------------------------

    def start_job(self, job_id: str, backend: str, settings: dict, episode_ids: Iterable[str]) -> None:
        """Create the job (or resume it): episodes not yet in it are added as pending."""
        now = _now()
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, backend, settings_json, created_at) VALUES (?, ?, ?, ?)",
                (job_id, backend, json.dumps(settings, sort_keys=True), now),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO job_items (job_id, episode_id, state, updated_at) VALUES (?, ?, 'pending', ?)",
                [(job_id, e, now) for e in episode_ids],
            )

    def job_items(self, job_id: str, state: str | None = None) -> list[str]:
        sql, args = "SELECT episode_id FROM job_items WHERE job_id = ?", [job_id]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        return [r[0] for r in self._conn().execute(sql + " ORDER BY episode_id", args)]

    def mark_job_item(self, job_id: str, episode_id: str, state: str, error: str | None = None) -> None:
        if state not in JOB_ITEM_STATES:
            raise ValueError(f"job item state must be one of {JOB_ITEM_STATES}, not {state!r}")
        with self._write() as conn:
            conn.execute(
                "UPDATE job_items SET state = ?, error = ?, attempts = attempts + 1, updated_at = ?"
                " WHERE job_id = ? AND episode_id = ?",
                (state, error, _now(), job_id, episode_id),
            )

    def job_errors(self, job_id: str) -> dict[str, str]:
        """{episode_id: error} of the job's items that failed."""
        rows = self._conn().execute(
            "SELECT episode_id, error FROM job_items WHERE job_id = ? AND state = 'failed' ORDER BY episode_id", (job_id,)
        )
        return {r[0]: r[1] or "" for r in rows}

    # -- ledger: tokens and dollars ----------------------------------------------------------

    def add_ledger(
        self, job_id: str, episode_id: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float, cached: int
    ) -> None:
        """One episode's spend in a job; `cached` counts answers reused from the response cache."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO ledger (job_id, episode_id, model, input_tokens, output_tokens, cost_usd, cached, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, episode_id, model, input_tokens, output_tokens, cost_usd, cached, _now()),
            )

    def ledger_totals(self, job_id: str | None = None) -> dict:
        """{rows, episodes, input_tokens, output_tokens, cost_usd, cached} over a job (or every job)."""
        where, args = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        row = self._conn().execute(
            "SELECT count(*), count(DISTINCT episode_id), coalesce(sum(input_tokens), 0),"
            f" coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0.0), coalesce(sum(cached), 0) FROM ledger {where}",
            args,
        ).fetchone()
        keys = ("rows", "episodes", "input_tokens", "output_tokens", "cost_usd", "cached")
        return dict(zip(keys, tuple(row)))

    def ledger_by_job(self) -> list[dict]:
        """{job_id, models, episodes, input_tokens, output_tokens, cost_usd, cached} per job, oldest first."""
        rows = self._conn().execute(
            "SELECT job_id, group_concat(DISTINCT model) AS models, count(DISTINCT episode_id) AS episodes,"
            " sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,"
            " sum(cached) AS cached FROM ledger GROUP BY job_id ORDER BY min(id)"
        )
        return [dict(r) for r in rows]

    def ledger_rows(self, job_id: str) -> list[dict]:
        rows = self._conn().execute(
            "SELECT episode_id, model, input_tokens, output_tokens, cost_usd, cached, created_at FROM ledger"
            " WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [dict(r) for r in rows]

    # -- batches: OpenAI Batch API runs ------------------------------------------------------

    def add_batch(self, batch_id: str, job_id: str, state: str, request: dict) -> None:
        now = _now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO batches (batch_id, job_id, state, request_json, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, job_id, state, json.dumps(request, sort_keys=True), now, now),
            )

    def set_batch_state(self, batch_id: str, state: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ?", (state, _now(), batch_id))

    def batches(self, state: str | None = None) -> list[dict]:
        """{batch_id, job_id, state, request, created_at, updated_at} per batch, oldest first."""
        sql, args = "SELECT * FROM batches", []
        if state is not None:
            sql += " WHERE state = ?"
            args.append(state)
        rows = self._conn().execute(sql + " ORDER BY created_at, batch_id", args)
        return [{**dict(r), "request": json.loads(r["request_json"])} for r in rows]

    # -- profiles: named backend settings (calibration) ------------------------------------

    def save_profile(
        self, backend: str, name: str, settings: dict, report: dict | None = None, author: str | None = None,
        weights: bytes | None = None,
    ) -> None:
        """Store (or replace) the settings (and model weights, if any) saved under `name` for `backend`."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profiles (backend, name, settings_json, report_json, author, created_at, weights)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (backend, name, json.dumps(settings, sort_keys=True),
                 None if report is None else json.dumps(report), author, _now(), weights),
            )

    def profile(self, backend: str, name: str) -> dict | None:
        """{backend, name, settings, report, author, created_at, weights}, or None when there is no such profile."""
        row = self._conn().execute(
            "SELECT backend, name, settings_json, report_json, author, created_at, weights FROM profiles"
            " WHERE backend = ? AND name = ?",
            (backend, name),
        ).fetchone()
        return None if row is None else _profile_row(row)

    def profiles(self, backend: str | None = None) -> list[dict]:
        """Every saved profile (of `backend`, if given), by backend then name; without their weights."""
        sql = "SELECT backend, name, settings_json, report_json, author, created_at, NULL AS weights FROM profiles"
        args: list[str] = []
        if backend is not None:
            sql += " WHERE backend = ?"
            args.append(backend)
        return [_profile_row(r) for r in self._conn().execute(sql + " ORDER BY backend, name", args)]


def _profile_row(row: sqlite3.Row) -> dict:
    return {
        "backend": row["backend"],
        "name": row["name"],
        "settings": json.loads(row["settings_json"]),
        "report": None if row["report_json"] is None else json.loads(row["report_json"]),
        "author": row["author"],
        "created_at": row["created_at"],
        "weights": row["weights"],
    }


def open_store(path: Path, create: bool = False) -> Store:
    """The store at `path` for a command; a missing one says how to create it (a UserError)."""
    if not create and not Path(path).exists():
        raise StoreError(f"{path}: no such store; create one with `atom-curate import SOURCE --store {path}`")
    return Store(path, create=create)
