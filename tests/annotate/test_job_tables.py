import sqlite3

from atomvla.annotate import store_tables
from atomvla.curate.store import APPLICATION_ID, MIGRATIONS, Store
from atomvla.schemas import EpisodeMeta


def meta(i: int) -> EpisodeMeta:
    return EpisodeMeta(
        episode_id=f"ds/{i}", dataset="ds", episode_index=i, source="/data/ds",
        source_format="lerobot_v3", fps=20, n_frames=40, task="pick up the cup",
    )


def test_job_state_resumes_without_adding_items_twice(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.upsert_episodes([meta(0), meta(1)])
    store_tables.start_job(store, "job1", "heuristic", {"window": 5}, ["ds/0", "ds/1"])
    store_tables.mark_job_item(store, "job1", "ds/0", "done")
    store_tables.start_job(store, "job1", "heuristic", {"window": 5}, ["ds/0", "ds/1"])  # resuming
    assert store_tables.job_items(store, "job1", "pending") == ["ds/1"]
    assert store_tables.job_items(store, "job1", "done") == ["ds/0"]
    store_tables.mark_job_item(store, "job1", "ds/1", "failed", "episode ds/1: no gripper signal")
    assert store_tables.job_errors(store, "job1") == {"ds/1": "episode ds/1: no gripper signal"}


def test_profile_weights_round_trip_and_a_version_2_store_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(f"{MIGRATIONS[0]}\n{MIGRATIONS[1]}\nPRAGMA application_id={APPLICATION_ID}; PRAGMA user_version=2;")
    conn.execute("INSERT INTO profiles VALUES ('heuristic', 'old', '{}', NULL, 'ann', '2026-01-01')")
    conn.commit()
    conn.close()
    store = Store(path, create=False)
    assert store_tables.profile(store, "heuristic", "old")["weights"] is None
    blob = bytes(range(256)) * 10
    store_tables.save_profile(store, "learned", "team", {"lr": 1e-3}, author="ann", weights=blob)
    assert store_tables.profile(store, "learned", "team")["weights"] == blob
    assert all(p["weights"] is None for p in store_tables.profiles(store))  # listings never load the blobs
