"""The review app learns from accepts: re-proposals of untouched episodes only, with the profile
in their provenance; concurrent accepts lose and duplicate nothing. Real store, real app object."""

from __future__ import annotations

import threading

import pytest

from atomvla.annotate.backends.base import get_backend
from atomvla.annotate.profiles import load_profile
from atomvla.schemas import Status
from atomvla.ui import store_tables
from atomvla.ui.app import Review, ReviewApp
from atomvla.ui.editing import Segment
from atomvla.ui.review_queue import QueueFilter
from atomvla.ui.learning import is_reproposal, learning_backend, profile_name
from atomvla.curate.episode import Episode
from tests.ui.review_store import build_review_store

DATASET = "metaworld_lerobot_v30"


@pytest.fixture()
def app(tmp_path):
    store = build_review_store(tmp_path / "review.sqlite")
    app = ReviewApp(store)
    yield app
    app.learner.close()


def team_convention(app: ReviewApp, episode_id: str):
    """What this team accepts: picks end once the object is lifted (a heuristic setting, so the
    app's calibration can learn it), unlike the proposals in the store."""
    heuristic = get_backend("heuristic")
    return heuristic(heuristic.Config(pick_end="lifted")).propose(Episode(app.store.episode(episode_id))).subtasks


def accept_truth(app: ReviewApp, author: str, episode_id: str) -> str:
    """Open the episode, set the team's boundaries, accept: what an annotator does."""
    review = Review(author=author, session=author)
    app.open(review, episode_id)
    segs = tuple(Segment(s.start_frame, s.end_frame, s.instruction, s.skill) for s in team_convention(app, episode_id))
    assert app.change(review, lambda _: segs) == ""
    return app.commit(review, Status.accepted, "accepted")


def test_accepts_re_propose_untouched_episodes_only(app):
    store = app.store
    ids = [m.episode_id for m in store.episodes(DATASET)]
    accepted, saved, drafted, opened = ids[:2], ids[2], ids[3], ids[4]
    # Someone saved one episode (needs review), someone has a draft of another, and a third is open.
    bob = Review(author="bob", session="bob")
    app.open(bob, saved)
    app.commit(bob, Status.needs_review, None)
    store_tables.save_draft(store, drafted, "carol", 2, {"segments": []})
    app.open(Review(author="dave", session="dave"), opened)
    before = {i: store.latest(i).revision for i in ids}

    assert accept_truth(app, "alice", accepted[0]).startswith("Saved")
    assert app.learner.wait_idle(60)
    assert not app.learner.fits, "one accepted episode is too few to fit"
    assert accept_truth(app, "alice", accepted[1]).startswith("Saved")
    assert app.learner.wait_idle(120)
    assert app.learner.fits[DATASET] == 1

    profile = load_profile(store, learning_backend(), profile_name(DATASET))
    assert profile.report["n_examples"] == 2
    untouched = [i for i in ids if i not in (*accepted, saved, drafted, opened)]
    for i in (saved, drafted, opened):  # never touched: no revision after what was there
        assert store.latest(i).revision == before[i]
        assert not is_reproposal(store.latest(i))
    for i in accepted:
        assert store.latest(i).status is Status.accepted
    # Every other episode got at most one re-proposal (none where the fit proposes what is there).
    reproposed = [i for i in untouched if is_reproposal(store.latest(i))]
    for i in untouched:
        assert store.latest(i).revision - before[i] == (1 if i in reproposed else 0)
    assert reproposed, "the fitted profile re-proposed nothing"
    for i in reproposed:
        p = store.latest(i).provenance
        assert (p.profile, p.learned_from, p.backend) == (profile_name(DATASET), 2, learning_backend())
        assert p.settings_hash == get_backend(learning_backend())(
            get_backend(learning_backend()).Config.model_validate(profile.settings)).settings_hash
    # The queue says which proposals came from what was learned, and from how many accepts.
    rows = {r.episode_id: r for r in app.queue.select(QueueFilter())}
    assert {i for i, r in rows.items() if r.learned_from == 2} == set(reproposed)


