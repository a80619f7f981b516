"""`atom-review` learns from accepts, end to end: a real server (learning on, its default), real
headless Chromium, the real SQLite store. After two accepts the next `n` opens an episode already
re-proposed from them, the queue says which proposals came from what was learned; two annotators
accepting at once lose and duplicate nothing."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest

from atomvla.schemas import Decomposition, Status
from atomvla.annotate.backends.base import get_backend
from atomvla.annotate.profiles import load_profile
from atomvla.curate.episode import Episode
from atomvla.annotate.store_tables import profiles
from atomvla.ui.learning import is_reproposal, learning_backend, profile_name
from tests.e2e.review_server import CHROMIUM, CHROMIUM_ARGS, ReviewServer
from tests.ui.review_store import build_review_store

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (make browser installs it)"),
              pytest.mark.slow]  # a server and browsers per test: 30-60 s each on 2 cores

DATASET = "metaworld_lerobot_v30"
WAIT_MS = 120_000  # generous: two browsers, a server and its learner share 2 cores with other jobs


@pytest.fixture()
def served(tmp_path):
    store = build_review_store(tmp_path / "review.sqlite")
    server = ReviewServer(tmp_path / "review.sqlite", tmp_path / "server.log")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield server, store, browser
        browser.close()
    server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def open_page(owner, server, episode_id: str):
    """A page of `owner` (a browser, or one annotator's context) with `episode_id` open."""
    page = owner.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{server.url}/?episode={urllib.parse.quote(episode_id)}", wait_until="load")
    shown(page, episode_id)
    return page


def shown(page, episode_id: str) -> None:
    """Wait until the page shows `episode_id` whole: its frames (`marked`) and its timeline. Opening
    draws the frames first and the timeline after; keys pressed between the two would find the
    previous episode's boundaries (the timeout seen when this test ran after others, under load)."""
    page.wait_for_function("(e) => window.atomReview && window.atomReview.ep === e && window.atomReview.marked"
                           " && window.atomReview.segments().length > 0", arg=episode_id, timeout=WAIT_MS)


def lifted(store, episode_id: str) -> Decomposition:
    """Where this team puts the boundaries: picks end once the object is lifted (a heuristic
    setting, so the app can learn it; the store's proposals end them at the grasp)."""
    heuristic = get_backend("heuristic")
    return heuristic(heuristic.Config(pick_end="lifted")).propose(Episode(store.episode(episode_id)))


def move_first_boundary(page, store, episode_id: str) -> None:
    """Move the first boundary with the keys to where this team puts it (`lifted`)."""
    want = lifted(store, episode_id).boundaries[0]
    page.keyboard.press("]")
    at = page.evaluate("() => window.atomReview.cursor")
    sign = 1 if want > at else -1
    for step in [10] * (abs(want - at) // 10) + [1] * (abs(want - at) % 10):
        page.keyboard.press({10: ">", 1: "."}[step] if sign > 0 else {10: "<", 1: ","}[step])
        at += sign * step  # each nudge is a server round trip: the next key waits for it
        page.wait_for_function("(w) => window.atomReview.segments()[1].start === w", arg=at, timeout=WAIT_MS)


def accept(page) -> None:
    page.keyboard.press("a")
    page.wait_for_function("() => document.querySelector('#atom-message').innerText.includes('(accepted)')",
                           timeout=WAIT_MS)


def wait_until(check, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _exists(store) -> bool:
    return any(p["name"] == profile_name(DATASET) for p in profiles(store, learning_backend()))


def test_next_opens_an_episode_re_proposed_from_the_accepts(served):
    server, store, browser = served
    ids = [m.episode_id for m in store.episodes(DATASET)]
    page = open_page(browser, server, ids[0])
    # Keys edit only the open episode's timeline: one still showing another episode offers no boundary.
    assert page.evaluate("() => { const R = window.atomReview, ep = R.ep; R.ep = 'another';"
                         " const stale = R.segments().length; R.ep = ep; return [stale, R.segments().length]; }") == [0, 2]
    move_first_boundary(page, store, ids[0])
    accept(page)
    page.keyboard.press("n")
    shown(page, ids[1])
    move_first_boundary(page, store, ids[1])
    accept(page)
    # The learner re-proposes the episodes after the one just accepted, in queue order, but not
    # the one this page has open until it moves on.
    wait_until(lambda: is_reproposal(store.latest(ids[2])))
    later = store.latest(ids[2])
    assert (later.provenance.profile, later.provenance.learned_from) == (profile_name(DATASET), 2)
    page.keyboard.press("n")
    shown(page, ids[2])
    page.wait_for_function("() => document.querySelector('#atom-header').innerText.includes('re-proposed from what 2"
                           " accepted episodes taught')", timeout=WAIT_MS)
    # The queue says which proposals came from what was learned (the table follows the store).
    page.wait_for_function("() => (document.querySelector('#atom-queue')?.innerText || '').includes('2 accepts')",
                           timeout=WAIT_MS)
    for i in ids[:2]:
        assert store.latest(i).status is Status.accepted and not is_reproposal(store.latest(i))


def test_two_annotators_accepting_at_once_lose_and_duplicate_nothing(served):
    server, store, browser = served
    ids = [m.episode_id for m in store.episodes(DATASET)]
    mine = {"a": ids[0:4:2], "b": ids[1:4:2]}
    store.add_revisions(lifted(store, i) for i in ids[:4])  # shown, then accepted as they are
    # Two annotators, each in their own browser context (own cookies, own page), in one thread:
    # Playwright's sync API cannot be driven from two threads at once. Each round's two accepts
    # are sent back to back, before either answer arrives, so the server handles them together.
    contexts = [browser.new_context() for _ in mine]
    for a, b in zip(*mine.values()):
        pages = [open_page(ctx, server, ep) for ctx, ep in zip(contexts, (a, b))]
        for page in pages:
            page.keyboard.press("a")
        for page in pages:
            page.wait_for_function("() => document.querySelector('#atom-message').innerText.includes('(accepted)')",
                                   timeout=WAIT_MS)
            page.close()
    for ctx in contexts:
        ctx.close()
    for i in ids[:4]:
        accepts = [d for d in store.history(i) if d.status is Status.accepted]
        assert len(accepts) == 1 and store.latest(i).status is Status.accepted
    # The learner coalesces the four accepts; every untouched episode gets at most one re-proposal
    # per fit, each from more accepts than the one before, and the last fit saw all four.
    fitted = lambda: load_profile(store, learning_backend(), profile_name(DATASET)).report["n_examples"]  # noqa: E731
    wait_until(lambda: _exists(store) and fitted() == 4)
    for i in ids[4:]:
        made = [d.provenance.learned_from for d in store.history(i) if is_reproposal(d)]
        assert made == sorted(set(made)), made
