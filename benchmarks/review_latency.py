"""How fast `atom-review` feels, measured in headless Chromium against a plain Gradio baseline run
in the same process and browser.

- Frame step: key press -> new frame painted (the image decoded and the next animation frame, the one that paints it, begun), ours
  (frames prefetched as JPEG data URLs, scrubbed in the browser) vs a plain Gradio slider driving a
  gr.Image through the frame layer (one server round trip per step), on the same episodes: the
  Meta-World fixture (AV1, 128x128) and a long-GOP H.264 video (480x360, keyframe every 250 frames,
  from benchmarks/video_access.py), where stepping crosses the prefetch window's edges.
- Segment click far from the cursor on the long-GOP video: click -> painted (ours only; the
  baseline has no timeline); and a seek to an arbitrary far frame, which nothing prefetched.
- Open the next episode: "n" -> the new episode's first frame painted.
- The queue with 10,000 episodes (synthesised store rows, two proposals each): reading the store
  at start, and changing the sort in the browser -> the table redrawn.

Run from the repository root: `python -m benchmarks.review_latency [--json OUT]` (a few minutes;
needs /usr/bin/chromium). Figures go to the README.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}.items():
    os.environ.setdefault(key, value)

import numpy as np  # noqa: E402

from atomvla.curate.episode import Episode  # noqa: E402
from atomvla.curate.sources import open_source  # noqa: E402
from atomvla.curate.store import Store  # noqa: E402
from atomvla.schemas import Decomposition, EpisodeMeta, Provenance, Subtask  # noqa: E402
from benchmarks.video_access import make_long_gop  # noqa: E402
from tests.e2e.review_server import CHROMIUM, CHROMIUM_ARGS, ReviewServer, free_port  # noqa: E402
from tests.ui.review_store import build_review_store  # noqa: E402

STEPS = 120  # key presses per frame-step measurement
JUMPS = 12
OPENS = 8
QUEUE_EPISODES = 10_000
SORT_CHOICES = ("queue order", "confidence (lowest first)", "disagreement (highest first)")

# In-page probe: key press time, and the time the watched image shows a new frame, painted.
PROBE = """
(root) => {
  const L = window.__lat = { t0: 0, samples: [], last: null };
  // Only the user's own input (the app clicks its hidden buttons itself: those are not trusted).
  window.addEventListener('keydown', (e) => { if (e.isTrusted) L.t0 = performance.now(); }, true);
  window.addEventListener('click', (e) => { if (e.isTrusted) L.t0 = performance.now(); }, true);
  const seen = () => {
    const img = document.querySelector(root + ' img');
    if (!img || !img.src || img.src === L.last) return;
    L.last = img.src;
    const t0 = L.t0;
    img.decode().catch(() => {}).then(() => requestAnimationFrame(() => {
      if (t0) L.samples.push(performance.now() - t0);
    }));
  };
  new MutationObserver(seen).observe(document.querySelector(root), { subtree: true, childList: true, attributes: true });
}
"""


def pct(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def measure(page, action, n: int, timeout_ms: int = 15000) -> list[float]:
    """Run `action()` n times, each time waiting for the next painted frame; the latencies in ms.
    An action returning False shows a frame identical to the last (no new image to wait for)."""
    out = []
    for _ in range(n):
        k = page.evaluate("window.__lat.samples.length")
        if action() is False:
            page.wait_for_timeout(30)
            continue
        page.wait_for_function(f"window.__lat.samples.length > {k}", timeout=timeout_ms)
        out.append(page.evaluate("window.__lat.samples[window.__lat.samples.length - 1]"))
    return out


def long_gop_store(store: Store, root: Path) -> str:
    """Index the long-GOP video (a video-folder source) with a three-subtask proposal; its episode id."""
    folder = root / "long_gop"
    folder.mkdir()
    make_long_gop(folder / "long_gop.mp4")
    (folder / "task.txt").write_text("follow the red square")
    scanned = list(open_source(str(folder)).scan())
    metas = [m for m in scanned if isinstance(m, EpisodeMeta)]
    if not metas:
        raise SystemExit(f"long-GOP video not indexed: {scanned}")
    store.upsert_episodes(metas)
    meta = metas[0]
    n = meta.n_frames
    for author, parts in (("heuristic", 5), ("vlm", 4)):  # two proposals: 7 distinct far segment starts
        cuts = [round(n * k / parts) for k in range(parts + 1)]
        store.add_revision(Decomposition(
            episode_id=meta.episode_id, n_frames=n, author=author,
            subtasks=tuple(Subtask(start_frame=a, end_frame=b, instruction=f"step {k + 1}", skill="other")
                           for k, (a, b) in enumerate(zip(cuts, cuts[1:]))),
            provenance=Provenance(backend=author, confidence=0.5)))
    return meta.episode_id


def synth_queue_store(path: Path, template: Store) -> Store:
    """QUEUE_EPISODES episodes copied from the fixture's rows (same video), two proposals each."""
    store = Store(path)
    metas = template.episodes()
    rows, decs = [], []
    for i in range(QUEUE_EPISODES):
        m = metas[i % len(metas)]
        rows.append(m.model_copy(update={"episode_id": f"synthetic/{i}", "dataset": "synthetic", "episode_index": i}))
    store.upsert_episodes(rows)
    rng = np.random.default_rng(0)
    for m in rows:
        for author, conf in (("heuristic", float(rng.uniform(0.2, 0.9))), ("vlm", float(rng.uniform(0.5, 1.0)))):
            cut = int(rng.integers(10, m.n_frames - 10))
            decs.append(Decomposition(
                episode_id=m.episode_id, n_frames=m.n_frames, author=author,
                subtasks=(Subtask(start_frame=0, end_frame=cut, instruction="pick up the puck", skill="pick"),
                          Subtask(start_frame=cut, end_frame=m.n_frames, instruction="place it", skill="place")),
                provenance=Provenance(backend=author, confidence=conf)))
    store.add_revisions(decs)
    return store


