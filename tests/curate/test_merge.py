"""`atom-curate merge` on real SQLite stores: a base store copied to two shard machines, each of
which proposes for its half of the fixture, then brought back together; and copies where a
backend proposed over a person's work, which the merge does not let go over it."""

import json
import sqlite3
from contextlib import closing
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
from atomvla.curate.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, PersonsWork, Store, persons_work
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
    copied from it; both shards also proposed for episode 0 (the same proposal, a duplicate) over
    its accepted truth revision, as `run --include-reviewed` does."""
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
    # One heuristic proposal per episode but episode 0, and alice's edit. Episode 0's proposal
    # would go over the base's accepted truth: left out. Duplicates: the base's truth revision
    # copied to both shards, and episode 0's proposal made on both.
    assert report.revisions == len(ids) and report.duplicate_revisions == 3 and report.left_out_revisions == 1
    for episode_id in ids:
        history = store.history(episode_id)
        assert [d.revision for d in history] == list(range(1, len(history) + 1))
        assert sum(d.author == "heuristic" for d in history) == (episode_id != ids[0])
    assert [d.author for d in store.history(ids[0])] == ["truth"]
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
    assert report.kept == [
        f"{ids[0]}: reviewed by truth (accepted) in {base}; heuristic's proposed revision 2 of {a} left out",
        f"heuristic profile 'lab': {b} has other settings; the destination's kept",
    ]
    with sqlite3.connect(base) as conn:
        assert conn.execute("SELECT count(*), sum(input_tokens) FROM ledger").fetchone() == (len(ids) + 1, 1000 * (len(ids) + 1))

    # Merging again adds nothing (and leaves the same proposal out): every revision of a and b is
    # counted as already merged or left out.
    assert not report.nothing_new
    before = snapshot(base)
    again = merge_stores([a, b], base)
    assert (again.revisions, again.reviews, again.ledger, again.episodes) == (0, 0, 0, 0)
    assert again.nothing_new and again.left_out_revisions == 1
    assert again.duplicate_revisions + again.left_out_revisions == sum(len(Store(s).history(i)) for s in (a, b) for i in ids)
    assert snapshot(base) == before
    # The same conflicts, settled as before: reported by the first merge, not again.
    assert (again.kept, again.kept_earlier) == ([], report.kept)


def test_merge_into_a_new_store_holds_the_same_decompositions(stores, tmp_path, metas):
    base, a, b = stores
    original = copy_store(base, tmp_path / "original.sqlite")
    merge_stores([a, b], base)
    fresh = tmp_path / "fresh.sqlite"
    report = merge_stores([original, a, b], fresh)  # the base as a source: its truth is kept the same way
    assert report.episodes == len(metas) and report.left_out_revisions == 1
    old, new = Store(base), Store(fresh)
    for m in metas:
        assert [(d.author, d.subtasks, d.revision) for d in old.history(m.episode_id)] == [
            (d.author, d.subtasks, d.revision) for d in new.history(m.episode_id)
        ]
    assert annotate_tables.profile(new, "heuristic", "lab")["settings"] == {"window_s": 0.3}
    # The shards alone: in both, the proposal is the latest over the truth (made on purpose there),
    # and no store of the merge holds the truth as its latest, so nothing is left out.
    shards_only = merge_stores([a, b], tmp_path / "shards.sqlite")
    assert shards_only.left_out_revisions == 0
    assert [d.author for d in Store(tmp_path / "shards.sqlite").history(metas[0].episode_id)] == ["truth", "heuristic"]


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


# -- a backend's revision brought in never goes over a person's work ---------------------------


def run(store: Path, *args: str) -> None:
    from atomvla.annotate.cli import app as annotate

    result = CliRunner().invoke(annotate, ["run", "--store", str(store), "--backend", "heuristic", "--episodes", "0", *args])
    assert result.exit_code == 0, result.output


def proposed_then(tmp_path: Path, name: str, author: str, status: Status) -> tuple[Path, str]:
    """A store of the fixture where the heuristic proposed episode 0 and `author` saved it with `status`."""
    path = tmp_path / name
    assert CliRunner().invoke(app, ["import", str(FIXTURE), "--store", str(path)]).exit_code == 0
    run(path)
    store = Store(path)
    episode_id = next(iter(store.latest_all()))
    proposal = store.latest(episode_id)
    store.add_revision(proposal.model_copy(update={"author": author, "status": status}), based_on=proposal.revision)
    store.close()
    return path, episode_id


def test_a_copys_proposal_does_not_go_over_an_accept(tmp_path):
    """The defect: B, a copy of A, proposed again over ann's accept; merged into A, that proposal
    became A's latest revision and exports of accepted episodes left the episode out."""
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.accepted)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")
    assert Store(b).latest(episode_id).author == "heuristic"

    result = CliRunner().invoke(app, ["merge", str(b), "--store", str(a)])
    assert result.exit_code == 0, result.output
    assert (f"kept {episode_id}: reviewed by ann (accepted) in {a}; heuristic's proposed revision 3 of {b} left out"
            in " ".join(result.output.split()))
    assert [(d.author, d.status) for d in Store(a).history(episode_id)] == [
        ("heuristic", Status.proposed), ("ann", Status.accepted)]
    out = tmp_path / "accepted.jsonl"
    result = CliRunner().invoke(app, ["export", str(out), "--status", "accepted", "--store", str(a)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["episode_id"] for line in out.read_text().splitlines()] == [episode_id]

    # Merged again: one line saying nothing new was merged, not the kept line again (--verbose lists it).
    again = CliRunner().invoke(app, ["merge", str(b), "--store", str(a)])
    said = " ".join(again.output.split())
    assert again.exit_code == 0, again.output
    assert said == (f"nothing new merged into {a}: 2 revision(s) already merged, 1 left out over a person's work "
                    "(--verbose lists what was kept)")
    verbose = CliRunner().invoke(app, ["merge", str(b), "--store", str(a), "--verbose"])
    assert verbose.exit_code == 0 and " ".join(verbose.output.split()) == (
        f"nothing new merged into {a}: 2 revision(s) already merged, 1 left out over a person's work kept {episode_id}: "
        f"reviewed by ann (accepted) in {a}; heuristic's proposed revision 3 of {b} left out")

    # The same into a new store from both: A, a source here, keeps its accept the same way.
    report = merge_stores([a, b], tmp_path / "fresh.sqlite")
    assert report.left_out_revisions == 1
    assert Store(tmp_path / "fresh.sqlite").latest(episode_id).author == "ann"


def test_what_was_made_on_a_left_out_revision(tmp_path):
    """A review of the left-out proposal stays in its source; a draft begun on it comes along stale
    (the review app then refuses to save it: ann's accept was saved first)."""
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.accepted)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")
    store_b = Store(b)
    review_tables.add_review(store_b, episode_id, 3, "dan", "flag", "boundary late")
    review_tables.save_draft(store_b, episode_id, "carol", 3, {"subtasks": [], "note": "moving the boundary"})
    report = merge_stores([b], a)
    assert (report.revisions, report.reviews, report.left_out_revisions) == (0, 0, 1)
    store = Store(a)
    assert store.latest(episode_id).author == "ann" and review_tables.reviews(store, episode_id) == []
    assert review_tables.draft(store, episode_id, "carol")["based_on"] is None


