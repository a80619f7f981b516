import sqlite3
import threading

import pytest

from atomvla.curate.errors import StaleRevisionError, StoreError
from atomvla.curate.store import SCHEMA_VERSION, Store
from atomvla.schemas import Decomposition, EpisodeMeta, Provenance, Status, Subtask


def meta(i: int, n_frames: int = 40, dataset: str = "ds") -> EpisodeMeta:
    return EpisodeMeta(
        episode_id=f"{dataset}/{i}", dataset=dataset, episode_index=i, source="/data/ds",
        source_format="lerobot_v3", fps=20, n_frames=n_frames, task="pick up the cup",
    )


def dec(episode_id: str, boundary: int, author: str = "heuristic", n_frames: int = 40, **kw) -> Decomposition:
    return Decomposition(
        episode_id=episode_id, n_frames=n_frames, author=author,
        subtasks=[Subtask(start_frame=0, end_frame=boundary, instruction="pick up the cup", skill="pick"),
                  Subtask(start_frame=boundary, end_frame=n_frames, instruction="place the cup", skill="place")],
        **kw,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.upsert_episodes([meta(0), meta(1)])
    return s


def test_store_is_wal_and_versioned(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_episode_index_round_trip(store):
    assert [m.episode_id for m in store.episodes()] == ["ds/0", "ds/1"]
    assert store.episode("ds/1") == meta(1)
    with pytest.raises(KeyError, match="no episode 'ds/9'"):
        store.episode("ds/9")


def test_revisions_are_append_only_and_restorable(store):
    r1 = store.add_revision(dec("ds/0", 10))
    r2 = store.add_revision(dec("ds/0", 20, author="ann", status=Status.accepted), based_on=1)
    assert (r1.revision, r2.revision) == (1, 2)
    assert [d.boundaries for d in store.history("ds/0")] == [[10], [20]]
    r3 = store.restore("ds/0", 1, author="ann", based_on=2)
    assert r3.revision == 3 and r3.boundaries == [10] and "restored from revision 1" in r3.note
    assert len(store.history("ds/0")) == 3  # nothing overwritten
    assert store.latest("ds/0").revision == 3
    assert store.latest("ds/0", author="heuristic").revision == 1


def test_stale_edit_is_refused_and_changes_nothing(store):
    store.add_revision(dec("ds/0", 10))
    store.add_revision(dec("ds/0", 12, author="alice"), based_on=1)
    with pytest.raises(StaleRevisionError, match="based on revision 1, but revision 2 has been saved"):
        store.add_revision(dec("ds/0", 14, author="bob"), based_on=1)
    assert [d.author for d in store.history("ds/0")] == ["heuristic", "alice"]


def test_concurrent_editors_on_separate_connections(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).upsert_episodes([meta(0)])
    Store(path).add_revision(dec("ds/0", 10))
    results: list[str] = []
    barrier = threading.Barrier(8)

    def edit(k: int) -> None:
        s = Store(path)  # each annotator opens the store on their own
        barrier.wait()
        try:
            s.add_revision(dec("ds/0", 10 + k, author=f"a{k}"), based_on=1)
            results.append("ok")
        except StaleRevisionError:
            results.append("stale")

    threads = [threading.Thread(target=edit, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["stale"] * 7  # exactly one edit based on revision 1 wins
    assert len(Store(path).history("ds/0")) == 2


def test_batch_of_revisions_is_all_or_nothing(store):
    with pytest.raises(KeyError, match="no episode 'ds/7'"):
        store.add_revisions([dec("ds/0", 10), dec("ds/7", 10)])
    assert store.history("ds/0") == []


def test_revision_with_wrong_frame_count_is_refused(store):
    with pytest.raises(ValueError, match="decomposition is for 50 frames, the episode has 40"):
        store.add_revision(dec("ds/0", 10, n_frames=50))


def test_reimport_keeps_revisions_but_refuses_a_changed_length(store):
    store.add_revision(dec("ds/0", 10))
    refused = store.upsert_episodes([meta(0, n_frames=41), meta(1, n_frames=41)])
    assert list(refused) == ["ds/0"] and "revision(s) made for 40 frames" in refused["ds/0"]
    assert store.episode("ds/0").n_frames == 40 and store.episode("ds/1").n_frames == 41
    assert len(store.history("ds/0")) == 1


def test_latest_all_filters_by_author_status_and_settings(store):
    prov = Provenance(backend="heuristic", settings_hash="abc")
    store.add_revision(dec("ds/0", 10, provenance=prov))
    store.add_revision(dec("ds/1", 10, provenance=prov))
    store.add_revision(dec("ds/1", 11, author="ann", status=Status.accepted))
    assert set(store.latest_all(author="heuristic", settings_hash="abc")) == {"ds/0", "ds/1"}
    assert set(store.latest_all(settings_hash="other")) == set()
    assert set(store.latest_all(status=Status.accepted)) == {"ds/1"}
    assert set(store.latest_all(status=Status.proposed)) == {"ds/0"}


def test_file_that_is_not_a_store_is_refused_untouched(tmp_path):
    junk = tmp_path / "notes.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    before = junk.read_bytes()
    with pytest.raises(StoreError, match="notes.sqlite: not an atomvla store"):
        Store(junk)
    assert junk.read_bytes() == before


def test_foreign_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        Store(other)
    assert other.read_bytes() == before  # not even switched to WAL mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this atomvla understands"):
        Store(path)


def test_missing_store_is_not_created_when_asked_not_to(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()
