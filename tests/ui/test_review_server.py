"""The review app's server side over a real store, without a browser: verdicts, history, drafts."""

from pathlib import Path

from atomvla.ui import store_tables as review_tables
from atomvla.schemas import Status
from atomvla.ui import editing
from atomvla.ui.app import Review, ReviewApp
from atomvla.ui.editing import segments_of

from tests.ui.review_store import build_review_store


def test_verdicts_drafts_and_restore(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    app = ReviewApp(store)
    ep = store.episodes()[3].episode_id
    r = Review(author="carol")
    payload, note = app.open(r, ep)
    assert '"frames"' in payload and note == ""
    base = r.edit.based_on

    # An edit is a draft at once; reopening restores it.
    assert app.change(r, lambda s: editing.nudge(s, 1, 5)) == ""
    assert review_tables.draft(store, ep, "carol")["based_on"] == base
    r2 = Review(author="carol")
    app.open(r2, ep)
    assert r2.edit.segments == r.edit.segments and len(r2.edit.undo_stack) == 1

    # Flag keeps the edit as a needs-review revision with the note; the draft is gone.
    msg = app.commit(r, Status.needs_review, "flagged", "flagged: grasp unclear")
    assert msg.startswith("Saved revision")
    flagged = store.latest(ep)
    assert (flagged.status, flagged.author, flagged.note) == (Status.needs_review, "carol", "flagged: grasp unclear")
    assert review_tables.draft(store, ep, "carol") is None and review_tables.reviews(store, ep)[-1]["verdict"] == "flagged"

    # Reject while the edit is invalid: the verdict is stored on the last valid decomposition.
    app.change(r, lambda s: editing.split(s, 3))
    assert r.edit.problems
    assert app.commit(r, Status.accepted, "accepted").startswith("**Not saved**")
    assert app.commit(r, Status.rejected, "rejected", "rejected: wrong object").startswith("Saved revision")
    rejected = store.latest(ep)
    assert rejected.status is Status.rejected and rejected.boundaries == flagged.boundaries

    # Any earlier revision can be put back into the editor (an undoable change) and saved again.
    first = store.history(ep)[0]
    assert app.change(r, lambda s: segments_of(first)) == ""
    assert app.commit(r, Status.accepted, "accepted").startswith("Saved revision")
    assert store.latest(ep).boundaries == first.boundaries and len(store.history(ep)) == 5

    # The stale-save message names the other edit and keeps ours as a draft.
    other = Review(author="dave")
    app.open(other, ep)
    app.change(r, lambda s: editing.nudge(s, 1, 2))
    app.change(other, lambda s: editing.nudge(s, 1, -2))
    assert app.commit(r, Status.needs_review, None).startswith("Saved revision")
    refused = app.commit(other, Status.accepted, "accepted")
    assert "someone else saved first" in refused and "by **carol**" in refused
    assert store.latest(ep).author == "carol" and review_tables.draft(store, ep, "dave") is not None