def test_a_proposal_a_person_saved_over_in_the_source_comes_along(tmp_path):
    """Two annotators: B proposed again over ann's accept, then bob accepted that proposal; all of
    it merges, bob's accept (the newest person's revision) the latest."""
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.accepted)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")
    store_b = Store(b)
    bob = store_b.latest(episode_id).model_copy(update={"author": "bob", "status": Status.accepted})
    store_b.add_revision(bob, based_on=3)
    report = merge_stores([b], a)
    assert (report.revisions, report.left_out_revisions, report.kept) == (2, 0, [])
    assert [d.author for d in Store(a).history(episode_id)] == ["heuristic", "ann", "heuristic", "bob"]
    with sqlite3.connect(a) as conn:
        assert conn.execute("SELECT based_on FROM revisions WHERE revision = 4").fetchone() == (3,)


def test_a_draft_in_the_destination_is_not_gone_over(tmp_path):
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.needs_review)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")  # B's own decision, over ann's save there
    store = Store(a)
    # In A, the heuristic's newer settings proposed again on purpose over ann's save, then carol began a draft.
    run(a, "--include-reviewed", "window_s=0.4")
    review_tables.save_draft(store, episode_id, "carol", 3, {"subtasks": [], "note": "half done"})
    assert episode_id in store.reviewed() and store.latest(episode_id).author == "heuristic"

    report = merge_stores([b], a)
    assert report.left_out_revisions == 1 and report.revisions == 0
    assert report.kept == [f"{episode_id}: draft by carol in {a}; heuristic's proposed revision 3 of {b} left out"]
    assert [d.revision for d in store.history(episode_id)] == [1, 2, 3]
    assert review_tables.draft(store, episode_id, "carol")["based_on"] == store.latest(episode_id).revision == 3


