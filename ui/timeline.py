"""The timeline, rendered on the server as HTML: the edited subtasks as segments coloured by skill,
the other authors' proposals as thinner rows, and the signals as curves on the same time axis.

Positions are percentages of the episode, so the browser lays it out at any width. The browser
script (review.js) reads the `data-*` attributes: clicking a segment seeks to it, clicking a
boundary selects it, "use" takes a proposal, and it draws the cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

from atomvla.schemas import SKILLS
from atomvla.ui.editing import Segments

# One colour per skill of the vocabulary (colour-blind-safe hues first), grey for anything else.
_PALETTE = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377",
            "#ee8866", "#44bb99", "#bbcc33", "#99ddff", "#bbbbbb")
SKILL_COLORS = dict(zip(SKILLS, _PALETTE))
CURVE_POINTS = 400  # curves are drawn from at most this many points


def _pct(frame: float, n_frames: int) -> str:
    return f"{100.0 * frame / n_frames:.3f}%"


def _segments_row(segments: Segments, n_frames: int, css: str, labels: bool) -> str:
    parts = []
    for i, s in enumerate(segments):
        color = SKILL_COLORS.get(s.skill, "#bbbbbb")
        text = escape(s.instruction) if s.instruction else "<i>(no instruction)</i>"
        title = escape(f"{i + 1}. [{s.start}, {s.end}) {s.skill}: {s.instruction or '(no instruction)'}")
        label = f"<span>{escape(s.skill)} · {text}</span>" if labels else ""
        parts.append(
            f'<div class="{css}" data-index="{i}" data-start="{s.start}" data-end="{s.end}" title="{title}"'
            f' style="left:{_pct(s.start, n_frames)};width:{_pct(max(s.end - s.start, 0), n_frames)};'
            f'background:{color}">{label}</div>'
        )
    return "".join(parts)


def _curve(name: str, values: np.ndarray) -> str:
    n = len(values)
    step = max(1, n // CURVE_POINTS)
    xs = np.arange(0, n, step)
    v = np.asarray(values, dtype=np.float64)[xs]
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    ys = 0.5 if hi - lo < 1e-12 else 0.95 - 0.9 * (v - lo) / (hi - lo)
    ys = np.broadcast_to(ys, xs.shape)
    # x in frame units (+0.5: the centre of each frame) so the curve lines up with the segments.
    points = " ".join(f"{x + 0.5:.1f},{y:.3f}" for x, y in zip(xs, ys))
    return (
        f'<div class="atom-sig"><span class="atom-sig-name">{escape(name)}</span>'
        f'<svg viewBox="0 0 {n} 1" preserveAspectRatio="none">'
        f'<polyline points="{points}" vector-effect="non-scaling-stroke"/></svg></div>'
    )


def render(
    n_frames: int,
    fps: float,
    segments: Segments,
    proposals: Sequence[tuple[str, Segments]] = (),
    signals: Mapping[str, np.ndarray] | None = None,
    problems: Sequence[str] = (),
    episode_id: str = "",
) -> str:
    """The whole timeline block; `proposals` are (author, segments) of other revisions. The block
    names its episode so the page edits only the timeline of the episode it has open."""
    boundaries = "".join(
        f'<div class="atom-bd" data-b="{b}" data-frame="{segments[b].start}" '
        f'style="left:{_pct(segments[b].start, n_frames)}" title="boundary {b} at frame {segments[b].start}"></div>'
        for b in range(1, len(segments))
    )
    rows = [
        f'<div class="atom-tl-row atom-tl-main{" atom-invalid" if problems else ""}">'
        f"{_segments_row(segments, n_frames, 'atom-seg', labels=True)}{boundaries}</div>"
    ]
    for author, segs in proposals:
        rows.append(
            f'<div class="atom-tl-prop"><button class="atom-take" data-author="{escape(author)}" '
            f'title="start from this proposal">use</button><span class="atom-prop-name">{escape(author)}</span>'
            f'<div class="atom-tl-row atom-tl-thin">{_segments_row(segs, n_frames, "atom-seg atom-seg-thin", labels=False)}'
            f"</div></div>"
        )
    for name, values in (signals or {}).items():
        rows.append(_curve(name, values))
    ticks = "".join(
        f'<span style="left:{_pct(f, n_frames)}">{f}<small> {f / fps:.1f}s</small></span>'
        for f in np.linspace(0, n_frames - 1, 6).round().astype(int)
    )
    return (
        f'<div class="atom-tl" data-episode="{escape(episode_id)}" data-n="{n_frames}" data-fps="{fps:g}">'
        f'<div class="atom-tracks">'
        f'{"".join(rows)}<div class="atom-ticks">{ticks}</div>'
        f'<div class="atom-cursor" style="left:0%"></div></div></div>'
    )
