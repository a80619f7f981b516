"""Logins: roles checked on the server side of the app, and failed logins slowed down per user and
client address, with a real store and real scrypt hashes."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

import pytest

from atomvla.schemas import Status
from atomvla.ui import auth, editing
from atomvla.ui.app import Review, ReviewApp
from atomvla.ui.auth import LoginGuard, client_address, read_logins, set_password
from tests.ui.review_store import build_review_store


def test_an_annotator_saves_and_flags_but_cannot_accept_or_reject(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    app = ReviewApp(store)
    ep = store.episodes()[2].episode_id
    ann = Review(author="ann", role="annotator")
    app.open(ann, ep)
    app.change(ann, lambda s: editing.nudge(s, 1, 3))
    before = store.latest(ep)
    for status, verdict in ((Status.accepted, "accepted"), (Status.rejected, "rejected")):
        msg = app.commit(ann, status, verdict, f"{verdict}: looks fine")
        assert "needs the reviewer role" in msg and "annotator" in msg
    assert store.latest(ep) == before  # nothing stored, the edit kept as the draft
    assert app.commit(ann, Status.needs_review, "flagged", "flagged: unsure").startswith("Saved revision")
    assert store.latest(ep).status is Status.needs_review and store.latest(ep).author == "ann"
    rev = Review(author="rita", role="reviewer")
    app.open(rev, ep)
    assert app.commit(rev, Status.accepted, "accepted").startswith("Saved revision")
    assert store.latest(ep).status is Status.accepted
    # Without logins (local use) there is no role and everything is allowed.
    assert auth.refusal(None, Status.rejected) is None


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(auth, "FIRST_DELAY_S", 0.1)
    monkeypatch.setattr(auth, "MAX_DELAY_S", 0.8)


def test_failed_logins_slow_down_per_user_and_address_bounded(tmp_path: Path, fast_backoff):
    path = tmp_path / "logins"
    set_password(path, "ann", "right", "annotator")
    guard = LoginGuard(read_logins(path))
    assert inspect.iscoroutinefunction(guard.check)  # what Gradio looks at before awaiting it

    async def attempt(password: str, address: str = "10.0.0.1") -> tuple[bool, float]:
        client_address.set(address)
        start = time.monotonic()
        ok = await guard.check("ann", password)
        return ok, time.monotonic() - start

    async def scenario():
        # (Times are lower bounds, plus generous upper ones: the machine is shared.)
        wrong = [await attempt("wrong") for _ in range(5)]
        assert not any(ok for ok, _ in wrong)
        for (_, took), want in zip(wrong, (0.1, 0.2, 0.4, 0.8, 0.8)):
            assert took >= want, wrong
        assert wrong[4][1] < 1.5  # bounded: 0.8 s, not 1.6
        # Tries at once are taken one at a time: the second waits out the first one's delay.
        start = time.monotonic()
        both = await asyncio.gather(attempt("wrong"), attempt("wrong"))
        assert not any(ok for ok, _ in both) and time.monotonic() - start >= 1.6
        # Another address is not held up by this one's pending delay.
        pending = asyncio.create_task(attempt("wrong"))
        await asyncio.sleep(0.05)
        ok, took = await attempt("right", "10.0.0.2")
        assert ok and took < 0.7 and not pending.done()
        # The right password still logs in (once the delay is over) and clears the count.
        assert not (await pending)[0]
        assert (await attempt("right"))[0]
        ok, took = await attempt("wrong")
        assert not ok and 0.1 <= took < 0.6

    asyncio.run(scenario())