def test_a_sources_persons_work_is_read_without_writing_to_it(tmp_path, proposals):
    """merge reads a source's people's work with the store's own rule (`persons_work`, which
    `Store.reviewed` calls) over a read-only connection: a save, drafts by two people, none written."""
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.needs_review)
    store = Store(a)
    others = [m.episode_id for m in store.episodes() if m.episode_id != episode_id][:2]
    store.add_revision(proposals[others[0]])
    for author in ("carol", "dan"):
        review_tables.save_draft(store, others[0], author, 1, {"subtasks": [], "note": "half done"})
    review_tables.save_draft(store, others[1], "erin", 0, {"subtasks": [], "note": "before any proposal"})
    reviewed = store.reviewed()
    store.close()
    sqlite3.connect(a).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    before = _beside(a)
    with closing(sqlite3.connect(f"{a.resolve().as_uri()}?immutable=1", uri=True)) as conn:
        work = persons_work(conn)
    assert _beside(a) == before
    assert {ep: w.why for ep, w in work.items()} == reviewed
    assert work[episode_id] == PersonsWork("reviewed by ann (needs review)", True, 2)
    assert work[others[0]].saved is False and work[others[0]].latest == 1
    assert sorted(work[others[0]].why.removeprefix("draft by ").split(", ")) == ["carol", "dan"]
    assert work[others[1]] == PersonsWork("draft by erin", False, 0)


def test_a_persons_accept_from_a_source_goes_over_a_proposal_in_the_destination(tmp_path):
    a = tmp_path / "a.sqlite"
    assert CliRunner().invoke(app, ["import", str(FIXTURE), "--store", str(a)]).exit_code == 0
    run(a)
    b = copy_store(a, tmp_path / "b.sqlite")
    store_b = Store(b)
    episode_id = next(iter(store_b.latest_all()))
    proposal = store_b.latest(episode_id)
    store_b.add_revision(proposal.model_copy(update={"author": "ann", "status": Status.accepted}), based_on=1)
    run(a, "pick_end=lifted")  # A, not reviewed there, proposed again with other settings

    report = merge_stores([b], a)
    assert (report.revisions, report.left_out_revisions, report.kept) == (1, 0, [])
    assert [(d.author, d.revision) for d in Store(a).history(episode_id)] == [("heuristic", 1), ("heuristic", 2), ("ann", 3)]


def test_shards_of_proposals_only_merge_as_before(tmp_path):
    base = tmp_path / "base.sqlite"
    assert CliRunner().invoke(app, ["import", str(FIXTURE), "--store", str(base)]).exit_code == 0
    shards = [copy_store(base, tmp_path / f"shard{i}.sqlite") for i in range(2)]
    run(shards[0])
    run(shards[1], "pick_end=lifted")
    report = merge_stores(shards, base)
    assert (report.revisions, report.duplicate_revisions, report.left_out_revisions, report.kept) == (2, 0, 0, [])
    history = Store(base).history(next(iter(Store(base).latest_all())))
    assert [d.provenance.settings_hash for d in history] == [
        Store(s).latest(history[0].episode_id).provenance.settings_hash for s in shards]


def test_a_refused_merge_with_a_proposal_to_leave_out_writes_nothing(tmp_path):
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.accepted)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")
    c = copy_store(a, tmp_path / "c.sqlite")
    with sqlite3.connect(c) as conn:  # the same job id run with other settings: refused
        conn.execute("UPDATE jobs SET settings_json = '{\"window_s\": 0.5}'")
    before = snapshot(a)
    with pytest.raises(MergeError, match="ran heuristic with other settings"):
        merge_stores([b, c], a)
    assert snapshot(a) == before
    report = merge_stores([b], a)  # what the refused merge would have left out, reported now: it recorded nothing
    assert report.left_out_revisions == 1 and len(report.kept) == 1 and report.kept_earlier == []


# -- each conflict is reported once ------------------------------------------------------------


