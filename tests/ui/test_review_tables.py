import pytest

from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta, Subtask
from atomvla.ui import store_tables


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    s.upsert_episodes([EpisodeMeta(
        episode_id="ds/0", dataset="ds", episode_index=0, source="/data/ds",
        source_format="lerobot_v3", fps=20, n_frames=40, task="pick up the cup",
    )])
    s.add_revision(Decomposition(
        episode_id="ds/0", n_frames=40, author="heuristic",
        subtasks=[Subtask(start_frame=0, end_frame=10, instruction="pick up the cup", skill="pick"),
                  Subtask(start_frame=10, end_frame=40, instruction="place the cup", skill="place")],
    ))
    return s


def test_a_review_names_a_revision_that_exists(store):
    store_tables.add_review(store, "ds/0", 1, reviewer="ann", verdict="accept", comment="fine")
    assert store_tables.reviews(store, "ds/0")[0]["verdict"] == "accept"
    with pytest.raises(KeyError):
        store_tables.add_review(store, "ds/0", 5, reviewer="ann", verdict="accept")
    assert len(store_tables.reviews(store, "ds/0")) == 1


def test_one_draft_per_episode_and_author_replaced_then_deleted(store):
    store_tables.save_draft(store, "ds/0", "ann", 1, {"note": "first"})
    store_tables.save_draft(store, "ds/0", "ann", 1, {"note": "second"})
    store_tables.save_draft(store, "ds/0", "bob", None, {"note": "bob's"})
    assert store_tables.draft(store, "ds/0", "ann")["record"] == {"note": "second"}
    assert [d["record"]["note"] for d in store_tables.drafts(store, "ann")] == ["second"]
    store_tables.delete_draft(store, "ds/0", "ann")
    assert store_tables.draft(store, "ds/0", "ann") is None
    assert store_tables.draft(store, "ds/0", "bob")["based_on"] is None
