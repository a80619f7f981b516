"""atom-review at the window sizes annotators use, in real headless Chromium: the queue shows every
column without horizontal scrolling and nothing in it is cut off, timeline labels are readable, the
filters show their whole value, and the page never scrolls sideways. Measured with the browser's
boxes and computed styles, not pixel snapshots."""

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

    # The status filter shows its whole value; the page never needs scrolling sideways.
    assert page.eval_on_selector("#atom-f-status input", "e => e.scrollWidth <= e.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.close()