def baseline_app(episode: Episode):
    """The plain way: a slider whose change event returns the frame as a gr.Image."""
    import gradio as gr

    frames = episode.frames()
    with gr.Blocks() as demo:
        slider = gr.Slider(0, episode.meta.n_frames - 1, step=1, value=0, label="frame", elem_id="bslider")
        image = gr.Image(value=frames.get(0), elem_id="bimg", height=360)
        slider.change(lambda i: frames.get(int(i)), slider, image, show_progress="hidden")
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def open_ours(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#atom-cams img[src^='data:image/jpeg']", timeout=60000)
    page.evaluate(PROBE, "#atom-cams")
    return page


def stepper(page, episode: Episode):
    """A frame-step key press: forward to the last frame, then back. Returns False where the new
    frame is pixel-identical to the last (a still scene): then no browser shows a new image."""
    n = min(episode.meta.n_frames, STEPS + 1)
    frames = episode.frames().get_many(list(range(n)))
    state = {"frame": 0, "dir": 1}

    def press() -> bool:
        if not 0 <= state["frame"] + state["dir"] < n:
            state["dir"] = -state["dir"]
        old = state["frame"]
        state["frame"] += state["dir"]
        page.keyboard.press("ArrowRight" if state["dir"] > 0 else "ArrowLeft")
        return not np.array_equal(frames[old], frames[state["frame"]])

    return press


def bench_steps(browser, server: ReviewServer, episode: Episode) -> list[float]:
    page = open_ours(browser, f"{server.url}/?episode={episode.meta.episode_id}")
    ms = measure(page, stepper(page, episode), STEPS)
    page.close()
    return ms


def bench_baseline_steps(browser, episode: Episode) -> list[float]:
    demo, url = baseline_app(episode)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="load")
    page.wait_for_selector("#bimg img", timeout=60000)
    page.evaluate(PROBE, "#bimg")
    page.focus("#bslider input[type=range]")
    ms = measure(page, stepper(page, episode), STEPS)
    page.close()
    demo.close()
    return ms


def bench_jumps(browser, server: ReviewServer, episode_id: str, n_frames: int) -> list[float]:
    """Seek to an arbitrary far frame (`atomReview.seek`, as moving the slider far does), a fresh
    spot each time (alternating ends, so nothing there was prefetched); then wait for the window
    around it, as a reviewer looking at the frame would."""
    page = open_ours(browser, f"{server.url}/?episode={episode_id}")
    page.locator("#atom-timeline .atom-tl-main .atom-seg").last.click()  # a real click first: same path
    page.wait_for_function("window.atomReview.has(window.atomReview.cursor)", timeout=30000)
    targets = [(n_frames - 1 - 53 * k) if k % 2 == 0 else (130 + 53 * k) for k in range(JUMPS)]
    ms = []
    for f in targets:
        ms += measure(page, lambda f=f: page.evaluate(
            "(f) => { window.__lat.t0 = performance.now(); window.atomReview.seek(f); }", f), 1)
        page.wait_for_function("!window.atomReview.pending && window.atomReview.jumping === null", timeout=30000)
    page.close()
    return ms


def bench_segment_clicks(browser, server: ReviewServer, episode_id: str) -> list[float]:
    """Open the episode, then click a timeline segment far from the cursor: a fresh page each time
    (nothing of the episode in the browser but what opening it fetched)."""
    page = open_ours(browser, f"{server.url}/?episode={episode_id}")
    ms = []
    for k in range(JUMPS):
        if k:
            page.reload(wait_until="load")
            page.wait_for_selector("#atom-cams img[src^='data:image/jpeg']", timeout=60000)
            page.evaluate(PROBE, "#atom-cams")
        page.wait_for_function("window.atomReview.marked", timeout=60000)
        # The timeline comes after the frames: under load it may not be on the page yet.
        page.wait_for_selector("#atom-timeline .atom-seg", timeout=60000)
        far = [el for el in page.query_selector_all("#atom-timeline .atom-seg") if int(el.get_attribute("data-start")) >= 300]
        ms += measure(page, far[k % len(far)].click, 1)
    page.close()
    return ms


