"""`atom-curate merge` on real SQLite stores: a base store copied to two shard machines, each of
which proposes for its half of the fixture, then brought back together."""

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.ui import store_tables as review_tables
from atomvla.annotate.backends import get_backend
from atomvla.curate.cli import app
from atomvla.curate.episode import Episode
from atomvla.curate.merge import MergeError, merge_stores
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta, Status

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"


@pytest.fixture(scope="module")
def metas() -> list[EpisodeMeta]:
    return [m for m in open_source(str(FIXTURE)).scan() if isinstance(m, EpisodeMeta)]


@pytest.fixture(scope="module")
def proposals(metas) -> dict[str, Decomposition]:
    heuristic = get_backend("heuristic")()
    return {m.episode_id: heuristic.propose(Episode(m)) for m in metas}


def copy_store(src: Path, dest: Path) -> Path:
    """What a team does before a sharded run: the same store on every machine (SQLite backup,
    which includes what is still in the WAL)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dest) as b:
        a.backup(b)
    return dest


def add_ledger(store: Path, job: str, episode_id: str, tokens: int) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute(
            "INSERT INTO ledger (job_id, episode_id, model, input_tokens, output_tokens, cost_usd, cached, created_at)"
            " VALUES (?, ?, 'gpt-4o', ?, 50, 0.01, 0, ?)",
            (job, episode_id, tokens, datetime.now(timezone.utc).isoformat()),
        )


def shard(path: Path, ids: list[str], proposals: dict[str, Decomposition], job: str = "job-1") -> Store:
    """One machine's run: a job over its episodes, a proposal and a ledger row for each."""
    store = Store(path)
    annotate_tables.start_job(store, job, "heuristic", {"window_s": 0.3}, ids)
    for episode_id in ids:
        store.add_revision(proposals[episode_id])
        annotate_tables.mark_job_item(store, job, episode_id, "done")
        add_ledger(path, job, episode_id, 1000)
    return store


@pytest.fixture
def stores(tmp_path, metas, proposals):
    """base (episodes, a truth revision for the first episode, a profile), and shards a and b
    copied from it; both shards also proposed for episode 0 (the same proposal, a duplicate)."""
    base = Store(tmp_path / "base.sqlite")
    base.upsert_episodes(metas)
    truth = proposals[metas[0].episode_id].model_copy(update={"author": "truth", "status": Status.accepted})
    base.add_revision(truth)
    annotate_tables.save_profile(base, "heuristic", "lab", {"window_s": 0.3})
    base.close()
    ids = [m.episode_id for m in metas]
    a = shard(copy_store(tmp_path / "base.sqlite", tmp_path / "a.sqlite"), ids[0::2], proposals)
    b = shard(copy_store(tmp_path / "base.sqlite", tmp_path / "b.sqlite"), [ids[0], *ids[1::2]], proposals)
    # An annotator on machine a accepts episode 2's proposal with an edit, reviewed there.
    first = a.latest(ids[2])
    edited = first.model_copy(update={"author": "alice", "status": Status.accepted, "note": "checked"})
    stored = a.add_revision(edited, based_on=first.revision)
    review_tables.add_review(a, ids[2], stored.revision, "bob", "approve", "looks right")
    review_tables.save_draft(a, ids[4], "alice", a.latest(ids[4]).revision, {"subtasks": [], "note": "half done"})
    annotate_tables.add_batch(b, "batch-1", "job-1", "submitted", {"episodes": 3})
    annotate_tables.save_profile(b, "heuristic", "lab", {"window_s": 0.4})  # recalibrated on machine b
    a.close(), b.close()
    return tmp_path / "base.sqlite", tmp_path / "a.sqlite", tmp_path / "b.sqlite"


def snapshot(path: Path) -> dict:
    with sqlite3.connect(path) as conn:
        return {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}"))) for t in ("episodes", "revisions", "reviews", "job_items", "ledger")}


