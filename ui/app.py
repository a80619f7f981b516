"""The review app: a Gradio Blocks app over the store (queue, viewer, timeline, editing, history).

The server holds each browser session's `Review` (episode, edit session with undo/redo) and writes
every change to the author's draft; the browser (static/review.js) holds the frames around the
cursor and the cursor itself, and hands the cursor to every edit event through the events' `js`.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files

import gradio as gr

from atomvla.curate.errors import StaleRevisionError
from atomvla.curate.store import Store
from atomvla.schemas import SKILLS, Decomposition, DecompositionError, Status
from atomvla.schemas.rules import DEFAULT_MIN_FRAMES
from atomvla.ui import auth, editing, queue_table, store_tables, timeline
from atomvla.ui.editing import EditError, EditSession, Segment, segments_of
from atomvla.ui.frame_server import FrameServer
from atomvla.ui.learning import Learner, is_reproposal, only_reproposals_since
from atomvla.ui.review_queue import SORTS, STATUSES, QueueFilter, ReviewQueue

# Events answer straight over HTTP, not through Gradio's queue (its extra hops measured slower for
# these short handlers), and without a progress overlay flashing on every key press.
FAST = {"queue": False, "show_progress": "hidden"}
WINDOW_RADIUS = 60  # frames each side of the cursor sent to the browser per request
QUEUE_POLL_S = 3  # how often a page looks for revisions made elsewhere (the table redraws only then)
QUEUE_ROWS = 100  # rows of the queue table (counts cover all); more costs the browser a redraw
QUEUE_ROWS_ABOVE = 10  # rows the table keeps above the open episode when it moves with it
STATUS_CHOICES = [("unreviewed", "unreviewed"), ("all", "all")] + [
    (s.replace("_", " "), s) for s in STATUSES
]

HELP = """
| key | action | key | action |
|---|---|---|---|
| ← / → | previous / next frame | Shift+← / → | 10 frames back / on |
| Home / End | first / last frame | Space | play / pause |
| s | split at the cursor | m | merge with the next subtask |
| [ / ] | select the previous / next boundary | b | move the selected boundary to the cursor |
| , / . | nudge the boundary −1 / +1 | < / > | nudge −10 / +10 |
| e | edit the instruction (Enter applies) | k | choose the skill |
| z or Ctrl+Z | undo | y, Shift+Z or Ctrl+Y | redo |
| w or Ctrl+S | save (needs review) | a | accept |
| r | reject: type the reason, Enter | f | flag for another look |
| n | next unreviewed episode | / | search the queue (Enter opens the first match) |
| ? | this help | Esc | leave a text box (keys work again) |

