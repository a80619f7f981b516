// atom-review in the browser: frames around the cursor are held here as JPEG data URLs, so a
// frame step repaints without a server round trip; the server is asked for a new window when the
// cursor comes near the edge of the frames held. Keys drive every edit by clicking the app's
// (sometimes hidden) buttons, whose events read the cursor and the selected boundary from here.
(() => {
  const R = (window.atomReview = {
    ep: null, n: 0, fps: 20, cams: [], frames: {}, radius: 60,
    cursor: 0, dir: 1, sel: 0, segIndex: -1, playing: null, pending: false, jumping: null, askedAt: 0, asked: {}, takeAuthor: "", pickEpisode: "", sortPick: "",
  });
  const $ = (sel) => document.querySelector(sel);
  const click = (id) => { const el = document.getElementById(id); if (el) el.click(); };

  R.load = (json) => {
    if (!json) return;
    const p = JSON.parse(json);
    R.ep = p.episode_id; R.n = p.n_frames; R.fps = p.fps; R.cams = p.cameras; R.radius = p.radius;
    R.frames = {}; R.sel = 0; R.segIndex = -1; R.pending = false; R.jumping = null;
    R.stop();
    const box = $("#atom-cams");
    box.innerHTML = "";
    for (const cam of R.cams) {
      R.frames[cam] = new Array(R.n);
      // Built with DOM calls, not markup: a camera's name comes from the dataset.
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = cam; img.dataset.cam = cam;
      const caption = document.createElement("figcaption");
      caption.textContent = cam;
      fig.append(img, caption);
      box.appendChild(fig);
    }
    const slider = $("#atom-slider");
    slider.max = String(R.n - 1);
    R.store(p);
    history.replaceState(null, "", "?episode=" + encodeURIComponent(R.ep));
    R.opening = true;
    R.seek(p.cursor);
    R.opening = false;
    R.marked = false;
    click("atom-marks-btn");  // then the frames that timeline clicks jump to
    R.fit();
    R.markQueue();
  };

  // Fit the page to the window: the cameras give up height (140-420 px) until the Save/Accept row
  // is whole on the first screen, and the queue's box ends at the window's bottom with the Next
  // button under it. Run on opening, when the timeline or the queue is redrawn, and on resizing.
  const VERDICTS = ["#atom-save", "#atom-accept", "#atom-reason", "#atom-reject", "#atom-flag"];
  const MARGIN = 8;
  const pageTop = (el) => el.getBoundingClientRect().top + scrollY;
  const pageBottom = (el) => el.getBoundingClientRect().bottom + scrollY;
  R.fit = () => {
    const root = document.documentElement.style;
    const img = $("#atom-cams img"), verdicts = VERDICTS.map((s) => $(s)).filter(Boolean);
    if (img && verdicts.length) {
      const spare = innerHeight - MARGIN - Math.max(...verdicts.map(pageBottom));
      const shown = img.getBoundingClientRect().height || parseFloat(getComputedStyle(img).maxHeight);
      const h = Math.round(Math.max(140, Math.min(420, shown + spare)));
      if (root.getPropertyValue("--atom-cam-h") !== `${h}px`) root.setProperty("--atom-cam-h", `${h}px`);
    }
    const box = $("#atom-queue .atom-q"), next = $("#atom-next");
    if (box && next) {
      const below = pageBottom(next) - pageBottom(box);  // the Next button and the gap above it
      const h = Math.round(Math.max(200, innerHeight - MARGIN - pageTop(box) - below));
      if (root.getPropertyValue("--atom-q-h") !== `${h}px`) root.setProperty("--atom-q-h", `${h}px`);
    }
  };
  addEventListener("resize", () => { R.fit(); R.markQueue(); });

  // The open episode's row in the queue: marked, and scrolled into the queue's own view (the page
  // itself does not move). Run on opening and whenever the server redraws the table.
  R.markQueue = () => {
    const box = $("#atom-queue .atom-q");
    if (!box) return;
    let open = null;
    for (const tr of box.querySelectorAll("tbody tr[data-episode]")) {
      const on = tr.dataset.episode === R.ep;
      tr.classList.toggle("atom-q-open", on);
      if (on) open = tr;
    }
    if (!open) return;
    const view = box.getBoundingClientRect(), row = open.getBoundingClientRect();
    const top = view.top + box.querySelector("thead").getBoundingClientRect().height;  // under the sticky header
    if (row.top < top) box.scrollTop -= top - row.top;
    else if (row.bottom > view.bottom) box.scrollTop += Math.min(row.bottom - view.bottom, row.top - top);
  };

  // A payload holds a run of frames (`first`, `frames`) or scattered ones (`at`: {frame: url}).
  R.store = (p) => {
    for (const cam of R.cams) {
      const urls = (p.frames && p.frames[cam]) || [];
      for (let k = 0; k < urls.length; k++) R.frames[cam][p.first + k] = urls[k];
      for (const [i, url] of Object.entries((p.at && p.at[cam]) || {})) R.frames[cam][+i] = url;
    }
  };

  R.addFrames = (json) => {
    if (!json) return;
    const p = JSON.parse(json);
    if (p.episode_id !== R.ep) return;  // an answer for the episode before (its flags were reset)
    if (p.radius === 1) R.jumping = null; else if (p.radius > 1) R.pending = false; else R.marked = true;
    R.store(p);
    R.paint();  // paints the cursor's frame if it came, and asks for the rest of the window
  };

  R.has = (i) => R.cams.every((c) => R.frames[c][i] !== undefined);

  R.seek = (i) => {
    if (!R.n) return;
    const to = Math.max(0, Math.min(R.n - 1, Math.round(i)));
    if (to !== R.cursor) R.dir = to > R.cursor ? 1 : -1;
    R.cursor = to;
    R.paint();
  };

  R.paint = () => {
    const i = R.cursor;
    for (const img of document.querySelectorAll("#atom-cams img")) {
      const url = R.frames[img.dataset.cam][i];
      if (url && img.src !== url) img.src = url;
      img.classList.toggle("atom-stale", !url);
    }
    const label = $("#atom-frame");
    if (label) label.textContent = `frame ${i} / ${R.n - 1} · ${(i / R.fps).toFixed(2)} s`;
    const slider = $("#atom-slider");
    if (slider && slider.value !== String(i)) slider.value = String(i);
    // The instruction/skill panel follows the subtask under the cursor when the cursor moves
    // (after an edit or on opening, the server has sent the panel with the timeline).
    const idx = R.drawCursor();
    if (idx !== R.segIndex) { R.segIndex = idx; if (!R.opening) R.syncSegment(); }
    // Asking the server costs the main thread a little (Gradio prepares the request): do it after
    // this frame is painted, not before.
    requestAnimationFrame(() => setTimeout(R.prefetch, 0));
  };

  // Ask for the window around the cursor when a frame within a quarter window is missing. After a
  // jump (the cursor's own frame missing) ask for that frame alone first, even while a window is
  // on its way: it comes back without waiting for a whole window to be decoded and encoded, and
  // the window around it follows.
  R.request = (center, radius) => {
    const kind = radius === 1 ? "jump" : "window";
    R.seq = (R.seq || 0) + 1;  // every answer differs from the last, so each one is seen
    R.asked[kind] = { center, radius: radius + R.seq * 1000 };  // read by the event's js when it sends the request
    click(kind === "jump" ? "atom-jump-btn" : "atom-win-btn");
  };
  R.prefetch = () => {
    if (!R.n) return;
    const stale = performance.now() - R.askedAt > 5000;  // a request lost on the way is asked again
    if (!R.has(R.cursor)) {
      if (R.jumping !== R.cursor || stale) { R.jumping = R.cursor; R.askedAt = performance.now(); R.request(R.cursor, 1); }
      return;
    }
    if (R.pending && !stale) return;
    // Half a window of lead: the next window is on its way long before the cursor gets there. It
    // is centred ahead of the cursor in the direction of travel.
    const margin = Math.max(1, Math.floor(R.radius / 2));
    // Window [c - radius + 1, c + radius - 1] with c = cursor +- margin covers cursor +- (margin - 1).
    for (let i = Math.max(0, R.cursor - margin + 1); i <= Math.min(R.n - 1, R.cursor + margin - 1); i++) {
      if (!R.has(i)) {
        R.pending = true; R.askedAt = performance.now();
        R.request(Math.max(0, Math.min(R.n - 1, R.cursor + R.dir * margin)), R.radius);
        return;
      }
    }
  };

  // The open episode's segments; none while the timeline still shows the episode before (opening
  // draws the frames first, the timeline after): a key pressed then must not pick the old boundaries.
  R.segments = () => {
    const tl = [...document.querySelectorAll("#atom-timeline .atom-tl")].find((el) => el.dataset.episode === R.ep);
    return tl ? [...tl.querySelectorAll(".atom-tl-main .atom-seg")].map(
      (el) => ({ start: +el.dataset.start, end: +el.dataset.end, el })) : [];
  };

  R.drawCursor = () => {
    const tl = $("#atom-timeline .atom-tl");
    if (!tl || !R.n) return -1;
    const cur = tl.querySelector(".atom-cursor");
    const left = `${((100 * (R.cursor + 0.5)) / R.n).toFixed(3)}%`;
    if (cur && cur.style.left !== left) cur.style.left = left;  // only real changes: no observer loop
    const segs = R.segments();
    const idx = segs.findIndex((s) => s.start <= R.cursor && R.cursor < s.end);
    segs.forEach((s, k) => s.el.classList.toggle("atom-current", k === idx));
    for (const bd of tl.querySelectorAll(".atom-bd")) bd.classList.toggle("atom-sel", +bd.dataset.b === R.sel);
    return idx;
  };

  let segTimer = null;  // debounced while scrubbing
  R.syncSegment = () => {
    clearTimeout(segTimer);
    segTimer = setTimeout(() => click("atom-seg-btn"), 120);
  };

  R.play = () => {
    if (R.playing) return R.stop();
    if (R.cursor >= R.n - 1) R.seek(0);
    $("#atom-play").textContent = "⏸";
    R.playing = setInterval(() => {
      if (R.cursor >= R.n - 1) return R.stop();
      if (R.has(R.cursor + 1)) R.seek(R.cursor + 1); else R.prefetch();  // wait for the window
    }, 1000 / R.fps);
  };
  R.stop = () => {
    clearInterval(R.playing); R.playing = null;
    const b = $("#atom-play"); if (b) b.textContent = "▶";
  };

  R.selectBoundary = (dir) => {
    const bds = R.segments().slice(1).map((s, k) => ({ b: k + 1, f: s.start }));
    if (!bds.length) return;
    let pick = dir < 0 ? [...bds].reverse().find((x) => x.f < R.cursor) : bds.find((x) => x.f > R.cursor);
    if (!pick) pick = dir < 0 ? bds[0] : bds[bds.length - 1];
    R.sel = pick.b; R.seek(pick.f);
  };

  // Values for the server events: (cursor, selected boundary, ...rest unchanged).
  R.args = (...a) => { a[0] = R.cursor; a[1] = R.sel; return a; };

  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) &&
    !(el.tagName === "INPUT" && el.type === "range");

  const KEYS = {
    "ArrowRight": () => R.seek(R.cursor + 1), "ArrowLeft": () => R.seek(R.cursor - 1),
    "Shift+ArrowRight": () => R.seek(R.cursor + 10), "Shift+ArrowLeft": () => R.seek(R.cursor - 10),
    "Home": () => R.seek(0), "End": () => R.seek(R.n - 1), " ": () => R.play(),
    "s": () => click("atom-split"), "m": () => click("atom-merge"), "b": () => click("atom-move"),
    ",": () => click("atom-nudge-m1"), ".": () => click("atom-nudge-p1"),
    "<": () => click("atom-nudge-m10"), ">": () => click("atom-nudge-p10"),
    "[": () => R.selectBoundary(-1), "]": () => R.selectBoundary(1),
    "e": () => $("#atom-instruction textarea, #atom-instruction input")?.focus(),
    "k": () => $("#atom-skill input")?.focus(),
    "a": () => click("atom-accept"), "f": () => click("atom-flag"), "w": () => click("atom-save"),
    "r": () => $("#atom-reason textarea, #atom-reason input")?.focus(),
    "z": () => click("atom-undo"), "y": () => click("atom-redo"), "Z": () => click("atom-redo"),
    "n": () => click("atom-next"), "?": () => $("#atom-help button, #atom-help .label-wrap")?.click(),
    "/": () => $("#atom-f-search textarea, #atom-f-search input")?.focus(),
  };

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && typing(document.activeElement)) { document.activeElement.blur(); return; }
    if (typing(e.target) || e.altKey) return;
    let key = e.key;
    if (e.ctrlKey || e.metaKey) {
      if (key === "z" || key === "Z") key = e.shiftKey ? "y" : "z";
      else if (key === "y" || key === "s") key = key === "s" ? "w" : "y";
      else return;
    } else if (e.shiftKey && key.startsWith("Arrow")) key = "Shift+" + key;
    const act = KEYS[key];
    if (!act || !R.ep) return;
    e.preventDefault();
    act();
  }, true);

  document.addEventListener("click", (e) => {
    const t = e.target;
    if (!(t instanceof Element)) return;
    if (t.id === "atom-play") return R.play();
    const take = t.closest(".atom-take");
    if (take) { R.takeAuthor = take.dataset.author; return click("atom-take-btn"); }
    const sort = t.closest("#atom-queue .atom-q-sort");
    if (sort) { R.sortPick = sort.dataset.sort; return click("atom-sort-btn"); }
    const row = t.closest("#atom-queue tr[data-episode]");
    if (row) { R.pickEpisode = row.dataset.episode; return click("atom-pick-btn"); }
    const bd = t.closest("#atom-timeline .atom-bd, #atom-preview .atom-bd");
    if (bd) { R.sel = +bd.dataset.b; return R.seek(+bd.dataset.frame); }
    const seg = t.closest(".atom-tl .atom-seg");
    if (seg) return R.seek(+seg.dataset.start);
    const sig = t.closest(".atom-tl .atom-sig svg");
    if (sig) { const r = sig.getBoundingClientRect(); return R.seek(((e.clientX - r.left) / r.width) * R.n); }
  });

  document.addEventListener("input", (e) => {
    if (e.target && e.target.id === "atom-slider") R.seek(+e.target.value);
  });

  // The server re-renders the timeline after each edit (Gradio patches the DOM in place, which
  // resets the cursor's position): draw the cursor again after any change inside it.
  // When the timeline or the queue table is redrawn, fit the page again; the queue also marks its
  // open row again (marking changes only a class: no loop).
  const inside = (node, sel) => {
    const el = node instanceof Element ? node : node.parentElement;
    return el && el.closest(sel);
  };
  new MutationObserver((muts) => {
    if (muts.some((m) => inside(m.target, "#atom-timeline"))) R.segIndex = R.drawCursor();
    const redrawn = (sel) => muts.some((m) => m.type === "childList" && inside(m.target, sel));
    if (redrawn("#atom-timeline")) R.fit();
    if (redrawn("#atom-queue")) { R.fit(); R.markQueue(); }
  }).observe(document.documentElement, { childList: true, subtree: true, attributes: true, characterData: true });
})();