def bench_open_next(browser, server: ReviewServer, start: str) -> tuple[list[float], list[float]]:
    """"n" -> the next episode's first frame painted, and -> its whole page (header and timeline) shown."""
    page = open_ours(browser, f"{server.url}/?episode={start}")
    painted, complete = [], []
    for _ in range(OPENS):
        old = page.evaluate("window.atomReview.ep")
        painted += measure(page, lambda: page.keyboard.press("n"), 1)
        page.wait_for_function(
            "(old) => { const ep = window.atomReview.ep; return ep !== old &&"
            " document.querySelector('#atom-header').innerText.includes(ep) &&"
            " document.querySelector('#atom-timeline .atom-seg') !== null; }", arg=old, timeout=30000)
        complete.append(page.evaluate("performance.now() - window.__lat.t0"))
    page.close()
    return painted, complete


def bench_queue_sort(browser, server: ReviewServer) -> list[float]:
    """Pick another sort order in the dropdown -> the queue table shows the new order."""
    page = open_ours(browser, server.url + "/")
    page.wait_for_function("(document.querySelector('#atom-queue')?.innerText || '').includes('/')", timeout=60000)
    ms = []
    for k in range(6):
        before = page.inner_text("#atom-queue")
        page.click("#atom-f-sort input")
        option = page.get_by_role("option", name=SORT_CHOICES[(k + 1) % len(SORT_CHOICES)])
        t0 = time.perf_counter()
        option.click()
        page.wait_for_function("(b) => document.querySelector('#atom-queue').innerText !== b", arg=before, timeout=60000)
        ms.append((time.perf_counter() - t0) * 1000)
    page.close()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict[str, dict] = {}

    def put(name: str, ms: list[float], **extra) -> None:
        p50, p95 = pct(ms)
        results[name] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "n": len(ms), **extra}
        print(f"{name:55s} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  (n={len(ms)})", flush=True)

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        root = Path(tmp)
        store = build_review_store(root / "review.sqlite")
        long_id = long_gop_store(store, root)
        fixture_id = store.episodes(dataset="metaworld_lerobot_v30")[0].episode_id
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        server = ReviewServer(root / "review.sqlite", root / "server.log")
        try:
            for name, ep in (("fixture AV1 128x128", fixture_id), ("long-GOP H.264 480x360", long_id)):
                put(f"frame step, ours ({name})", bench_steps(browser, server, Episode(store.episode(ep))))
                put(f"frame step, plain Gradio slider ({name})", bench_baseline_steps(browser, Episode(store.episode(ep))))
            put("segment click far from the cursor (long-GOP H.264)", bench_segment_clicks(browser, server, long_id))
            put("seek to any far frame, nothing prefetched (long-GOP H.264)",
                bench_jumps(browser, server, long_id, store.episode(long_id).n_frames))
            painted, complete = bench_open_next(browser, server, fixture_id)
            put("open next episode: first frame painted (fixture store)", painted)
            put("open next episode: whole page shown (fixture store)", complete)
        finally:
            server.stop()

        t0 = time.perf_counter()
        big = synth_queue_store(root / "big.sqlite", store)
        print(f"(synthesised {QUEUE_EPISODES} episodes in {time.perf_counter() - t0:.1f} s)", flush=True)
        from atomvla.ui.review_queue import SORTS, QueueFilter, ReviewQueue

        t0 = time.perf_counter()
        queue = ReviewQueue(big)
        results["queue start (read 10,000 episodes + 20,000 revisions)"] = {"ms": round((time.perf_counter() - t0) * 1000, 1)}
        print(f"queue start, 10,000 episodes: {results['queue start (read 10,000 episodes + 20,000 revisions)']['ms']} ms")
        sort_ms = []
        for sort in SORTS * 3:
            t0 = time.perf_counter()
            queue.select(QueueFilter(status="unreviewed", sort=sort))
            sort_ms.append((time.perf_counter() - t0) * 1000)
        put("queue filter+sort in the server (10,000 episodes)", sort_ms)
        server = ReviewServer(root / "big.sqlite", root / "server-big.log")
        try:
            put("queue sort change in the browser (10,000 episodes)", bench_queue_sort(browser, server))
            painted, complete = bench_open_next(browser, server, "synthetic/0")
            put("open next episode: first frame painted (10,000-episode store)", painted)
            put("open next episode: whole page shown (10,000-episode store)", complete)
        finally:
            server.stop()
        browser.close()

    steps = {k: v for k, v in results.items() if k.startswith("frame step")}
    for name in ("fixture AV1 128x128", "long-GOP H.264 480x360"):
        ours, base = steps[f"frame step, ours ({name})"], steps[f"frame step, plain Gradio slider ({name})"]
        print(f"frame step {name}: baseline/ours p50 {base['p50_ms'] / ours['p50_ms']:.1f}x, "
              f"p95 {base['p95_ms'] / ours['p95_ms']:.1f}x; target p95 <= 50 ms: "
              f"{'met' if ours['p95_ms'] <= 50 else 'NOT met'}")
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs (figures scale with it)")
    results["load_average"] = round(load, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
