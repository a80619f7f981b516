"""The queue table, rendered on the server as HTML for the narrow column beside the editor.

Three columns that fit any width the app gets (a 1024-px window leaves the queue ~320 px): the
episode with its task under it, the status with who proposed it and what it was learned from, and
the numbers the queue sorts by. Every cell wraps instead of clipping, so nothing needs scrolling
sideways. The headers are buttons that sort the queue by their column (`data-sort`, one of
`SORTS`); the browser script (review.js) sends a header's sort, opens the episode of a clicked row
(`data-episode`) and marks the open one.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from atomvla.ui.review_queue import SORTS, QueueRow

QUEUE_ORDER, CONFIDENCE, DISAGREEMENT, STATUS = SORTS
# Per column, its headers: (label, the sort it picks). The numbers' column has one per number.
HEADERS = (
    (("episode · task", QUEUE_ORDER),),
    (("status · by", STATUS),),
    (("conf.", CONFIDENCE), ("disagr.", DISAGREEMENT)),
)


def _numbers(row: QueueRow) -> str:
    conf = "–" if row.confidence is None else f"{row.confidence:.2f}"
    dis = "–" if row.disagreement is None else f"{row.disagreement:.3f}"
    return f'<div title="confidence">{conf}</div><div title="disagreement">{dis}</div>'


def _row(row: QueueRow) -> str:
    learned = ("" if row.learned_from is None
               else f'<div class="atom-q-learned">learned from {row.learned_from} accepts</div>')
    by = f'<div class="atom-q-by">{escape(", ".join(sorted(row.backends)))}</div>' if row.backends else ""
    return (
        f'<tr data-episode="{escape(row.episode_id)}">'
        f'<td><div class="atom-q-id">{escape(row.episode_id)}</div>'
        f'<div class="atom-q-task" title="{escape(row.task)}">{escape(row.task)}</div></td>'
        f'<td><span class="atom-q-st atom-st-{row.status}">{row.status.replace("_", " ")}</span>{by}{learned}</td>'
        f'<td class="atom-q-num">{_numbers(row)}</td></tr>'
    )


def _header(sorts: Sequence[tuple[str, str]], current: str) -> str:
    def button(label: str, sort: str) -> str:
        on = sort == current
        return (f'<button type="button" class="atom-q-sort{" atom-q-sorted" if on else ""}" data-sort="{escape(sort)}"'
                f' title="sort by {escape(sort)}" aria-pressed="{"true" if on else "false"}">{label}</button>')

    return f'<th>{"".join(button(*s) for s in sorts)}</th>'


def render(rows: Sequence[QueueRow], sort: str) -> str:
    """The table of `rows`, its headers marking `sort` (one of `SORTS`) as the order shown."""
    body = "".join(map(_row, rows)) or '<tr><td colspan="3" class="atom-q-none">No episodes with these filters.</td></tr>'
    head = "".join(_header(sorts, sort) for sorts in HEADERS)
    return (f'<div class="atom-q"><table><colgroup><col class="atom-q-c1"><col class="atom-q-c2"><col class="atom-q-c3">'
            f"</colgroup><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
