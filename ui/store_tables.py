"""The review app's tables in the project store: reviews (verdicts on a revision) and drafts (the
app's autosave, one per episode and author). The schema is created by the store's migrations
(`curate/store.py`); every read and write of these tables is here, but for `Store.reviewed` (the
rule every backend follows: no proposal over an episode someone has a draft of)."""

from __future__ import annotations

import json
import sqlite3

from atomvla.curate.store import Store, utc_now


def add_review(store: Store, episode_id: str, revision: int, reviewer: str, verdict: str, comment: str = "") -> None:
    store.revision(episode_id, revision)  # the reviewed revision must exist
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO reviews (episode_id, revision, reviewer, verdict, comment, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (episode_id, revision, reviewer, verdict, comment, utc_now()),
        )


def reviews(store: Store, episode_id: str) -> list[dict]:
    rows = store.connection().execute(
        "SELECT revision, reviewer, verdict, comment, created_at FROM reviews WHERE episode_id = ? ORDER BY id",
        (episode_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def save_draft(store: Store, episode_id: str, author: str, based_on: int | None, record: dict) -> None:
    """Replace `author`'s draft of the episode; `record` is the app's own JSON (may break the contract)."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO drafts (episode_id, author, based_on, record_json, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (episode_id, author) DO UPDATE SET based_on = excluded.based_on,"
            " record_json = excluded.record_json, updated_at = excluded.updated_at",
            (episode_id, author, based_on, json.dumps(record), utc_now()),
        )


def draft(store: Store, episode_id: str, author: str) -> dict | None:
    """{episode_id, author, based_on, record, updated_at}, or None when `author` has no draft of it."""
    row = store.connection().execute(
        "SELECT episode_id, author, based_on, record_json, updated_at FROM drafts WHERE episode_id = ? AND author = ?",
        (episode_id, author),
    ).fetchone()
    return None if row is None else _draft_row(row)


def drafts(store: Store, author: str) -> list[dict]:
    """Every draft by `author`, the most recently saved first."""
    rows = store.connection().execute(
        "SELECT episode_id, author, based_on, record_json, updated_at FROM drafts"
        " WHERE author = ? ORDER BY updated_at DESC",
        (author,),
    ).fetchall()
    return [_draft_row(r) for r in rows]


def delete_draft(store: Store, episode_id: str, author: str) -> None:
    with store.transaction() as conn:
        conn.execute("DELETE FROM drafts WHERE episode_id = ? AND author = ?", (episode_id, author))


def _draft_row(row: sqlite3.Row) -> dict:
    return {
        "episode_id": row["episode_id"],
        "author": row["author"],
        "based_on": row["based_on"],
        "record": json.loads(row["record_json"]),
        "updated_at": row["updated_at"],
    }