def test_shards_merge_into_the_base_without_duplicates(stores, metas, proposals):
    base, a, b = stores
    report = merge_stores([a, b], base)
    ids = [m.episode_id for m in metas]
    store = Store(base)
    assert report.episodes == 0  # every episode was already in the base
    # One heuristic proposal per episode and alice's edit. Duplicates: the base's truth revision
    # copied to both shards, and episode 0's proposal made on both.
    assert report.revisions == len(ids) + 1 and report.duplicate_revisions == 3
    for episode_id in ids:
        history = store.history(episode_id)
        assert [d.revision for d in history] == list(range(1, len(history) + 1))
        assert sum(d.author == "heuristic" for d in history) == 1
    assert [d.author for d in store.history(ids[0])] == ["truth", "heuristic"]
    alice = store.latest(ids[2])
    assert (alice.author, alice.note, alice.revision) == ("alice", "checked", 2)
    with sqlite3.connect(base) as conn:
        based_on = conn.execute("SELECT based_on FROM revisions WHERE episode_id = ? AND revision = 2", (ids[2],)).fetchone()
    assert based_on == (1,)  # renumbered with the revision it was based on
    assert [(r["revision"], r["reviewer"]) for r in review_tables.reviews(store, ids[2])] == [(2, "bob")]
    assert sorted(annotate_tables.job_items(store, "job-1", "done")) == sorted(ids)
    draft = review_tables.draft(store, ids[4], "alice")
    assert draft["based_on"] == 1 and draft["record"]["note"] == "half done"
    assert [(x["batch_id"], x["state"]) for x in annotate_tables.batches(store)] == [("batch-1", "submitted")]
    assert annotate_tables.profile(store, "heuristic", "lab")["settings"] == {"window_s": 0.3}
    assert report.kept == [f"heuristic profile 'lab': {b} has other settings; the destination's kept"]
    with sqlite3.connect(base) as conn:
        assert conn.execute("SELECT count(*), sum(input_tokens) FROM ledger").fetchone() == (len(ids) + 1, 1000 * (len(ids) + 1))

    # Merging again adds nothing.
    before = snapshot(base)
    again = merge_stores([a, b], base)
    assert (again.revisions, again.reviews, again.ledger, again.episodes) == (0, 0, 0, 0)
    assert snapshot(base) == before


def test_merge_into_a_new_store_holds_the_same_decompositions(stores, tmp_path, metas):
    base, a, b = stores
    merge_stores([a, b], base)
    fresh = tmp_path / "fresh.sqlite"
    report = merge_stores([a, b], fresh)
    assert report.episodes == len(metas)
    old, new = Store(base), Store(fresh)
    for m in metas:
        assert [(d.author, d.subtasks, d.revision) for d in old.history(m.episode_id)] == [
            (d.author, d.subtasks, d.revision) for d in new.history(m.episode_id)
        ]
    assert annotate_tables.profile(new, "heuristic", "lab")["settings"] == {"window_s": 0.3}


def test_repeats_within_one_store_are_its_history(tmp_path, metas, proposals):
    one = Store(tmp_path / "one.sqlite")
    one.upsert_episodes(metas[:1])
    dec = proposals[metas[0].episode_id]
    one.add_revisions([dec, dec.model_copy(update={"author": "alice"}), dec])  # proposed, edited, proposed again
    one.close()
    report = merge_stores([tmp_path / "one.sqlite"], tmp_path / "fresh.sqlite")
    assert (report.revisions, report.duplicate_revisions) == (3, 0)
    assert [d.author for d in Store(tmp_path / "fresh.sqlite").history(metas[0].episode_id)] == ["heuristic", "alice", "heuristic"]


def test_incompatible_stores_are_refused_and_nothing_is_written(stores, tmp_path, metas):
    base, a, b = stores
    before = snapshot(base)
    # Another dataset under the same episode ids (another frame count): refused.
    other = Store(tmp_path / "other.sqlite")
    other.upsert_episodes([metas[0].model_copy(update={"n_frames": metas[0].n_frames + 5})])
    other.close()
    with pytest.raises(MergeError, match=rf"episode {metas[0].episode_id} has {metas[0].n_frames + 5} frames"):
        merge_stores([a, tmp_path / "other.sqlite"], base)
    # The same job id run with other settings.
    c = Store(copy_store(a, tmp_path / "c.sqlite"))
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("UPDATE jobs SET settings_json = '{\"window_s\": 0.5}'")
    c.close()
    with pytest.raises(MergeError, match="job job-1 ran heuristic with other settings"):
        merge_stores([a, tmp_path / "c.sqlite"], base)
    assert snapshot(base) == before

    (tmp_path / "notes.txt").write_text("not a database")
    with pytest.raises(MergeError, match="not an atomvla store"):
        merge_stores([tmp_path / "notes.txt"], base)
    with sqlite3.connect(tmp_path / "newer.sqlite") as conn:
        conn.execute(f"PRAGMA application_id = {0x41544F4D}")
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(MergeError, match="schema version 99.*upgrade atomvla"):
        merge_stores([tmp_path / "newer.sqlite"], base)
    with pytest.raises(MergeError, match="destination store itself"):
        merge_stores([a, base], base)
    with pytest.raises(MergeError, match="no such store"):
        merge_stores([tmp_path / "missing.sqlite"], base)
    assert snapshot(base) == before


