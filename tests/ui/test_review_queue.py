"""The queue over a real store: statuses, filters, search, sorts, counts, "next", incremental refresh,
and the table's window of rows around the open episode."""

import re
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


def test_search_finds_ids_tasks_and_subtask_instructions(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    queue = ReviewQueue(store)

    def found(text: str) -> list[str]:
        return [r.episode_id for r in queue.select(QueueFilter(search=text))]

    assert found("lerobot_v30/8") == ["metaworld_lerobot_v30/8"]  # part of an id
    assert found("SWEEP the Cube") == ["metaworld_lerobot_v30/8"]  # words of the task, any case
    assert found("drawer handle") == ["metaworld_lerobot_v30/2", "metaworld_lerobot_v30/3"]  # a subtask's instruction
    assert found("drawer puck") == []  # every word must occur
    assert found("  ") == found("")
    # "next" keeps to what the search shows: the episode after /2 is /3, then round to /2.
    flt = QueueFilter(status="unreviewed", search="drawer")
    assert queue.next_unreviewed(flt, "metaworld_lerobot_v30/2") == "metaworld_lerobot_v30/3"
    assert queue.next_unreviewed(flt, "metaworld_lerobot_v30/3") == "metaworld_lerobot_v30/2"


def test_status_sort_puts_what_is_left_to_decide_first(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    ids = [r.episode_id for r in ReviewQueue(store).select(QueueFilter())]
    for episode_id, status in zip(ids, (Status.accepted, Status.rejected, Status.needs_review, Status.failed)):
        latest = store.latest(episode_id)
        store.add_revision(latest.model_copy(update={"status": status, "author": "ann",
                                                     "subtasks": () if status is Status.failed else latest.subtasks}),
                           based_on=latest.revision)
    rows = ReviewQueue(store).select(QueueFilter(sort=SORTS[3]))
    assert [r.status for r in rows] == ["needs_review"] + ["proposed"] * 7 + ["failed", "rejected", "accepted"]
    assert [r.episode_id for r in rows if r.status == "proposed"] == ids[4:]  # queue order within a status


def test_the_table_lists_the_rows_around_the_open_episode(tmp_path: Path):
    from atomvla.ui.app import QUEUE_ROWS, QUEUE_ROWS_ABOVE, Review, ReviewApp

    store = build_review_store(tmp_path / "s.sqlite")
    template = store.episodes()[0]
    store.upsert_episodes(template.model_copy(update={"dataset": "zz", "episode_id": f"zz/{i}", "episode_index": i})
                          for i in range(2 * QUEUE_ROWS + 40))
    app = ReviewApp(store, learn=False)
    ids = [r.episode_id for r in app.queue.select(QueueFilter())]
    filters = ("all", "all", "all", SORTS[0], "")

    def listed(html: str) -> list[str]:
        return re.findall(r'<tr data-episode="([^"]+)"', html)

    review = Review(author="ann")
    counts, html = app.queue_view(review, *filters)
    assert listed(html) == ids[:QUEUE_ROWS] and f"rows 1–{QUEUE_ROWS} listed" in counts
    far = QUEUE_ROWS + 30
    review.episode_id = ids[far]  # "n" went past the last row listed
    counts, html = app.queue_view(review, *filters)
    first = far - QUEUE_ROWS_ABOVE
    assert listed(html) == ids[first:first + QUEUE_ROWS] and review.queue_listed == set(ids[first:first + QUEUE_ROWS])
    assert f"**{len(ids)}** shown of {len(ids)} (rows {first + 1}–{first + QUEUE_ROWS} listed)" in counts
    review.episode_id = ids[-1]  # near the end: the last QUEUE_ROWS rows
    assert listed(app.queue_view(review, *filters)[1]) == ids[-QUEUE_ROWS:]
    review.episode_id, review.queue_first = None, first  # nothing open in the queue: the table stays where it was, within the rows
    assert listed(app.queue_view(review, *filters)[1]) == ids[first:first + QUEUE_ROWS]
    assert listed(app.queue_view(review, "all", "all", "all", SORTS[0], "zz/139")[1]) == ["zz/139"]
    assert "rows" not in app.queue_view(review, "all", "all", "all", SORTS[0], "zz/139")[0]


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
    html = queue_table.render([row], SORTS[0])
    assert "<b>cup</b>" not in html and "put the &lt;b&gt;cup&lt;/b&gt; &amp; &quot;saucer&quot; away" in html
    assert f'data-episode="{row.episode_id}"' in html
    assert "No episodes with these filters." in queue_table.render([], SORTS[0])