def test_a_fit_slower_than_the_next_accept_still_re_proposes_the_episodes_opened_next(app, monkeypatch):
    """On a loaded machine a fit can take longer than a person takes to accept the next episode:
    each fit then finds a newer one wanted. It still re-proposes the next episodes in the queue
    (learning.AHEAD of them) before the newer fit takes the rest."""
    store, learner = app.store, app.learner
    ids = [m.episode_id for m in store.episodes(DATASET)]
    fit, at_second_fit = learner.fit, []

    def fit_while_the_next_is_accepted(dataset, examples):
        if at_second_fit or learner.fits[DATASET]:  # the newer fit: what did the first one leave?
            at_second_fit.append([i for i in ids if is_reproposal(store.latest(i))])
            return fit(dataset, examples)
        backend = fit(dataset, examples)
        learner.accepted(ids[1])  # another accept landed while this fit ran
        return backend

    monkeypatch.setattr(learner, "fit", fit_while_the_next_is_accepted)
    accept_truth(app, "alice", ids[0])
    assert accept_truth(app, "alice", ids[1]).startswith("Saved")
    assert learner.wait_idle(180)
    assert learner.fits[DATASET] == 2
    # the first fit re-proposed the episodes after the one just accepted before yielding
    first = at_second_fit[0]
    assert first, "a fit that found a newer one wanted re-proposed nothing"
    assert ids[2] in first


def test_a_persons_edit_goes_over_a_re_proposal_made_after_it_began(app):
    store = app.store
    ids = [m.episode_id for m in store.episodes(DATASET)]
    review = Review(author="erin", session="erin")
    app.open(review, ids[5])
    app.closed("erin")  # as if the tab closed: the episode may be re-proposed now
    accept_truth(app, "alice", ids[0])
    accept_truth(app, "alice", ids[1])
    assert app.learner.wait_idle(120)
    if not is_reproposal(store.latest(ids[5])):
        pytest.skip("the fit proposed the same boundaries for this episode")
    assert app.commit(review, Status.needs_review, None).startswith("Saved")
    assert store.latest(ids[5]).author == "erin"


def test_a_page_opens_the_proposal_before_or_the_re_proposal_never_one_replaced_after_it_was_read(app, monkeypatch):
    """A page opening an episode while the learner writes its re-proposal waits for the write and
    shows the re-proposal: what the page holds is the store's latest revision."""
    store = app.store
    ids = [m.episode_id for m in store.episodes(DATASET)]
    review = Review(author="erin", session="erin")
    opening: dict[str, threading.Thread] = {}
    add_revision = store.add_revision

    def learner_writes(dec, based_on):
        if is_reproposal(dec) and not opening:  # the learner's first write: a page opens that episode now
            opening[dec.episode_id] = threading.Thread(target=app.open, args=(review, dec.episode_id))
            opening[dec.episode_id].start()
            opening[dec.episode_id].join(0.5)  # time enough to read the episode, were it not held back
        return add_revision(dec, based_on=based_on)

    monkeypatch.setattr(store, "add_revision", learner_writes)
    accept_truth(app, "alice", ids[0])
    accept_truth(app, "alice", ids[1])
    assert app.learner.wait_idle(120)
    [(episode_id, thread)] = opening.items()
    thread.join(30)
    assert review.episode_id == episode_id and is_reproposal(store.latest(episode_id))
    assert review.edit.based_on == store.latest(episode_id).revision


def test_two_annotators_accepting_at_once_lose_and_duplicate_nothing(app):
    store = app.store
    ids = [m.episode_id for m in store.episodes(DATASET)]
    mine = {"alice": ids[0:6:2], "bob": ids[1:6:2]}
    before = {i: store.latest(i).revision for i in ids}
    results: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def annotate(author: str) -> None:
        start.wait()
        results[author] = [accept_truth(app, author, i) for i in mine[author]]

    threads = [threading.Thread(target=annotate, args=(a,)) for a in mine]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert app.learner.wait_idle(180)
    for author, episodes in mine.items():
        assert all(m.startswith("Saved") for m in results[author]), results[author]
        for i in episodes:  # each accept stored once, by its author, and still the latest
            latest = store.latest(i)
            assert (latest.status, latest.author) == (Status.accepted, author)
            accepts = [d for d in store.history(i) if d.status is Status.accepted]
            assert len(accepts) == 1
    for i in ids[6:]:  # untouched episodes: no two re-proposals from the same fit
        new = [d for d in store.history(i) if d.revision > before[i]]
        assert all(is_reproposal(d) for d in new)
        made = [d.provenance.learned_from for d in new]
        assert made == sorted(set(made)), made  # one per fit, and each from more accepts than the last