def merge_cli(*args) -> str:
    result = CliRunner().invoke(app, ["merge", *map(str, args)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_conflict_is_listed_once_though_later_merges_bring_something_new(tmp_path, proposals):
    """The defect: every merge that brought something printed again the kept lines of conflicts an
    earlier merge of the same peer had reported."""
    a, episode_id = proposed_then(tmp_path, "a.sqlite", "ann", Status.accepted)
    b = copy_store(a, tmp_path / "b.sqlite")
    run(b, "--include-reviewed", "pick_end=lifted")
    kept = f"kept {episode_id}: reviewed by ann (accepted) in {a}; heuristic's proposed revision 3 of {b} left out"
    assert kept in merge_cli(b, "--store", a)

    others = [e for e in proposals if e != episode_id]
    Store(b).add_revision(proposals[others[0]])  # b proposes for another episode: something new
    said = merge_cli(b, "--store", a)
    assert "merged 1 store(s)" in said and kept not in said
    assert said.endswith(f"1 conflict(s) settled as an earlier merge into {a} reported them, not listed again "
                         "(--verbose lists them)")
    assert Store(a).latest(others[0]).author == "heuristic"

    Store(b).add_revision(proposals[others[1]])
    verbose = merge_cli(b, "--store", a, "--verbose")
    assert "merged 1 store(s)" in verbose and verbose.endswith(kept) and "not listed again" not in verbose

    # The same peer elsewhere (a copy under another name): the same conflict, not reported again.
    c = copy_store(b, tmp_path / "c.sqlite")
    Store(c).add_revision(proposals[others[2]])
    report = merge_stores([c], a)
    assert report.revisions == 1 and report.kept == []
    assert report.kept_earlier == [kept.removeprefix("kept ").replace(str(b), str(c))]
    # That record is a's own: a store merged from a starts its own.
    fresh = tmp_path / "fresh.sqlite"
    assert _rows(a)["merge_conflicts"] and merge_stores([a], fresh).revisions > 0
    assert _rows(fresh)["merge_conflicts"] == []


def test_a_profile_changed_again_is_a_new_conflict(stores):
    base, a, b = stores
    line = f"heuristic profile 'lab': {b} has other settings; the destination's kept"
    assert line in merge_stores([a, b], base).kept
    assert merge_stores([b], base).kept == []  # b's proposal for episode 0 is a's, made again: reported with a's
    annotate_tables.save_profile(Store(b), "heuristic", "lab", {"window_s": 0.5})  # recalibrated again on b
    again = merge_stores([b], base)
    assert again.kept == [line] and len(again.kept_earlier) == 1
    assert annotate_tables.profile(Store(base), "heuristic", "lab")["settings"] == {"window_s": 0.3}


def _rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the store."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}


def test_a_version_3_store_migrates_keeping_everything_and_merges_as_it_is(stores, tmp_path):
    """A store made before merge recorded its reports (schema version 3): as a source it is merged
    without opening it first, unchanged; opened, it gains the record and loses nothing."""
    base, a, b = stores
    old = tmp_path / "old.sqlite"
    with closing(sqlite3.connect(old)) as conn:
        conn.executescript(f"{''.join(MIGRATIONS[:3])}\nPRAGMA application_id={APPLICATION_ID}; PRAGMA user_version=3;")
        conn.execute("ATTACH ? AS current", (str(a),))  # a's rows (episodes, revisions, reviews, a job, a draft ...)
        for table in _rows(old):
            conn.execute(f"INSERT INTO {table} SELECT * FROM current.{table}")
        conn.commit()
    assert SCHEMA_VERSION == 4 and "merge_conflicts" not in _rows(old)
    before = _beside(old)

    merged = merge_stores([old], tmp_path / "merged.sqlite")
    assert merged.revisions == sum(len(Store(a).history(m.episode_id)) for m in Store(a).episodes())
    assert _beside(old) == before  # read as it is: not migrated, nothing beside it

    rows = _rows(old)
    Store(old).close()  # opening migrates
    with closing(sqlite3.connect(old)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    assert _rows(old) == {**rows, "merge_conflicts": []}
    report = merge_stores([b], old)  # and merges into it: the profile conflict is recorded there
    assert report.kept == [f"heuristic profile 'lab': {b} has other settings; the destination's kept"]
    assert merge_stores([b], old).kept_earlier == report.kept
