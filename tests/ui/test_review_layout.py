"""atom-review at the window sizes annotators use, in real headless Chromium: the queue shows every
column without horizontal scrolling and nothing in it is cut off, timeline labels are readable, the
filters show their whole value, the Save/Accept row is on the first screen, the open episode is
marked in the queue, and the page never scrolls sideways. Then the queue as annotators drive it:
search (its keys its own, the app's keys back after it), sorting by a header, and "n" keeping the
open row in view. Measured with the browser's boxes and computed styles, not pixel snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from atomvla.schemas import Decomposition, Provenance, Status, Subtask
from tests.e2e.review_server import CHROMIUM, CHROMIUM_ARGS, ReviewServer
from tests.ui.review_store import build_review_store

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (make browser installs it)")

WINDOWS = [(1024, 768), (1280, 800), (1400, 900), (1920, 1080)]
LONG_DATASET = "libero_90_kitchen_scene3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo"
LONG_TASK = ("pick up the black bowl between the plate and the ramekin and place it on the plate, "
             "then open the top drawer of the wooden cabinet and put the bowl inside it")
SHOWN = ["needs review", "proposed", "accepted", "rejected", "failed", "unlabelled"]

# Per cell of the queue: its box, and the box it can be seen through (the queue's own box cut by
# every scrolling or clipping container between the two).
CELLS = """() => {
  const queue = document.querySelector('#atom-queue');
  const q = queue.getBoundingClientRect();
  return [...queue.querySelectorAll('th, td')].filter(c => c.getClientRects().length).map(c => {
    let left = q.left, right = q.right;
    for (let el = c.parentElement; el && el !== queue; el = el.parentElement) {
      if (getComputedStyle(el).overflowX !== 'visible') {
        const r = el.getBoundingClientRect();
        left = Math.max(left, r.left); right = Math.min(right, r.right);
      }
    }
    const r = c.getBoundingClientRect();
    return {text: c.textContent.trim(), left: r.left, right: r.right, seen: [left, right],
            cut: c.scrollWidth > c.clientWidth + 1};
  });
}"""


# The Save/Accept row's controls: top and bottom in the window, the window's height and scroll.
VERDICT_ROW = """() => ({
  boxes: ['#atom-save', '#atom-accept', '#atom-reason', '#atom-reject', '#atom-flag'].map(s => {
    const r = document.querySelector(s).getBoundingClientRect(); return [s, r.top, r.bottom]; }),
  height: window.innerHeight, scrolled: window.scrollY})"""

# The queue rows marked open, and whether the first is seen whole: inside the queue's scrolling box
# below its sticky header, and inside the window.
OPEN_ROW = """() => {
  const rows = [...document.querySelectorAll('#atom-queue tr.atom-q-open')];
  if (!rows.length) return {open: []};
  const box = document.querySelector('#atom-queue .atom-q').getBoundingClientRect();
  const head = document.querySelector('#atom-queue thead').getBoundingClientRect();
  const r = rows[0].getBoundingClientRect();
  return {open: rows.map(e => e.dataset.episode),
          seen: r.top >= head.bottom - 1 && r.bottom <= box.bottom + 1 && r.top >= 0 && r.bottom <= window.innerHeight};
}"""


def _varied_store(path: Path):
    """The fixture's episodes plus 30 with a long dataset name and task, one of every status, and
    learned re-proposals: the widest queue an annotator meets."""
    store = build_review_store(path)
    template = next(iter(store.episodes("metaworld_lerobot_v30")))
    metas = [template.model_copy(update={"dataset": LONG_DATASET, "episode_id": f"{LONG_DATASET}/{i}",
                                         "episode_index": i, "task": LONG_TASK}) for i in range(30)]
    store.upsert_episodes(metas)
    n = template.n_frames
    subtasks = (Subtask(start_frame=0, end_frame=n // 2, instruction=LONG_TASK[:70], skill="pick"),
                Subtask(start_frame=n // 2, end_frame=n, instruction=LONG_TASK[70:], skill="place"))
    made = [(Status.accepted, "annotator", None), (Status.rejected, "annotator", None),
            (Status.needs_review, "openai", None), (Status.failed, "openai", None),
            (Status.proposed, "learned", Provenance(backend="learned", confidence=0.42, profile="auto", learned_from=12)),
            None]  # unlabelled
    store.add_revisions(
        Decomposition(episode_id=m.episode_id, n_frames=n, subtasks=() if how[0] is Status.failed else subtasks,
                      status=how[0], author=how[1], provenance=how[2] or Provenance(backend=how[1], confidence=0.8),
                      note="timed out" if how[0] is Status.failed else None)
        for m, how in zip(metas, made * 5) if how is not None)
    return store


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    _varied_store(root / "review.sqlite")
    srv = ReviewServer(root / "review.sqlite", root / "server.log", learn=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("width,height", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_queue_and_editor_fit_the_window(server, browser, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server.url + "/", wait_until="load")
    page.wait_for_function("window.atomReview && window.atomReview.ep", timeout=30000)
    page.click("#atom-f-status input")
    page.get_by_role("option", name="all", exact=True).click()
    page.wait_for_function("(document.querySelector('#atom-counts')?.innerText || '').startsWith('41 shown')",
                           timeout=30000)
    page.wait_for_function(f"(document.querySelector('#atom-queue')?.innerText || '').includes('{LONG_DATASET}/0')",
                           timeout=30000)

    cells = page.evaluate(CELLS)
    hidden = [c for c in cells if c["left"] < c["seen"][0] - 1 or c["right"] > c["seen"][1] + 1]
    assert not hidden, f"{len(hidden)} of {len(cells)} queue cells lie (partly) outside its visible box, e.g. {hidden[:3]}"
    cut = [c["text"] for c in cells if c["cut"]]
    assert not cut, f"queue cells whose text is cut off: {cut[:5]}"
    texts = " ".join(c["text"] for c in cells)
    assert all(s in texts for s in SHOWN), texts[:500]  # every status has a row on the page
    assert "12 accepts" in texts  # a learned re-proposal says so

    # Timeline labels: white on their skill's colour (the page's prose styles once made them dark),
    # and one longer than its segment ends in an ellipsis instead of being cut mid-word.
    labels = page.eval_on_selector_all(
        "#atom-timeline .atom-tl-main .atom-seg span",
        "els => els.map(e => [getComputedStyle(e).color, e.scrollWidth > e.clientWidth, getComputedStyle(e).textOverflow])")
    assert labels and {c for c, _, _ in labels} == {"rgb(255, 255, 255)"}, labels
    assert all(how == "ellipsis" for _, long, how in labels if long), labels

    # The Save/Accept row is whole on the first screen, without scrolling.
    row = page.evaluate(VERDICT_ROW)
    assert row["scrolled"] == 0 and all(0 <= top and bottom <= row["height"] for _, top, bottom in row["boxes"]), row
    # The open episode is marked in the queue, and in view.
    assert page.evaluate(OPEN_ROW) == {"open": [page.evaluate("window.atomReview.ep")], "seen": True}

    # The status filter shows its whole value; the page never needs scrolling sideways.
    assert page.eval_on_selector("#atom-f-status input", "e => e.scrollWidth <= e.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.close()


def _open_page(server, browser, query: str = ""):
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/" + query, wait_until="load")
    page.wait_for_function("window.atomReview && window.atomReview.ep", timeout=30000)
    page.wait_for_selector("#atom-timeline .atom-seg", timeout=30000)
    page.wait_for_selector("#atom-queue tr.atom-q-open", timeout=30000)
    page.errors = errors
    return page


def _listed(page) -> list[str]:
    return page.eval_on_selector_all("#atom-queue tbody tr[data-episode]", "els => els.map(e => e.dataset.episode)")


def _boundaries(page) -> list[int]:
    return page.eval_on_selector_all("#atom-timeline .atom-tl-main .atom-bd", "els => els.map(e => +e.dataset.frame)")


def test_search_keeps_its_keys_and_opens_the_match(server, browser):
    page = _open_page(server, browser)
    first, bounds = page.evaluate("window.atomReview.ep"), _boundaries(page)
    page.keyboard.press("/")  # the search box takes the keys ...
    assert page.evaluate("!!document.activeElement.closest('#atom-f-search')")
    text = "sweep the cube into the hole"  # s split, w save, e edit, n next, b move, ...: all typed, none acts
    page.keyboard.type(text, delay=20)
    page.wait_for_function("(document.querySelector('#atom-counts')?.innerText || '').startsWith('1 shown')",
                           timeout=30000)
    assert _listed(page) == ["metaworld_lerobot_v30/8"]
    assert page.input_value("#atom-f-search textarea, #atom-f-search input") == text
    assert page.evaluate("window.atomReview.ep") == first and _boundaries(page) == bounds
    assert page.inner_text("#atom-message").strip() == ""  # nothing saved, nothing refused

    page.keyboard.press("Enter")  # ... Enter opens the first match and gives the keys back
    page.wait_for_function("window.atomReview.ep === 'metaworld_lerobot_v30/8'", timeout=30000)
    assert not page.evaluate("!!document.activeElement.closest('#atom-f-search')")
    assert page.evaluate(OPEN_ROW)["open"] == ["metaworld_lerobot_v30/8"]

    page.keyboard.press("/")  # clear the search, Esc, and the app's keys work again: n opens the next
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.wait_for_function("(document.querySelector('#atom-counts')?.innerText || '').startsWith('26 shown')",
                           timeout=30000)
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    page.wait_for_function("window.atomReview.ep === 'metaworld_lerobot_v30/9'", timeout=30000)
    page.wait_for_function("document.querySelector('#atom-queue tr.atom-q-open')?.dataset.episode === 'metaworld_lerobot_v30/9'",
                           timeout=30000)
    assert not page.errors, page.errors
    page.close()


def test_headers_sort_the_queue(server, browser):
    page = _open_page(server, browser)

    def sort_by(label: str, keyboard: bool = False) -> None:
        button = page.locator("#atom-queue .atom-q-sort", has_text=label)
        if keyboard:  # a header is a button: focus it, Enter
            button.focus()
            page.keyboard.press("Enter")
        else:
            button.click()
        page.wait_for_function(  # the table redrawn in the header's order
            "(l) => (document.querySelector('#atom-queue .atom-q-sorted')?.innerText || '').startsWith(l)",
            arg=label, timeout=30000)

    def column(k: int) -> list[str]:
        return page.eval_on_selector_all(
            f"#atom-queue tbody tr[data-episode] td:nth-child({k})", "els => els.map(e => e.innerText.split('\\n')[0])")

    sort_by("conf.")
    confs = [float(c) for c in column(3) if c != "–"]
    assert len(confs) >= 20 and confs == sorted(confs), confs
    assert page.input_value("#atom-f-sort input") == "confidence (lowest first)"
    sort_by("status")
    statuses = column(2)
    rank = ["needs review", "proposed", "unlabelled"]
    assert statuses == sorted(statuses, key=rank.index) and set(statuses) == set(rank), statuses
    sort_by("disagr.", keyboard=True)
    dis = [float(c.split()[-1]) for c in page.eval_on_selector_all(
        "#atom-queue tbody tr[data-episode] td:nth-child(3)", "els => els.map(e => e.innerText)") if c.split()[-1] != "–"]
    assert dis and dis == sorted(dis, reverse=True), dis
    sort_by("episode")
    assert page.input_value("#atom-f-sort input") == "queue order"
    assert not page.errors, page.errors
    page.close()


def test_next_keeps_the_open_episode_marked_and_in_view(server, browser):
    page = _open_page(server, browser)
    rows = _listed(page)
    assert len(rows) >= 20  # more rows than the queue's box shows at once
    k = rows.index(page.evaluate("window.atomReview.ep"))
    for step in range(1, 16):
        before = page.evaluate("window.atomReview.ep")
        page.keyboard.press("n")
        page.wait_for_function("(b) => window.atomReview.ep !== b", arg=before, timeout=30000)
        expected = rows[(k + step) % len(rows)]
        page.wait_for_function("(e) => document.querySelector('#atom-queue tr.atom-q-open')?.dataset.episode === e",
                               arg=expected, timeout=30000)
        assert page.evaluate(OPEN_ROW) == {"open": [expected], "seen": True}, (step, expected)
    assert not page.errors, page.errors
    page.close()
