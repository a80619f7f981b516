"""The queue over a real store: statuses, filters, sorts, counts, "next", and incremental refresh."""

from pathlib import Path

from atomvla.schemas import Status
from atomvla.ui.review_queue import SORTS, QueueFilter, ReviewQueue

from tests.ui.review_store import build_review_store


def test_queue_filters_sorts_and_follows_the_store(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    queue = ReviewQueue(store)
    assert queue.counts()["proposed"] == 11
    assert queue.backends() == ["heuristic", "vlm"]
    ids = [r.episode_id for r in queue.select(QueueFilter())]
    assert len(ids) == 11

    by_conf = queue.select(QueueFilter(sort=SORTS[1]))
    confs = [r.confidence for r in by_conf]
    assert confs == sorted(confs)
    # Every episode has two proposals 4 frames apart at each boundary: disagreement > 0, highest first.
    by_dis = queue.select(QueueFilter(sort=SORTS[2]))
    assert all(r.disagreement > 0 for r in by_dis)
    assert [r.disagreement for r in by_dis] == sorted((r.disagreement for r in by_dis), reverse=True)

    task = by_conf[0].task
    assert {r.task for r in queue.select(QueueFilter(task=task))} == {task}

    # An accepted episode leaves the unreviewed queue and "next" skips it (after a refresh from the store).
    first = ids[0]
    latest = store.latest(first)
    store.add_revision(latest.model_copy(update={"status": Status.accepted, "author": "ann"}), based_on=latest.revision)
    assert queue.next_unreviewed(QueueFilter(status="unreviewed"), None) == ids[1]
    assert queue.next_unreviewed(QueueFilter(status="unreviewed"), ids[-1]) == ids[1]  # wraps round
    assert queue.counts()["accepted"] == 1
    assert [r.episode_id for r in queue.select(QueueFilter(status="accepted"))] == [first]


def test_nothing_to_review_says_how_to_fill_an_empty_store(tmp_path: Path):
    from atomvla.curate.store import Store
    from atomvla.ui.app import ReviewApp

    empty = ReviewApp(Store(tmp_path / "empty.sqlite"))
    full = ReviewApp(build_review_store(tmp_path / "review.sqlite"))
    try:
        hint = empty.nothing_to_review()
        assert "has no episodes yet" in hint and f"atom-curate import SOURCE --store {tmp_path / 'empty.sqlite'}" in hint
        assert full.nothing_to_review() == "Nothing to review with these filters."
    finally:
        empty.learner.close()
        full.learner.close()


def test_queue_table_shows_markup_in_names_as_text(tmp_path: Path):
    from atomvla.ui import queue_table

    store = build_review_store(tmp_path / "s.sqlite")
    row = ReviewQueue(store).select(QueueFilter())[0]
    row.task = 'put the <b>cup</b> & "saucer" away'
    html = queue_table.render([row])
    assert "<b>cup</b>" not in html and "put the &lt;b&gt;cup&lt;/b&gt; &amp; &quot;saucer&quot; away" in html
    assert f'data-episode="{row.episode_id}"' in html
    assert "No episodes with these filters." in queue_table.render([])
