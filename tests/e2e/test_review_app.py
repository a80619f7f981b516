"""`atom-review` end to end: a real server (the console script) and real headless Chromium.

One server with two logins serves every test of the module. Screenshots of the main screens are
saved under the test's tmp dir, and copied to $ATOMVLA_SCREENS when that is set.
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from atomvla.ui import store_tables as review_tables
from atomvla.curate.sources import open_source
from atomvla.schemas import EpisodeMeta
from tests.curate.builders import build_libero_hdf5
from tests.e2e.review_server import CHROMIUM, CHROMIUM_ARGS, ReviewServer, write_logins
from tests.ui.review_store import build_review_store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (make browser installs it)")

# alice and bob review; carol annotates (saves and flags, may not accept or reject).
USERS = {"alice": ("pw-alice", "reviewer"), "bob": ("pw-bob", "reviewer"), "carol": ("pw carol", "annotator")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    store = build_review_store(root / "review.sqlite")
    libero = build_libero_hdf5(root / "libero" / "pick_bowl_demo.hdf5", lengths=(40,))  # two cameras
    store.upsert_episodes(m for m in open_source(str(libero)).scan() if isinstance(m, EpisodeMeta))
    auth = write_logins(root / "logins", USERS)
    server = ReviewServer(root / "review.sqlite", root / "server.log", auth=str(auth))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield {"server": server, "store": store, "browser": browser, "root": root,
               "episodes": [m.episode_id for m in store.episodes("metaworld_lerobot_v30")],
               "libero": next(m.episode_id for m in store.episodes() if m.source_format != "lerobot_v3")}
        browser.close()
    server.stop()
    log = (root / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]  # no handler failed along the way


def login(setup, user: str):
    ctx = setup["browser"].new_context(viewport={"width": 1400, "height": 1000})
    resp = ctx.request.post(setup["server"].url + "/login", form={"username": user, "password": USERS[user][0]})
    assert resp.ok, resp.text()
    return ctx


def open_episode(ctx, setup, episode_id: str):
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{setup['server'].url}/?episode={urllib.parse.quote(episode_id)}", wait_until="load")
    page.wait_for_function("window.atomReview && window.atomReview.ep === %r" % episode_id, timeout=30000)
    page.wait_for_selector("#atom-cams img[src^='data:image/jpeg']", timeout=30000)
    page.wait_for_function("window.atomReview.marked", timeout=30000)  # frames at the segment starts came
    page.errors = errors
    return page


def shot(setup, page, name: str) -> None:
    path = setup["root"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("ATOMVLA_SCREENS"):
        Path(os.environ["ATOMVLA_SCREENS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["ATOMVLA_SCREENS"]) / path.name)


def frame(page) -> int:
    return int(page.inner_text("#atom-frame").split()[1])


def boundaries(page) -> list[int]:
    return page.eval_on_selector_all("#atom-timeline .atom-tl-main .atom-bd", "els => els.map(e => +e.dataset.frame)")


def expect_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text], timeout=15000
    )


def test_open_scrub_split_move_edit_accept_reload(setup):
    ep = setup["episodes"][0]
    store = setup["store"]
    base = store.latest(ep)
    ctx = login(setup, "alice")
    page = open_episode(ctx, setup, ep)
    assert frame(page) == 0
    shot(setup, page, "review-main")

    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    assert frame(page) == 13
    src = page.get_attribute("#atom-cams img", "src")
    page.keyboard.press("ArrowLeft")
    assert frame(page) == 12 and page.get_attribute("#atom-cams img", "src") != src
    page.keyboard.press("ArrowRight")

    page.keyboard.press("s")  # split at 13: the new subtask has no instruction yet
    expect_text(page, "#atom-validation", "Cannot be accepted")
    assert boundaries(page) == [13, base.boundaries[0]]
    shot(setup, page, "review-invalid-after-split")
    page.keyboard.press("a")  # refused while invalid
    expect_text(page, "#atom-message", "Not saved")
    assert store.latest(ep).revision == base.revision

    page.keyboard.press("e")  # edit the instruction of the subtask under the cursor
    page.keyboard.type("lift the puck")
    page.keyboard.press("Enter")
    expect_text(page, "#atom-validation", "Valid")
    page.keyboard.press("Escape")

    page.keyboard.press("]")  # select the next boundary (the cursor jumps to it), move it
    old = base.boundaries[0]
    assert frame(page) == old
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("b")
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {old + 2})")
    page.keyboard.press(".")  # nudge +1, undo it, redo it
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {old + 3})")
    page.keyboard.press("z")
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {old + 2})")
    page.keyboard.press("y")
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {old + 3})")

    # Autosaved: a reload restores the draft, undo history included.
    draft = review_tables.draft(store, ep, "alice")
    assert draft is not None and draft["based_on"] == base.revision
    page.reload(wait_until="load")
    page.wait_for_function("window.atomReview && window.atomReview.ep === %r" % ep, timeout=30000)
    expect_text(page, "#atom-message", "Restored your draft")
    assert boundaries(page) == [13, old + 3]

    page.keyboard.press("a")
    expect_text(page, "#atom-message", f"Saved revision {base.revision + 1} (accepted)")
    shot(setup, page, "review-accepted")
    page.reload(wait_until="load")
    page.wait_for_function("window.atomReview && window.atomReview.ep === %r" % ep, timeout=30000)
    expect_text(page, "#atom-header", "accepted · by alice")
    assert boundaries(page) == [13, old + 3]

    page.click("#atom-history button, #atom-history .label-wrap")  # History: view the newest revision
    page.click("#atom-hist-view")
    page.wait_for_function(f"[...document.querySelectorAll('#atom-preview .atom-bd')].map(e => +e.dataset.frame).join() === '13,{old + 3}'")

    saved = store.latest(ep)
    assert (saved.status.value, saved.author, saved.boundaries) == ("accepted", "alice", [13, old + 3])
    assert saved.subtasks[1].instruction == "lift the puck"
    assert review_tables.reviews(store, ep)[-1]["verdict"] == "accepted"
    assert review_tables.draft(store, ep, "alice") is None
    assert not page.errors
    ctx.close()


def test_two_annotators_stale_save_is_refused_and_shows_the_other_edit(setup):
    ep = setup["episodes"][1]
    store = setup["store"]
    base = store.latest(ep)
    a_ctx, b_ctx = login(setup, "alice"), login(setup, "bob")
    a, b = open_episode(a_ctx, setup, ep), open_episode(b_ctx, setup, ep)

    a.keyboard.press("]")
    a.keyboard.press(">")  # alice: boundary +10, save
    a.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {base.boundaries[0] + 10})")
    a.keyboard.press("w")
    expect_text(a, "#atom-message", f"Saved revision {base.revision + 1}")

    b.keyboard.press("]")
    b.keyboard.press("<")  # bob, still on the old revision: boundary -10, accept
    b.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {base.boundaries[0] - 10})")
    b.keyboard.press("a")
    expect_text(b, "#atom-message", "someone else saved first")
    expect_text(b, "#atom-message", f"revision {base.revision + 1} by alice")
    shot(setup, b, "review-conflict")

    latest = store.latest(ep)
    assert (latest.revision, latest.author, latest.boundaries) == (base.revision + 1, "alice", [base.boundaries[0] + 10])
    bobs = review_tables.draft(store, ep, "bob")  # bob's work is kept as his draft
    assert bobs is not None and bobs["record"]["segments"][1]["start"] == base.boundaries[0] - 10
    a_ctx.close()
    b_ctx.close()


def test_an_invalid_decomposition_cannot_be_accepted(setup):
    ep = setup["episodes"][2]
    store = setup["store"]
    before = store.latest(ep).revision
    ctx = login(setup, "bob")
    page = open_episode(ctx, setup, ep)
    page.keyboard.press("?")  # the help panel lists the keys
    expect_text(page, "#atom-help", "move the selected boundary to the cursor")
    page.keyboard.press(" ")  # play at the dataset fps, pause
    page.wait_for_function("window.atomReview.cursor >= 5", timeout=15000)
    page.keyboard.press(" ")
    stopped = frame(page)
    page.wait_for_timeout(300)
    assert frame(page) == stopped
    page.keyboard.press("Home")
    page.keyboard.press("m")  # merge the two subtasks: one subtask is not a decomposition
    expect_text(page, "#atom-validation", "needs 2-5")
    page.click("#atom-accept")
    expect_text(page, "#atom-message", "Not saved")
    shot(setup, page, "review-invalid")
    assert store.latest(ep).revision == before

    page.click(".atom-take[data-author=heuristic]")  # start over from another backend's proposal
    heuristic = [d for d in store.history(ep) if d.author == "heuristic"][-1]
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-tl-main .atom-bd')]"
                           f".map(e => +e.dataset.frame).join() === '{','.join(map(str, heuristic.boundaries))}'")
    expect_text(page, "#atom-validation", "Valid")
    ctx.close()


def test_several_cameras_side_by_side_and_no_proposal_yet(setup):
    ctx = login(setup, "bob")
    page = open_episode(ctx, setup, setup["episodes"][3])
    page.click("#atom-f-task input")  # filter the queue by task, open the episode from it
    page.get_by_role("option", name=setup["store"].episode(setup["libero"]).task).click()
    expect_text(page, "#atom-counts", "1 shown of 12")
    page.locator("#atom-queue").get_by_text(setup["libero"], exact=True).filter(visible=True).click()
    page.wait_for_function("window.atomReview.ep === %r && window.atomReview.marked" % setup["libero"])
    assert page.eval_on_selector_all("#atom-cams figcaption", "els => els.map(e => e.innerText)") == [
        c.key for c in setup["store"].episode(setup["libero"]).cameras]
    srcs = page.eval_on_selector_all("#atom-cams img", "els => els.map(e => e.src)")
    page.keyboard.press("End")
    page.wait_for_function("(old) => [...document.querySelectorAll('#atom-cams img')].every((e, k) => e.src !== old[k])",
                           arg=srcs)
    assert len(srcs) == 2 and frame(page) == 39
    expect_text(page, "#atom-message", "No proposal yet")
    expect_text(page, "#atom-validation", "Cannot be accepted")  # two unnamed halves until named
    shot(setup, page, "review-two-cameras")
    ctx.close()


def test_an_annotator_cannot_accept_or_reject_but_saves(setup):
    ep = setup["episodes"][4]
    store = setup["store"]
    base = store.latest(ep)
    ctx = login(setup, "carol")
    page = open_episode(ctx, setup, ep)
    page.keyboard.press("]")
    page.keyboard.press(">")  # boundary +10: a valid edit
    page.wait_for_function(f"[...document.querySelectorAll('#atom-timeline .atom-bd')].some(e => +e.dataset.frame === {base.boundaries[0] + 10})")
    expect_text(page, "#atom-validation", "Valid")
    page.keyboard.press("a")  # the page offers accept; the server refuses it
    expect_text(page, "#atom-message", "accepting needs the reviewer role")
    page.fill("#atom-reason textarea, #atom-reason input", "wrong object")  # a reason: only the role stops it
    page.click("#atom-reject")
    expect_text(page, "#atom-message", "rejecting needs the reviewer role")
    shot(setup, page, "review-annotator-refused")
    assert store.latest(ep).revision == base.revision
    page.keyboard.press("w")
    expect_text(page, "#atom-message", f"Saved revision {base.revision + 1}")
    saved = store.latest(ep)
    assert (saved.status.value, saved.author, saved.boundaries[0]) == ("needs_review", "carol", base.boundaries[0] + 10)
    assert not page.errors
    ctx.close()


def test_wrong_password_is_refused(setup):
    url = setup["server"].url
    ctx = setup["browser"].new_context()
    took = []
    for _ in range(2):  # each failure in a row is answered later: 0.5 s, then 1 s
        start = time.monotonic()
        bad = ctx.request.post(url + "/login", form={"username": "alice", "password": "wrong"})
        took.append(time.monotonic() - start)
        assert bad.status in (400, 401)
    assert took[0] >= 0.5 and took[1] >= 1.0, took
    assert ctx.request.get(url + "/config").status == 401
    page = ctx.new_page()
    page.goto(url + "/", wait_until="load")
    page.wait_for_selector("input[type=password]", timeout=15000)
    ctx.close()


def _raw_get(port: int, path: str, cookie: str | None) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (clients normalise `../` away)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    if cookie:
        conn.putheader("Cookie", cookie)
    conn.endheaders()
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_file_route_serves_nothing_outside_the_app(setup):
    server, store = setup["server"], setup["store"]
    ctx = login(setup, "alice")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in ctx.cookies())
    video = store.episode(setup["episodes"][0]).cameras[0].path
    targets = ["/etc/passwd", "../../../../../../etc/passwd", "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
               "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", str(store.path), video,
               os.path.relpath(store.path), "/tmp/gradio/../../etc/passwd"]
    for route in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
        for target in targets:
            for who in (cookie, None):
                status, body = _raw_get(server.port, route + target, who)
                assert status >= 400, (route + target, status)
                assert b"root:" not in body and b"SQLite format" not in body and b"ftyp" not in body[:64]
    ctx.close()