def test_cli(stores, tmp_path):
    base, a, b = stores
    runner = CliRunner()
    result = runner.invoke(app, ["merge", str(a), str(b), "--store", str(base)])
    assert result.exit_code == 0, result.output
    assert "merged 2 store(s)" in result.output
    result = runner.invoke(app, ["merge", str(tmp_path / "missing.sqlite"), "--store", str(base)])
    assert result.exit_code == 2
    assert "missing.sqlite: no such store" in result.output


def test_a_sharded_run_merged_from_the_command_line(tmp_path, metas):
    """The workflow: one store copied to two machines, `run --shard i/2` on each, `merge`."""
    from atomvla.annotate.cli import app as annotate

    runner = CliRunner()
    base = tmp_path / "base.sqlite"
    assert runner.invoke(app, ["import", str(FIXTURE), "--store", str(base)]).exit_code == 0
    shards = [copy_store(base, tmp_path / f"shard{i}.sqlite") for i in range(2)]
    for i, shard_store in enumerate(shards):
        result = runner.invoke(annotate, ["run", "--store", str(shard_store), "--backend", "heuristic", "--shard", f"{i}/2"])
        assert result.exit_code == 0, result.output
    done = [set(Store(s).latest_all(author="heuristic")) for s in shards]
    assert done[0] and done[1] and not done[0] & done[1]  # the shards split the episodes

    result = runner.invoke(app, ["merge", *map(str, shards), "--store", str(base)])
    assert result.exit_code == 0, result.output
    merged = Store(base)
    assert set(merged.latest_all(author="heuristic")) == {m.episode_id for m in metas}
    assert all(len(merged.history(m.episode_id)) == 1 for m in metas)
    with sqlite3.connect(base) as conn:
        jobs = conn.execute("SELECT job_id FROM jobs").fetchall()
        states = conn.execute("SELECT state, count(*) FROM job_items GROUP BY state").fetchall()
    assert len(jobs) == 1 and states == [("done", len(metas))]


def _beside(path: Path) -> dict[str, bytes]:
    """Every file of the store: the store itself and any `-wal`/`-shm`/journal next to it."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))}


def test_sources_are_read_truly_read_only(stores, tmp_path):
    base, a, b = stores
    for s in (a, b):  # a store nobody has open is the file alone
        sqlite3.connect(s).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
        for leftover in (s.with_name(s.name + "-wal"), s.with_name(s.name + "-shm")):
            leftover.unlink(missing_ok=True)
    before = {s: _beside(s) for s in (a, b)}
    assert all(list(files) == [s.name] for s, files in before.items())
    merge_stores([a, b], tmp_path / "merged.sqlite")
    assert {s: _beside(s) for s in (a, b)} == before  # same bytes, nothing created beside them


def test_a_source_with_an_open_writer_is_read_with_its_wal_and_left_as_it_was(stores, tmp_path, proposals):
    base, a, b = stores
    writer = Store(a)  # another process still has it open: its last commit may be in the -wal only
    episode_id = next(iter(proposals))
    note = proposals[episode_id].model_copy(update={"author": "carol", "note": "only in the wal"})
    writer.add_revision(note)
    before = _beside(a)
    assert sorted(before) == [a.name, a.name + "-shm", a.name + "-wal"]
    merged = merge_stores([a], tmp_path / "merged.sqlite")
    assert merged.revisions > 0
    assert Store(tmp_path / "merged.sqlite").latest(episode_id, author="carol").note == "only in the wal"
    after = _beside(a)
    assert sorted(after) == sorted(before)  # nothing created
    # The store and its -wal are byte for byte the same; the -shm is the readers' shared memory.
    assert {k: v for k, v in after.items() if not k.endswith("-shm")} == {k: v for k, v in before.items() if not k.endswith("-shm")}
    writer.close()
