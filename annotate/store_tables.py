"""annotate's tables in the project store: jobs and their items (resumable runs), the token and
dollar ledger, OpenAI Batch API runs, and profiles (named backend settings). The schema is created
by the store's migrations (`curate/store.py`); every read and write of these tables is here."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from atomvla.curate.store import Store, utc_now

JOB_ITEM_STATES = ("pending", "done", "failed")


# -- jobs: resumable runs -----------------------------------------------------------------


def start_job(store: Store, job_id: str, backend: str, settings: dict, episode_ids: Iterable[str]) -> None:
    """Create the job (or resume it): episodes not yet in it are added as pending."""
    now = utc_now()
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO jobs (job_id, backend, settings_json, created_at) VALUES (?, ?, ?, ?)",
            (job_id, backend, json.dumps(settings, sort_keys=True), now),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO job_items (job_id, episode_id, state, updated_at) VALUES (?, ?, 'pending', ?)",
            [(job_id, e, now) for e in episode_ids],
        )


def job_items(store: Store, job_id: str, state: str | None = None) -> list[str]:
    sql, args = "SELECT episode_id FROM job_items WHERE job_id = ?", [job_id]
    if state is not None:
        sql += " AND state = ?"
        args.append(state)
    return [r[0] for r in store.connection().execute(sql + " ORDER BY episode_id", args)]


def mark_job_item(store: Store, job_id: str, episode_id: str, state: str, error: str | None = None) -> None:
    if state not in JOB_ITEM_STATES:
        raise ValueError(f"job item state must be one of {JOB_ITEM_STATES}, not {state!r}")
    with store.transaction() as conn:
        conn.execute(
            "UPDATE job_items SET state = ?, error = ?, attempts = attempts + 1, updated_at = ?"
            " WHERE job_id = ? AND episode_id = ?",
            (state, error, utc_now(), job_id, episode_id),
        )


def job_errors(store: Store, job_id: str) -> dict[str, str]:
    """{episode_id: error} of the job's items that failed."""
    rows = store.connection().execute(
        "SELECT episode_id, error FROM job_items WHERE job_id = ? AND state = 'failed' ORDER BY episode_id", (job_id,)
    )
    return {r[0]: r[1] or "" for r in rows}


# -- ledger: tokens and dollars -------------------------------------------------------------


@dataclass(frozen=True)
class Spend:
    """One model's tokens and dollars on one episode (a ledger row); `cached` counts answers reused
    from the response cache."""

    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: int = 0


def add_ledger(
    store: Store, job_id: str, episode_id: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float,
    cached: int,
) -> None:
    """One episode's spend in a job, on one model."""
    add_ledger_rows(store, job_id, episode_id, [Spend(model, input_tokens, output_tokens, cost_usd, cached)])


def add_ledger_rows(store: Store, job_id: str, episode_id: str, spends: Sequence[Spend]) -> None:
    """One episode's spend in a job, a row per model, in one transaction: all land or none (a
    hybrid's rows written one by one lost the second in a crash between them, and a re-run reads
    that answer from the cache free, so it was never recorded)."""
    if not spends:  # an offline backend spent nothing: no write lock taken
        return
    now = utc_now()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO ledger (job_id, episode_id, model, input_tokens, output_tokens, cost_usd, cached, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(job_id, episode_id, s.model, s.input_tokens, s.output_tokens, s.cost_usd, s.cached, now) for s in spends],
        )


def ledger_totals(store: Store, job_id: str | None = None) -> dict:
    """{rows, episodes, input_tokens, output_tokens, cost_usd, cached} over a job (or every job)."""
    where, args = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    row = store.connection().execute(
        "SELECT count(*), count(DISTINCT episode_id), coalesce(sum(input_tokens), 0),"
        f" coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0.0), coalesce(sum(cached), 0) FROM ledger {where}",
        args,
    ).fetchone()
    keys = ("rows", "episodes", "input_tokens", "output_tokens", "cost_usd", "cached")
    return dict(zip(keys, tuple(row)))


def ledger_by_job(store: Store) -> list[dict]:
    """{job_id, models, episodes, input_tokens, output_tokens, cost_usd, cached} per job, oldest first."""
    rows = store.connection().execute(
        "SELECT job_id, group_concat(DISTINCT model) AS models, count(DISTINCT episode_id) AS episodes,"
        " sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,"
        " sum(cached) AS cached FROM ledger GROUP BY job_id ORDER BY min(id)"
    )
    return [dict(r) for r in rows]


def ledger_rows(store: Store, job_id: str) -> list[dict]:
    rows = store.connection().execute(
        "SELECT episode_id, model, input_tokens, output_tokens, cost_usd, cached, created_at FROM ledger"
        " WHERE job_id = ? ORDER BY id",
        (job_id,),
    )
    return [dict(r) for r in rows]


def ledger_by_model(store: Store, job_id: str | None = None) -> list[dict]:
    """{model, jobs, episodes, input_tokens, output_tokens, cost_usd, cached} per model over every job
    (or one), dearest first."""
    where, args = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    rows = store.connection().execute(
        "SELECT model, count(DISTINCT job_id) AS jobs, count(DISTINCT episode_id) AS episodes,"
        " sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,"
        f" sum(cached) AS cached FROM ledger {where} GROUP BY model ORDER BY sum(cost_usd) DESC, model",
        args,
    )
    return [dict(r) for r in rows]


# -- batches: OpenAI Batch API runs ---------------------------------------------------------


def add_batch(store: Store, batch_id: str, job_id: str, state: str, request: dict) -> None:
    now = utc_now()
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO batches (batch_id, job_id, state, request_json, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (batch_id, job_id, state, json.dumps(request, sort_keys=True), now, now),
        )


def set_batch_state(store: Store, batch_id: str, state: str) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ?", (state, utc_now(), batch_id))


def batches(store: Store, state: str | None = None) -> list[dict]:
    """{batch_id, job_id, state, request, created_at, updated_at} per batch, oldest first."""
    sql, args = "SELECT * FROM batches", []
    if state is not None:
        sql += " WHERE state = ?"
        args.append(state)
    rows = store.connection().execute(sql + " ORDER BY created_at, batch_id", args)
    return [{**dict(r), "request": json.loads(r["request_json"])} for r in rows]


# -- profiles: named backend settings (calibration) ------------------------------------------


def save_profile(
    store: Store, backend: str, name: str, settings: dict, report: dict | None = None, author: str | None = None,
    weights: bytes | None = None,
) -> None:
    """Store (or replace) the settings (and model weights, if any) saved under `name` for `backend`."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO profiles (backend, name, settings_json, report_json, author, created_at, weights)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (backend, name, json.dumps(settings, sort_keys=True),
             None if report is None else json.dumps(report), author, utc_now(), weights),
        )


def profile(store: Store, backend: str, name: str) -> dict | None:
    """{backend, name, settings, report, author, created_at, weights}, or None when there is no such profile."""
    row = store.connection().execute(
        "SELECT backend, name, settings_json, report_json, author, created_at, weights FROM profiles"
        " WHERE backend = ? AND name = ?",
        (backend, name),
    ).fetchone()
    return None if row is None else _profile_row(row)


def profiles(store: Store, backend: str | None = None) -> list[dict]:
    """Every saved profile (of `backend`, if given), by backend then name; without their weights."""
    sql = "SELECT backend, name, settings_json, report_json, author, created_at, NULL AS weights FROM profiles"
    args: list[str] = []
    if backend is not None:
        sql += " WHERE backend = ?"
        args.append(backend)
    return [_profile_row(r) for r in store.connection().execute(sql + " ORDER BY backend, name", args)]


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
