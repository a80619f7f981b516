"""Bring stores together (`atom-curate merge`): the stores of a run split with `--shard i/N`, or of
annotators who worked on copies.

Everything lands in the destination in ONE transaction: a merge that meets a problem writes
nothing. Sources are opened read-only and never changed: not a byte of them, and no `-wal`/`-shm`
file is left beside them.

- Episodes are matched by id; the same id with another frame count means the stores index
  different data (an error).
- A revision is a duplicate when the destination or another source already holds one for the
  episode with the same author, status, settings hash, subtasks and note (a shared base copied to
  every machine, or the same proposal made on two machines); duplicates are dropped. Repeats within
  one store are that store's history and are kept. New revisions are numbered after the
  destination's latest for the episode, in the order they were made; `based_on` and the reviews
  and drafts that name a revision follow the renumbering.
- A backend's revision brought in never goes over a person's work (`Store.reviewed`'s rule: the
  latest revision is not a backend's own, or someone has a draft). Where the destination holds a
  person's work on an episode, or a source's latest revision of it is a person's, backend revisions
  brought in after the newest such revision, with no person's revision after them, are left out:
  the episode ends on the person's work. Each one left out is listed in `kept` and stays in its
  source, with any review of it (a draft made on it becomes stale: saving it is refused, as when
  someone saved first). People's revisions merge as always, the newest one the latest. A source's
  draft keeps the backend's revision it was made on from being gone over the same way, unless one
  of the above applies. To propose over a person's work anyway: `atom-annotate run
  --include-reviewed` on the merged store.
- Jobs with the same id must have the same backend and settings (an error otherwise); per episode
  the furthest state wins (done > failed > pending, then the latest). Ledger rows, reviews and
  batches already present are not added again; profiles present on both sides with other
  settings keep the destination's (reported), drafts and batches keep the newest.
- Each conflict settled (a revision left out, a profile kept) is reported once: the destination
  records it (`merge_conflicts`), and a later merge that settles it again, from the same peer or a
  copy of it wherever it lies, lists it in `kept_earlier` instead of `kept`. A conflict is what was
  left out or kept over what, so a peer's profile changed again is a new one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from atomvla.curate.errors import StoreError
from atomvla.curate.store import (APPLICATION_ID, SCHEMA_VERSION, PersonsWork, Store, by_backend, persons_work,
                                  utc_now)
from atomvla.schemas import Decomposition

# Tables merge knows how to bring over; a source with rows in any other table is refused.
TABLES = ("episodes", "revisions", "reviews", "jobs", "job_items", "ledger", "profiles", "batches", "drafts")
# A store's own record, not brought over: what merges into that store reported to whoever ran them.
OWN_TABLES = ("merge_conflicts",)
# Source versions merge reads: every table of TABLES is as it is now since version 3 (version 4 added
# OWN_TABLES), so a peer's store need not be opened with this atomvla first.
OLDEST_SOURCE_VERSION = 3
_ITEM_RANK = {"pending": 0, "failed": 1, "done": 2}
# A revision where it was made: (origin, episode, revision there); origin -1 is the destination,
# i the i-th source.
Ref = tuple[int, str, int]


class MergeError(StoreError):
    """The stores cannot be merged; nothing was written."""


@dataclass
class MergeReport:
    episodes: int = 0
    revisions: int = 0
    duplicate_revisions: int = 0
    left_out_revisions: int = 0  # backends' revisions that would have gone over a person's work
    reviews: int = 0
    jobs: int = 0
    job_items: int = 0
    ledger: int = 0
    profiles: int = 0
    batches: int = 0
    drafts: int = 0
    # Conflicts settled, each saying what was kept over what: those no earlier merge into the
    # destination reported, and those one did (listed again only on request).
    kept: list[str] = field(default_factory=list)
    kept_earlier: list[str] = field(default_factory=list)

    @property
    def nothing_new(self) -> bool:
        """The destination gained and changed no data: every source row was in it already, left out, or
        settled in its favour (the same sources merged again)."""
        return not (self.episodes or self.revisions or self.reviews or self.jobs or self.job_items or self.ledger
                    or self.profiles or self.batches or self.drafts)


@dataclass(frozen=True)
class Conflict:
    """A conflict the merge settled: `what` identifies it wherever the stores lie (no path, no
    revision number); `line` says what was kept over what."""

    what: tuple
    line: str

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.what).encode()).hexdigest()


@dataclass(frozen=True)
class _Source:
    path: Path
    rows: dict[str, list[sqlite3.Row]]  # table -> every row
    work: dict[str, PersonsWork]  # its episodes that hold a person's work (`Store.reviewed`'s rule)


def _source_uri(path: Path) -> str:
    """A URI that reads `path` without writing anything, beside it included.

    A store with no `-wal` file beside it has no open writer and nothing outside the main file:
    `immutable=1` reads it with no locks and creates no `-wal`/`-shm`. With a `-wal` (a writer
    still open, or one that was killed) the committed rows in it must be read too: `mode=ro`,
    which uses the `-wal`/`-shm` already there and changes neither the store nor its `-wal` (a
    reader notes itself in the `-shm`, the connections' shared memory).
    """
    uri = path.resolve().as_uri()  # percent-encodes the path ('?', '#', '%' in file names)
    wal = path.with_name(path.name + "-wal")
    return f"{uri}?mode=ro" if wal.exists() else f"{uri}?immutable=1"


def _read(path: Path) -> _Source:
    """All rows of a source store, opened read-only, after checking it is one merge can read."""
    if not path.is_file():
        raise MergeError(f"{path}: no such store")
    try:
        with closing(sqlite3.connect(_source_uri(path), uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise MergeError(f"{path}: not an atomvla store")
            if not OLDEST_SOURCE_VERSION <= version <= SCHEMA_VERSION:
                how = "open it once with this atomvla (e.g. `atom-curate ls --store` it) to upgrade it" if version < SCHEMA_VERSION else "upgrade atomvla"
                raise MergeError(f"{path}: store schema version {version}, this atomvla merges versions "
                                 f"{OLDEST_SOURCE_VERSION} to {SCHEMA_VERSION}; {how}")
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            unknown = [n for n in names if n not in TABLES + OWN_TABLES and not n.startswith("sqlite_")
                       and conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]]
            if unknown:
                raise MergeError(f"{path}: has rows in table(s) {', '.join(unknown)} that merge does not know")
            return _Source(path, {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}, persons_work(conn))
    except sqlite3.DatabaseError as exc:
        raise MergeError(f"{path}: not an atomvla store ({exc})") from exc


def _revision_key(row: sqlite3.Row) -> tuple:
    """What makes two revisions the same: not their number, time, latency or cost."""
    record = json.loads(row["record_json"])
    subtasks = json.dumps(record.get("subtasks", []), sort_keys=True)
    return (row["author"], row["status"], row["settings_hash"], subtasks, record.get("note"))


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def merge_stores(sources: Sequence[Path], dest: Path) -> MergeReport:
    """Merge `sources` into the store at `dest` (created if missing); see the module docstring."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise MergeError("no source store given")
    for s in sources:
        if _same_file(s, dest):
            raise MergeError(f"{s}: is the destination store itself")
    for i, s in enumerate(sources):
        if any(_same_file(s, t) for t in sources[:i]):
            raise MergeError(f"{s}: given twice")
    snapshots = [_read(s) for s in sources]
    store = Store(dest)  # creates or migrates the destination
    report = MergeReport()
    try:
        # The store's own transaction, so that `store.reviewed` reads under the write lock.
        with store.transaction() as conn:
            _merge(conn, store, snapshots, report)
    finally:
        store.close()
    return report


def _merge(conn: sqlite3.Connection, store: Store, snapshots: list[_Source], report: MergeReport) -> None:
    dest = store.path
    # Episodes.
    frames = {r[0]: (r[1], str(dest)) for r in conn.execute("SELECT episode_id, n_frames FROM episodes")}
    for source in snapshots:
        src = source.path
        for r in source.rows["episodes"]:
            known = frames.get(r["episode_id"])
            if known is None:
                conn.execute("INSERT INTO episodes VALUES (?, ?, ?, ?, ?, ?)", tuple(r))
                frames[r["episode_id"]] = (r["n_frames"], str(src))
                report.episodes += 1
            elif known[0] != r["n_frames"]:
                raise MergeError(
                    f"{src}: episode {r['episode_id']} has {r['n_frames']} frames but {known[1]} has {known[0]}; "
                    "the stores index different data"
                )

    settled: list[Conflict] = []
    renumber = _merge_revisions(conn, store, snapshots, report, settled)

    for i, source in enumerate(snapshots):
        src, rows = source.path, source.rows
        _merge_reviews(conn, i, rows["reviews"], renumber, report)
        _merge_jobs(conn, src, rows, report)
        _merge_ledger(conn, rows["ledger"], report)
        _merge_profiles(conn, src, rows["profiles"], report, settled)
        _merge_newest(conn, "batches", ("batch_id",), rows["batches"], report)
        drafts = [
            {**dict(r), "based_on": r["based_on"] if not r["based_on"] else renumber.get((i, r["episode_id"], r["based_on"]))}
            for r in rows["drafts"]
        ]
        _merge_newest(conn, "drafts", ("episode_id", "author"), drafts, report)
    _report_once(conn, settled, report)


def _report_once(conn: sqlite3.Connection, settled: list[Conflict], report: MergeReport) -> None:
    """Each conflict into `report.kept` the first time a merge into this destination settles it, and
    recorded there; into `report.kept_earlier` when an earlier merge did."""
    earlier = {r[0] for r in conn.execute("SELECT conflict FROM merge_conflicts")}
    now = utc_now()
    for conflict in settled:
        if conflict.key in earlier:
            report.kept_earlier.append(conflict.line)
            continue
        # OR IGNORE: two sources of one merge may settle the same conflict (a profile both changed alike).
        conn.execute("INSERT OR IGNORE INTO merge_conflicts (conflict, line, reported_at) VALUES (?, ?, ?)",
                     (conflict.key, conflict.line, now))
        report.kept.append(conflict.line)


def _merge_revisions(
    conn: sqlite3.Connection, store: Store, snapshots: list[_Source], report: MergeReport, settled: list[Conflict]
) -> dict[Ref, int | None]:
    """Bring in the sources' revisions (see the module docstring); returns the destination's number
    of every incoming revision, None for one left out."""
    # A revision repeats one from another store (the destination's or another source's); repeats
    # within one store are its own history and stay.
    keys: dict[str, dict[tuple, tuple[int, int]]] = {}  # episode -> key -> (origin, revision there) of the first
    latest: dict[str, int] = {}
    for r in conn.execute("SELECT * FROM revisions ORDER BY episode_id, revision"):
        keys.setdefault(r["episode_id"], {}).setdefault(_revision_key(r), (-1, r["revision"]))
        latest[r["episode_id"]] = r["revision"]
    incoming = sorted(
        ((i, r) for i, source in enumerate(snapshots) for r in source.rows["revisions"]),
        key=lambda ir: (ir[1]["created_at"], ir[0], ir[1]["revision"]),
    )
    first: dict[Ref, Ref] = {}  # each incoming revision -> the first of its kind (itself when new)
    new: dict[Ref, sqlite3.Row] = {}  # the new ones, in the order they were made
    for i, r in incoming:
        ep, key, ref = r["episode_id"], _revision_key(r), (i, r["episode_id"], r["revision"])
        seen = keys.setdefault(ep, {})
        if key in seen and seen[key][0] != i:
            first[ref] = (seen[key][0], ep, seen[key][1])
            report.duplicate_revisions += 1
            continue
        seen.setdefault(key, (i, r["revision"]))
        first[ref] = ref
        new[ref] = r

    left_out = _over_persons_work(store, snapshots, first, new, report, settled)
    renumber: dict[Ref, int | None] = {}
    for ref in new:  # both passes before inserting, so that `based_on` always resolves
        if ref in left_out:
            renumber[ref] = None
        else:
            latest[ref[1]] = renumber[ref] = latest.get(ref[1], 0) + 1
    for ref, same in first.items():
        if same != ref:
            renumber[ref] = same[2] if same[0] == -1 else renumber[same]
    for (i, ep, revision), r in new.items():
        number = renumber[(i, ep, revision)]
        if number is None:
            continue
        based_on = r["based_on"] if not r["based_on"] else renumber.get((i, ep, r["based_on"]))
        record = json.loads(r["record_json"])
        record["revision"] = number
        conn.execute(
            "INSERT INTO revisions (episode_id, revision, based_on, status, author, settings_hash, record_json,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ep, number, based_on, r["status"], r["author"], r["settings_hash"], json.dumps(record), r["created_at"]),
        )
        report.revisions += 1
    return renumber


def _over_persons_work(
    store: Store, snapshots: list[_Source], first: dict[Ref, Ref], new: dict[Ref, sqlite3.Row],
    report: MergeReport, settled: list[Conflict],
) -> set[Ref]:
    """The new revisions to leave out: backends' revisions that would go over a person's work (see
    the module docstring), each counted in `report` and added to `settled`."""
    arriving: dict[str, list[Ref]] = {}  # episode -> its new revisions, oldest first
    for ref in new:
        arriving.setdefault(ref[1], []).append(ref)
    place = {ref: k for refs in arriving.values() for k, ref in enumerate(refs)}  # the destination's: -1, before all
    # Per episode the newest person's work: (saved, its place, why). A person's latest revision
    # outranks a draft (a save goes over a draft, as in the review app); the destination's work,
    # drafts included, is never gone over by a backend's revision brought in, so it counts as saved.
    newest: dict[str, tuple[bool, int, str]] = {}

    def note(ep: str, saved: bool, ref: Ref, why: str) -> None:
        work = (saved, place.get(first.get(ref, ref), -1), why)
        if ep in arriving and (ep not in newest or work[:2] > newest[ep][:2]):
            newest[ep] = work

    for ep, why in store.reviewed().items():
        note(ep, True, (-1, ep, 0), f"{why} in {store.path}")
    for i, source in enumerate(snapshots):
        for ep, work in source.work.items():
            # A draft on an episode with no revision yet: made on nothing, before all that arrives.
            note(ep, work.saved, (i, ep, work.latest) if work.latest else (-1, ep, 0), f"{work.why} in {source.path}")

    left_out: set[Ref] = set()
    for ep, (_, at, why) in newest.items():
        refs = arriving[ep]
        while len(refs) - 1 > at:
            dec = Decomposition.model_validate_json(new[refs[-1]]["record_json"])
            if not by_backend(dec):
                break
            i, _, revision = ref = refs.pop()
            left_out.add(ref)
            report.left_out_revisions += 1
            # The revision left out as merge tells revisions apart: the same in a copy of its store,
            # or made again on another machine.
            settled.append(Conflict(
                ("revision left out", ep, *_revision_key(new[ref])),
                f"{ep}: {why}; {dec.author}'s {dec.status.value.replace('_', ' ')} revision {revision}"
                f" of {snapshots[i].path} left out",
            ))
    return left_out


def _merge_reviews(conn, i: int, rows, renumber: dict[Ref, int | None], report: MergeReport) -> None:
    for r in rows:
        ref = (i, r["episode_id"], r["revision"])
        if ref not in renumber:
            raise MergeError(f"a review of episode {r['episode_id']} names revision {r['revision']}, which its store lacks")
        revision = renumber[ref]
        if revision is None:  # a review of a revision left out stays with it in its source
            continue
        values = (r["episode_id"], revision, r["reviewer"], r["verdict"], r["comment"], r["created_at"])
        if conn.execute(
            "SELECT 1 FROM reviews WHERE episode_id = ? AND revision = ? AND reviewer = ? AND verdict = ?"
            " AND comment IS ? AND created_at = ?",
            values,
        ).fetchone() is None:
            conn.execute(
                "INSERT INTO reviews (episode_id, revision, reviewer, verdict, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
            report.reviews += 1


def _merge_jobs(conn, src: Path, rows: dict, report: MergeReport) -> None:
    for r in rows["jobs"]:
        have = conn.execute("SELECT backend, settings_json FROM jobs WHERE job_id = ?", (r["job_id"],)).fetchone()
        if have is None:
            conn.execute("INSERT INTO jobs VALUES (?, ?, ?, ?)", tuple(r))
            report.jobs += 1
        elif tuple(have) != (r["backend"], r["settings_json"]):
            raise MergeError(f"{src}: job {r['job_id']} ran {r['backend']} with other settings than the destination's")
    for r in rows["job_items"]:
        have = conn.execute(
            "SELECT state, attempts, updated_at FROM job_items WHERE job_id = ? AND episode_id = ?",
            (r["job_id"], r["episode_id"]),
        ).fetchone()
        if have is None:
            conn.execute("INSERT INTO job_items VALUES (?, ?, ?, ?, ?, ?)", tuple(r))
            report.job_items += 1
        elif (_ITEM_RANK[r["state"]], r["updated_at"]) > (_ITEM_RANK[have["state"]], have["updated_at"]):
            conn.execute(
                "UPDATE job_items SET state = ?, attempts = ?, error = ?, updated_at = ? WHERE job_id = ? AND episode_id = ?",
                (r["state"], max(r["attempts"], have["attempts"]), r["error"], r["updated_at"], r["job_id"], r["episode_id"]),
            )
            report.job_items += 1


def _merge_ledger(conn, rows, report: MergeReport) -> None:
    columns = ("job_id", "episode_id", "model", "input_tokens", "output_tokens", "cost_usd", "cached", "created_at")
    for r in rows:
        values = tuple(r[c] for c in columns)
        if conn.execute(
            f"SELECT 1 FROM ledger WHERE {' AND '.join(f'{c} = ?' for c in columns)}", values
        ).fetchone() is None:
            conn.execute(f"INSERT INTO ledger ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
            report.ledger += 1


def _merge_profiles(conn, src: Path, rows, report: MergeReport, settled: list[Conflict]) -> None:
    for r in rows:
        have = conn.execute(
            "SELECT settings_json FROM profiles WHERE backend = ? AND name = ?", (r["backend"], r["name"])
        ).fetchone()
        if have is None:
            cols = r.keys()  # by name: a source from before the weights column has fewer
            conn.execute(f"INSERT INTO profiles ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(r))
            report.profiles += 1
        elif have[0] != r["settings_json"]:
            settled.append(Conflict(
                ("profile kept", r["backend"], r["name"], have[0], r["settings_json"]),
                f"{r['backend']} profile {r['name']!r}: {src} has other settings; the destination's kept",
            ))


def _merge_newest(conn, table: str, key: tuple[str, ...], rows, report: MergeReport) -> None:
    """Rows keyed by `key` with an `updated_at`: absent ones added, newer ones replace."""
    where = " AND ".join(f"{k} = ?" for k in key)
    for r in rows:
        r = dict(r)
        have = conn.execute(f"SELECT updated_at FROM {table} WHERE {where}", tuple(r[k] for k in key)).fetchone()
        if have is not None and have[0] >= r["updated_at"]:
            continue
        conn.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' * len(r))})", tuple(r.values())
        )
        setattr(report, table, getattr(report, table) + 1)