Clicking a column's header (or Enter on it) sorts the queue by it. Clicking a segment seeks to its
start, clicking a boundary selects it, "use" starts from another author's proposal. Every change is
saved as your draft at once; an invalid decomposition cannot be accepted.
"""


def _asset(name: str) -> str:
    return files("atomvla.ui").joinpath("static", name).read_text()


@dataclass
class Review:
    """One browser session: who is editing what."""

    author: str
    session: str = ""  # the browser session's id: which episodes are open where
    role: str | None = None  # the login's role (auth.ROLES); None without logins: everyone reviews
    episode_id: str | None = None
    edit: EditSession | None = None
    saved_at: str = ""
    note: str = ""  # shown once the episode just opened is on the page
    queue_seen: int = 0  # the queue's version this page's table shows
    queue_first: int = 0  # the table lists the filtered queue's rows from this one on
    queue_listed: frozenset[str] = frozenset()  # the episodes it lists


def _author(request: gr.Request | None) -> str:
    # The logged-in name when the app runs with --auth; the local user otherwise (127.0.0.1 only).
    name = getattr(request, "username", None) if request is not None else None
    return name or f"local:{getpass.getuser()}"


def _fmt_segments(segs) -> str:
    return "; ".join(f"[{s.start}, {s.end}) {s.skill}: {s.instruction or '(no instruction)'}" for s in segs)


class ReviewApp:
    def __init__(self, store: Store, learn: bool = True):
        self.store = store
        self.queue = ReviewQueue(store)
        self.frames = FrameServer(store)
        self._open: dict[str, str] = {}  # browser session -> the episode it has open
        # Guards the open map; held while an episode is read and marked open, and by the learner
        # while it checks and writes a re-proposal, so a page never opens what is being replaced.
        self._open_lock = threading.RLock()
        self.learner = Learner(store, busy=self.open_episodes, lock=self._open_lock) if learn else None

    def open_episodes(self) -> set[str]:
        with self._open_lock:
            return set(self._open.values())

    def closed(self, session: str) -> None:
        """A browser session ended: its episode may be re-proposed again."""
        with self._open_lock:
            self._open.pop(session, None)

    # -- opening an episode ---------------------------------------------------------------

    def _session_for(self, episode_id: str, author: str) -> tuple[EditSession, str]:
        """The author's draft if there is one, else the latest revision (or an empty start)."""
        meta = self.store.episode(episode_id)
        latest = self.store.latest(episode_id)
        based_on = latest.revision if latest else 0
        draft = store_tables.draft(self.store, episode_id, author)
        if draft is not None:
            edit = EditSession.from_record(episode_id, draft["based_on"] or 0, draft["record"])
            note = f"Restored your draft of {draft['updated_at'][:19].replace('T', ' ')} UTC."
            if edit.based_on != based_on and latest is not None:
                note += (f" Revision {latest.revision} by {latest.author} was saved since your draft began:"
                         f" saving will be refused; discard the draft to start from it.")
            return edit, note
        with_subtasks = [d for d in reversed(self.store.history(episode_id)) if d.subtasks]
        if with_subtasks:
            start = with_subtasks[0]
            return EditSession(episode_id, meta.n_frames, start.min_frames, based_on, segments_of(start)), ""
        half = meta.n_frames // 2
        segs = (Segment(0, half, "", "other"), Segment(half, meta.n_frames, "", "other"))
        return EditSession(episode_id, meta.n_frames, DEFAULT_MIN_FRAMES, based_on, segs), "No proposal yet: name the subtasks."

    def open(self, review: Review, episode_id: str, cursor: int = 0):
        with self._open_lock:  # what is read is what the page shows: no re-proposal lands in between
            edit, note = self._session_for(episode_id, review.author)
            self._open[review.session] = episode_id
        review.episode_id, review.edit, review.saved_at = episode_id, edit, ""
        meta = self.store.episode(episode_id)
        first = max(0, cursor - WINDOW_RADIUS)
        payload = {
            "episode_id": episode_id, "n_frames": meta.n_frames, "fps": meta.fps, "radius": WINDOW_RADIUS,
            "cameras": [c.key for c in meta.cameras], "cursor": cursor, "first": first,
            "frames": self.frames.window(episode_id, first, cursor + WINDOW_RADIUS),
        }
        return json.dumps(payload), note

    def window(self, review: Review, center: int, asked: int) -> str:
        """Frames center-radius+1 .. center+radius-1 of the open episode (radius 1: the center alone).

        `asked` is radius + 1000 * the browser's request number, echoed back as `seq` so that every
        answer differs from the one before (an identical answer would not reach the browser's handler).
        """
        if review.edit is None:
            return ""
        seq, radius = divmod(int(asked or 1), 1000)
        center, radius = int(center or 0), min(max(radius, 1), WINDOW_RADIUS)
        first = max(0, center - radius + 1)
        return json.dumps({"episode_id": review.episode_id, "first": first, "radius": radius, "seq": seq,
                           "frames": self.frames.window(review.episode_id, first, center + radius)})

    def marks(self, review: Review) -> str:
        """The frames a click on the timeline jumps to: every segment start (the open decomposition
        and every proposal) and the frame before it, so such a click paints without waiting."""
        if review.edit is None:
            return ""
        starts = {s.start for s in review.edit.segments}
        starts |= {s.start_frame for d in self.store.history(review.episode_id) for s in d.subtasks}
        wanted = {f for s in starts for f in (s - 1, s) if f >= WINDOW_RADIUS}  # the first window has the rest
        at = self.frames.frames_at(review.episode_id, wanted)
        return json.dumps({"episode_id": review.episode_id, "radius": 0, "at": at})

    # -- what the page shows ----------------------------------------------------------------

    def nothing_to_review(self) -> str:
        """What the page says when no episode opens: an empty store says how to fill it."""
        if self.store.count_episodes():
            return "Nothing to review with these filters."
        return (f"This store ({self.store.path}) has no episodes yet: import some (`atom-curate import SOURCE "
                f"--store {self.store.path}`), then propose subtasks (`atom-annotate run --store {self.store.path}`).")

    def header(self, review: Review) -> str:
        if review.edit is None:  # what to do instead goes where the page is read first
            return f"### No episode open\n{self.nothing_to_review()}"
        meta = self.store.episode(review.episode_id)
        latest = self.store.latest(review.episode_id)
        rev = (f"revision {latest.revision} · {latest.status.value.replace('_', ' ')} · by {latest.author}"
               if latest else "no revision yet")
        draft = f" · draft saved {review.saved_at}" if review.saved_at else ""
        learned = (f" · re-proposed from what {latest.provenance.learned_from} accepted episodes taught"
                   f" (profile {latest.provenance.profile})" if latest is not None and is_reproposal(latest) else "")
        return (f"### {meta.episode_id} — {meta.task}\n{meta.n_frames} frames at {meta.fps:g} fps · {rev}{learned}"
                f" · editing as **{review.author}** (based on revision {review.edit.based_on}){draft}")

    def timeline_html(self, review: Review) -> str:
        if review.edit is None:
            return ""
        meta = self.store.episode(review.episode_id)
        latest_by_author: dict[str, Decomposition] = {}
        for dec in self.store.history(review.episode_id):
            if dec.subtasks:
                latest_by_author[dec.author] = dec
        proposals = [(a, segments_of(d)) for a, d in latest_by_author.items()]
        return timeline.render(meta.n_frames, meta.fps, review.edit.segments, proposals,
                               self.frames.signals(review.episode_id), review.edit.problems, review.episode_id)

    def validation(self, review: Review) -> str:
        if review.edit is None:
            return ""
        found = review.edit.problems
        if not found:
            return "**Valid**: it can be accepted."
        return "**Cannot be accepted:**\n" + "\n".join(f"- {p}" for p in found)

    def history_choices(self, review: Review):
        if review.episode_id is None:
            return gr.update(choices=[], value=None)
        choices = [
            (f"rev {d.revision} · {d.status.value} · {d.author} · {d.created_at:%Y-%m-%d %H:%M}", d.revision)
            for d in reversed(self.store.history(review.episode_id))
        ]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def segment_panel(self, review: Review, cursor: int):
        if review.edit is None or not review.edit.segments:
            return gr.update(value="", label="Instruction"), gr.update(value=None)
        i = editing.segment_at(review.edit.segments, int(cursor or 0))
        s = review.edit.segments[i]
        return (gr.update(value=s.instruction, label=f"Instruction of subtask {i + 1} [{s.start}, {s.end})"),
                gr.update(value=s.skill if s.skill in SKILLS else None))

    def queue_view(self, review: Review | None, status: str, backend: str, task: str, sort: str, search: str):
        """The counts and the table: QUEUE_ROWS rows of the filtered queue, a few above the open
        episode (so "n" never leaves the table behind), else from where the table was."""
        flt = _filter(status, backend, task, sort, search)
        rows = self.queue.select(flt)
        ids = [r.episode_id for r in rows]
        last_first = max(0, len(rows) - QUEUE_ROWS)
        if review is not None and review.episode_id in ids:
            first = min(max(0, ids.index(review.episode_id) - QUEUE_ROWS_ABOVE), last_first)
        else:
            first = min(review.queue_first if review is not None else 0, last_first)
        listed = rows[first:first + QUEUE_ROWS]
        if review is not None:
            review.queue_first, review.queue_listed = first, frozenset(ids[first:first + QUEUE_ROWS])
        counts = self.queue.counts()
        where = f" (rows {first + 1}–{first + len(listed)} listed)" if len(listed) < len(rows) else ""
        summary = (f"**{len(rows)}** shown of {sum(counts.values())}{where} · "
                   + " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        return summary, queue_table.render(listed, flt.sort)

    # -- changes --------------------------------------------------------------------------

    def change(self, review: Review, fn) -> str:
        """Apply one edit, autosave the draft; the message to show ('' when all went well)."""
        if review.edit is None:
            return "Open an episode first."
        try:
            changed = review.edit.apply(fn(review.edit.segments))
        except EditError as exc:
            return f"{exc}"
        if changed:
            self.autosave(review)
        return ""

    def autosave(self, review: Review) -> None:
        store_tables.save_draft(self.store, review.episode_id, review.author, review.edit.based_on, review.edit.to_record())
        review.saved_at = datetime.now().strftime("%H:%M:%S")

    def commit(self, review: Review, status: Status, verdict: str | None, note: str | None = None) -> str:
        """Store the editor's segments as a new revision; refused (draft kept) on a stale base or
        a verdict the login's role may not give."""
        if review.edit is None:
            return "Open an episode first."
        if (why := auth.refusal(review.role, status)) is not None:
            return why
        edit = review.edit
        segs = edit.segments
        if edit.problems:
            if status is Status.accepted or verdict is None:
                return "**Not saved**: the decomposition breaks the contract (see the problems listed)."
            # Reject / flag an invalid edit: the verdict is about the stored revision.
            base = self.store.latest(edit.episode_id)
            if base is None or not base.subtasks:
                return "Nothing to reject or flag: no valid decomposition of this episode exists yet."
            segs = segments_of(base)
        try:
            dec = Decomposition(episode_id=edit.episode_id, n_frames=edit.n_frames, subtasks=editing.to_subtasks(segs),
                                status=status, author=review.author, min_frames=edit.min_frames, note=note or None)
            stored = self._add(dec, edit.based_on)
        except DecompositionError as exc:
            return "**Not saved**: " + "; ".join(exc.problems)
        except StaleRevisionError as exc:
            other = self.store.latest(edit.episode_id)
            return (f"**Not saved — someone else saved first.** {exc}.\n\n"
                    f"The other edit: revision {other.revision} by **{other.author}** "
                    f"({other.status.value.replace('_', ' ')}, {other.created_at:%H:%M:%S} UTC): "
                    f"{_fmt_segments(segments_of(other)) or other.note}\n\n"
                    f"Yours (kept as your draft, nothing was overwritten): {_fmt_segments(edit.segments)}\n\n"
                    f"To continue from theirs: History → Discard my draft.")
        if verdict is not None:
            store_tables.add_review(self.store, edit.episode_id, stored.revision, review.author, verdict, note or "")
        store_tables.delete_draft(self.store, edit.episode_id, review.author)
        review.edit = EditSession(edit.episode_id, edit.n_frames, edit.min_frames, stored.revision, segments_of(stored))
        review.saved_at = ""
        self.queue.refresh()
        if status is Status.accepted and self.learner is not None:
            self.learner.accepted(edit.episode_id)
        return f"Saved revision {stored.revision} ({status.value.replace('_', ' ')})."

    def _add(self, dec: Decomposition, based_on: int) -> Decomposition:
        """Store a person's revision; it goes over re-proposals the app made after the edit began."""
        try:
            return self.store.add_revision(dec, based_on=based_on)
        except StaleRevisionError:
            history = self.store.history(dec.episode_id)
            if not only_reproposals_since(history, based_on):
                raise
            return self.store.add_revision(dec, based_on=history[-1].revision)


def _filter(status: str, backend: str, task: str, sort: str, search: str) -> QueueFilter:
    return QueueFilter(status=None if status in (None, "all") else status,
                       backend=None if backend in (None, "all") else backend,
                       task=None if task in (None, "all") else task, sort=sort or SORTS[0], search=search or "")


def build(store: Store, learn: bool = True, roles: Mapping[str, str] | None = None) -> tuple[gr.Blocks, dict]:
    """The Blocks app and the keyword arguments `launch` needs for it (head script, css).

    `roles`: each login's role (`auth.ROLES`), checked on every save; None without logins.

    `learn`: fit a backend to each dataset's accepted episodes as they are accepted and propose
    its untouched episodes again (`atomvla.ui.learning`)."""
    app = ReviewApp(store, learn=learn)

    with gr.Blocks(title="atom-review") as demo:
        review = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("## Queue")
                f_search = gr.Textbox(label="Search", elem_id="atom-f-search", lines=1, max_lines=1,
                                      placeholder="id or instruction words ( / )")
                # Two filters a row: the table below them starts on the first screen at 768 px high.
                with gr.Row():
                    f_status = gr.Dropdown(STATUS_CHOICES, value="unreviewed", label="Status", min_width=120,
                                           elem_id="atom-f-status", info="unreviewed: needs review, proposed or unlabelled")
                    f_sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort", elem_id="atom-f-sort", min_width=120)
                with gr.Row():
                    f_backend = gr.Dropdown(["all"], value="all", label="Backend", elem_id="atom-f-backend", min_width=120)
                    f_task = gr.Dropdown(["all"], value="all", label="Task", elem_id="atom-f-task", min_width=120)
                counts = gr.Markdown(elem_id="atom-counts")
                table = gr.HTML(elem_id="atom-queue")
                next_btn = gr.Button("Next unreviewed (n)", elem_id="atom-next", variant="secondary")
            with gr.Column(scale=3, elem_classes="atom-editor"):
                header = gr.Markdown("### Loading…", elem_id="atom-header")
                gr.HTML('<div id="atom-viewer"><div id="atom-cams"></div><div class="atom-ctl">'
                        '<button id="atom-play" title="play / pause (Space)">▶</button>'
                        '<input type="range" id="atom-slider" min="0" max="0" value="0">'
                        '<span id="atom-frame">frame –</span></div></div>')
                tl = gr.HTML(elem_id="atom-timeline")
                # Buttons as wide as their labels (min_width=0), so a row holds them all at 1024 px.
                with gr.Row(elem_classes="atom-tight"):
                    split = gr.Button("Split (s)", elem_id="atom-split", size="sm", min_width=0)
                    merge = gr.Button("Merge next (m)", elem_id="atom-merge", size="sm", min_width=0)
                    move = gr.Button("Boundary → cursor (b)", elem_id="atom-move", size="sm", min_width=0)
                    nudges = {d: gr.Button(f"{d:+d}", elem_id=f"atom-nudge-{'m' if d < 0 else 'p'}{abs(d)}", size="sm",
                                           min_width=0) for d in (-10, -1, 1, 10)}
                    undo = gr.Button("Undo (z)", elem_id="atom-undo", size="sm", min_width=0)
                    redo = gr.Button("Redo (y)", elem_id="atom-redo", size="sm", min_width=0)
                with gr.Row():
                    instr = gr.Textbox(label="Instruction", elem_id="atom-instruction", scale=4,
                                       placeholder="short imperative, e.g. pick up the puck; Enter applies")
                    skill = gr.Dropdown(list(SKILLS), label="Skill", elem_id="atom-skill", scale=1)
                # The verdicts in one row, as tall as a button; what is wrong with the edit under it.
                with gr.Row(elem_classes="atom-tight", equal_height=True):
                    save = gr.Button("Save (w)", elem_id="atom-save", size="md", min_width=0)
                    accept = gr.Button("Accept (a)", elem_id="atom-accept", variant="primary", size="md", min_width=0)
                    reason = gr.Textbox(show_label=False, container=False, elem_id="atom-reason", scale=3, min_width=160,
                                        placeholder="reason to reject / flag")
                    reject = gr.Button("Reject (r)", elem_id="atom-reject", variant="stop", size="md", min_width=0)
                    flag = gr.Button("Flag (f)", elem_id="atom-flag", size="md", min_width=0)
                validation = gr.Markdown(elem_id="atom-validation")
                message = gr.Markdown(elem_id="atom-message")
                with gr.Accordion("History", open=False, elem_id="atom-history"):
                    with gr.Row():
                        hist = gr.Dropdown([], label="Revision", elem_id="atom-hist-dd", scale=3, min_width=360)
                        view = gr.Button("View", elem_id="atom-hist-view", size="sm")
                        restore = gr.Button("Restore into the editor", elem_id="atom-hist-restore", size="sm")
                        discard = gr.Button("Discard my draft", elem_id="atom-discard", size="sm")
                    preview = gr.HTML(elem_id="atom-preview")
                with gr.Accordion("Keyboard shortcuts (?)", open=False, elem_id="atom-help"):
                    gr.Markdown(HELP)
        # Plumbing between review.js and the server, kept in the page but out of sight.
        with gr.Row(elem_classes="atom-hidden"):
            cursor = gr.Number(0, visible="hidden", elem_id="atom-cursor-num")
            sel = gr.Number(0, visible="hidden", elem_id="atom-sel-num")
            want = gr.Number(0, visible="hidden", elem_id="atom-want-num")  # radius + 1000 * request number
            payload = gr.Textbox(visible="hidden", elem_id="atom-payload")
            win = gr.Textbox(visible="hidden", elem_id="atom-win")
            jump = gr.Textbox(visible="hidden", elem_id="atom-jump")
            marks = gr.Textbox(visible="hidden", elem_id="atom-marks")
            taken = gr.Textbox(visible="hidden", elem_id="atom-take-author")
            picked = gr.Textbox(visible="hidden", elem_id="atom-pick-episode")
            sort_picked = gr.Textbox(visible="hidden", elem_id="atom-sort-pick")
            win_btn = gr.Button("w", elem_id="atom-win-btn", elem_classes="atom-hidden")
            jump_btn = gr.Button("j", elem_id="atom-jump-btn", elem_classes="atom-hidden")
            marks_btn = gr.Button("m", elem_id="atom-marks-btn", elem_classes="atom-hidden")
            seg_btn = gr.Button("s", elem_id="atom-seg-btn", elem_classes="atom-hidden")
            take_btn = gr.Button("t", elem_id="atom-take-btn", elem_classes="atom-hidden")
            pick_btn = gr.Button("p", elem_id="atom-pick-btn", elem_classes="atom-hidden")
            sort_btn = gr.Button("o", elem_id="atom-sort-btn", elem_classes="atom-hidden")

        filters = [f_status, f_backend, f_task, f_sort, f_search]
        edit_outs = [review, header, tl, validation, message, instr, skill, hist]

        def edited(r: Review, msg: str, cur: int = 0):
            return (r, app.header(r), app.timeline_html(r), app.validation(r), msg, *app.segment_panel(r, cur),
                    app.history_choices(r))

        # Opening is two steps: the frames first (the browser paints the first one), then the rest
        # of the page; the queue table is left alone (opening changes no status, and redrawing the
        # table costs the browser more than the whole episode).
        def opened(r: Review, episode_id: str | None, note: str = ""):
            if episode_id is None:  # with none open, the header says it
                r.note = "" if r.edit is None else app.nothing_to_review()
                return r, ""
            data, restored = app.open(r, episode_id)
            r.note = " ".join(x for x in (note, restored) if x)
            return r, data

        open_outs = [review, payload]

        def then_show(event):
            return event.then(None, [payload], None, js="(p) => window.atomReview.load(p)").then(
                lambda r: edited(r, r.note), [review], edit_outs, **FAST)

        def queue_if_unlisted(r, *filt):
            """The table again, moved to the episode just opened, when it does not list it."""
            if r.episode_id is None or r.episode_id in r.queue_listed:
                return gr.skip(), gr.skip()
            return app.queue_view(r, *filt)

        def then_show_listed(event):
            """An episode opened from the page: shown, then listed in the queue if it was not."""
            return then_show(event).then(queue_if_unlisted, [review, *filters], [counts, table], **FAST)

        def on_load(r, status, backend, task, sort, search, request: gr.Request):
            r = Review(author=_author(request), session=getattr(request, "session_hash", None) or "",
                       role=None if roles is None else roles.get(_author(request), "annotator"))
            filt = (status, backend, task, sort, search)
            wanted = request.query_params.get("episode") if request is not None else None
            known = bool(wanted) and wanted in app.queue
            if not known:
                drafts = store_tables.drafts(app.store, r.author)
                wanted = drafts[0]["episode_id"] if drafts else app.queue.next_unreviewed(_filter(*filt), None)
            return opened(r, wanted)

        def queue_with_choices(r, *filt):
            """The queue and the filters' choices, which grow as backends and tasks arrive."""
            return (gr.update(choices=["all"] + app.queue.backends()), gr.update(choices=["all"] + app.queue.tasks()),
                    *app.queue_view(r, *filt))

        then_show(demo.load(on_load, [review, *filters], open_outs)).then(
            queue_with_choices, [review, *filters], [f_backend, f_task, counts, table], **FAST)

        def on_next(r, *filt):
            return opened(r, app.queue.next_unreviewed(_filter(*filt), r.episode_id))

        then_show_listed(next_btn.click(on_next, [review, *filters], open_outs, **FAST))

        def on_pick(episode_id, r):
            return opened(r, episode_id)

        then_show_listed(pick_btn.click(on_pick, [picked, review], open_outs, **FAST,
                                        js="(...a) => { a[0] = window.atomReview.pickEpisode; return a; }"))

        def on_search_enter(r, *filt):
            rows = app.queue.select(_filter(*filt))
            return opened(r, rows[0].episode_id if rows else None)

        # Enter in the search box opens the first match and hands the keys back to the editor.
        then_show_listed(f_search.submit(on_search_enter, [review, *filters], open_outs, **FAST,
                                         js="(...a) => { document.activeElement?.blur(); return a; }"))
        # The search box on every change (its input event misses the text emptied); always_last: the
        # text typed last is always the one shown.
        gr.on([f.input for f in filters if f is not f_search] + [f_search.change], app.queue_view,
              [review, *filters], [counts, table], **FAST, trigger_mode="always_last")

        def on_sort(sort, r, status, backend, task, _shown_sort, search):
            """A column header clicked: the queue in its order, and the Sort filter saying so."""
            if sort not in SORTS:
                return gr.skip(), gr.skip(), gr.skip()
            return gr.update(value=sort), *app.queue_view(r, status, backend, task, sort, search)

        sort_btn.click(on_sort, [sort_picked, review, *filters], [f_sort, counts, table], **FAST,
                       js="(...a) => { a[0] = window.atomReview.sortPick; return a; }")

        def queue_if_changed(r, *filt):
            """The queue again when the store gained revisions (re-proposals made in the background,
            other annotators' saves) since this page last drew it; nothing otherwise."""
            seen = app.queue.version()
            if r is None or seen == r.queue_seen:
                return gr.skip(), gr.skip()
            r.queue_seen = seen
            return app.queue_view(r, *filt)

        gr.Timer(QUEUE_POLL_S).tick(queue_if_changed, [review, *filters], [counts, table], **FAST)

        # Windows and jumps each have their own button and answer box: a jump asked while a window
        # is on its way must not overwrite the window's answer before the browser has read it.
        for btn, box, kind in ((win_btn, win, "window"), (jump_btn, jump, "jump")):
            btn.click(lambda c, k, r: app.window(r, c, k), [cursor, want, review], [box],
                      js=f"(...a) => {{ const q = window.atomReview.asked.{kind}; a[0] = q.center; a[1] = q.radius; return a; }}",
                      **FAST, trigger_mode="multiple").then(None, [box], None, js="(w) => window.atomReview.addFrames(w)")
        marks_btn.click(lambda r: app.marks(r), [review], [marks], **FAST).then(
            None, [marks], None, js="(w) => window.atomReview.addFrames(w)")
        seg_btn.click(lambda c, r: app.segment_panel(r, c), [cursor, review], [instr, skill],
                      js="(...a) => { a[0] = window.atomReview.cursor; return a; }", **FAST)

        def bind(button_event, op, extra=()):
            """`op(segments, cursor, boundary, *extra) -> segments` on a key or button."""

            def handler(cur, b, *rest):
                *values, r = rest
                cur = int(cur or 0)
                msg = app.change(r, lambda segs: op(segs, cur, int(b or 0) or _nearest(segs, cur), *values))
                return edited(r, msg, cur)

            button_event(handler, [cursor, sel, *extra, review], edit_outs,
                         js="(...a) => window.atomReview.args(...a)", **FAST)

        def _nearest(segs, cur):
            return editing.nearest_boundary(segs, cur) if len(segs) > 1 else 0

        bind(split.click, lambda s, c, b: editing.split(s, c))
        bind(merge.click, lambda s, c, b: editing.merge_with_next(s, c))
        bind(move.click, lambda s, c, b: editing.move_boundary(s, b, c))
        for d, btn in nudges.items():
            bind(btn.click, lambda s, c, b, d=d: editing.nudge(s, b, d))
        bind(instr.submit, lambda s, c, b, text: editing.set_instruction(s, editing.segment_at(s, c), text), [instr])
        bind(skill.input, lambda s, c, b, k: editing.set_skill(s, editing.segment_at(s, c), k), [skill])

        def take(cur, b, author, r):
            chosen = [d for d in app.store.history(r.episode_id) if d.author == author and d.subtasks]
            msg = app.change(r, lambda segs: segments_of(chosen[-1])) if chosen else f"no proposal by {author}"
            return edited(r, msg or f"Started from {author}'s proposal.", int(cur or 0))

        take_btn.click(take, [cursor, sel, taken, review], edit_outs, **FAST,
                       js="(...a) => { a[0] = window.atomReview.cursor; a[2] = window.atomReview.takeAuthor; return a; }")

        def undo_redo(which):
            def handler(cur, b, r):
                if r.edit is None or not getattr(r.edit, which)():
                    return edited(r, f"Nothing to {which}.", int(cur or 0))
                app.autosave(r)
                return edited(r, "", int(cur or 0))
            return handler

        for btn, which in ((undo, "undo"), (redo, "redo")):
            btn.click(undo_redo(which), [cursor, sel, review], edit_outs,
                      js="(...a) => window.atomReview.args(...a)", **FAST)

        def verdict(status: Status, name: str | None, needs_reason: bool):
            def handler(cur, b, why, r):
                if needs_reason and not (why or "").strip():
                    return (*edited(r, "Type the reason first (r focuses the box), then Reject.", int(cur or 0)),
                            why)
                note = f"{name}: {why.strip()}" if name and (why or "").strip() else None
                msg = app.commit(r, status, name, note)
                return (*edited(r, msg, int(cur or 0)), "" if msg.startswith("Saved") else why)
            return handler

        for event, status, name, needs in ((save.click, Status.needs_review, None, False),
                                           (accept.click, Status.accepted, "accepted", False),
                                           (reject.click, Status.rejected, "rejected", True),
                                           (reason.submit, Status.rejected, "rejected", True),
                                           (flag.click, Status.needs_review, "flagged", False)):
            event(verdict(status, name, needs), [cursor, sel, reason, review], edit_outs + [reason],
                  js="(...a) => window.atomReview.args(...a)", **FAST).then(
                app.queue_view, [review, *filters], [counts, table], **FAST)

        def view_rev(rev, r):
            if r.episode_id is None or rev is None:
                return ""
            dec = app.store.revision(r.episode_id, int(rev))
            meta = app.store.episode(r.episode_id)
            note = f"<p>{dec.note}</p>" if dec.note else ""
            return note + timeline.render(meta.n_frames, meta.fps, segments_of(dec))

        view.click(view_rev, [hist, review], [preview], **FAST)

        def restore_rev(rev, r):
            if r.episode_id is None or rev is None:
                return edited(r, "Choose a revision first.")
            dec = app.store.revision(r.episode_id, int(rev))
            if not dec.subtasks:
                return edited(r, f"Revision {rev} has no subtasks ({dec.status.value}).")
            msg = app.change(r, lambda segs: segments_of(dec))
            return edited(r, msg or f"Revision {rev} restored into the editor: save or accept to store it.")

        restore.click(restore_rev, [hist, review], edit_outs, **FAST)

        def discard_draft(r):
            if r.episode_id is None:
                return opened(r, None)
            store_tables.delete_draft(app.store, r.episode_id, r.author)
            return opened(r, r.episode_id, "Draft discarded; showing the latest revision.")

        then_show(discard.click(discard_draft, [review], open_outs, **FAST))

        def on_unload(request: gr.Request):
            app.closed(request.session_hash)

        demo.unload(on_unload)

    demo.queue(default_concurrency_limit=8)
    return demo, {"head": f"<script>{_asset('review.js')}</script>", "css": _asset("review.css")}
