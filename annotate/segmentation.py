"""Boundary candidates from kinematics, and the choice of boundaries that fits a plan.

Boundary convention (studied on scripted and teleoperated demonstrations): a boundary is the first
frame of the next phase's motion, i.e. the frame at which the commanded velocity switches to the
new phase. After a grasp or a release it is the frame where the arm starts its next motion (the
lift after closing, the retreat after opening), not the frame of the gripper command: the gripper
closing belongs to the pick, so the pick ends once the arm moves on.

Scores follow the principal-axis idea: over windows of frames before and after each frame, the
change of the mean velocity (translation and rotation), divided by how fast the arm moved just
before (a subgoal is reached, then the next motion starts: arrival at low speed makes a change
more salient). Gripper open/close events are found apart and outrank motion changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["close", "open", "motion"]

# Hysteresis levels (fractions of the gripper signal's range) for an open/close event.
_GRIP_LOW, _GRIP_HIGH = 0.35, 0.65
# A gripper signal that changes less than this fraction of its largest magnitude has no events.
_GRIP_MIN_RANGE = 0.3


@dataclass(frozen=True)
class Candidate:
    frame: int
    score: float
    kind: Kind


def window_means(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) -> before (n, d), after (n, d): means over [t-w, t) and [t, t+w), clipped at the ends."""
    n = len(x)
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    t = np.arange(n)
    lo, hi = np.maximum(t - w, 0), np.minimum(t + w, n)
    before = (c[t] - c[lo]) / np.maximum(t - lo, 1)[:, None]
    after = (c[hi] - c[t]) / np.maximum(hi - t, 1)[:, None]
    return before, after


def _quantile(x: np.ndarray, q: float) -> float:
    """Nearest-rank quantile of a 1-d array (np.percentile costs more than the whole segmenter)."""
    k = int(q * (len(x) - 1))
    return float(np.partition(x, k)[k])


def change_scores(motion: np.ndarray, speed: np.ndarray, w: int, arrival: float) -> np.ndarray:
    """(n, d), (n,) -> (n,): how strongly the motion changes at each frame, favouring arrivals.

    The velocity change is in units of the episode's typical velocity (90th percentile of its
    norm), the preceding speed in units of the median speed; `arrival` bounds the bonus for
    starting from rest. The first and last `w // 2` frames score 0: no phase starts there.
    """
    before, after = window_means(motion, w)
    scale = _quantile(np.linalg.norm(motion, axis=1), 0.9) or 1.0
    change = np.linalg.norm(after - before, axis=1) / scale
    speed_before = window_means(speed[:, None], w)[0][:, 0] / (_quantile(speed, 0.5) or 1.0)
    score = change / (speed_before + arrival)
    edge = max(w // 2, 1)
    score[:edge] = 0.0
    score[-edge:] = 0.0
    return score


def local_peaks(score: np.ndarray, min_distance: int) -> list[int]:
    """Frames of local maxima of `score` (> 0), at least `min_distance` apart, strongest kept."""
    s = score
    is_peak = np.zeros(len(s), dtype=bool)
    is_peak[1:-1] = (s[1:-1] >= s[:-2]) & (s[1:-1] > s[2:]) & (s[1:-1] > 0)
    kept: list[int] = []
    for t in sorted(np.flatnonzero(is_peak), key=lambda i: -s[i]):
        if all(abs(t - k) >= min_distance for k in kept):
            kept.append(int(t))
    return sorted(kept)


def gripper_events(gripper: np.ndarray, min_hold: int) -> list[tuple[int, Kind]]:
    """(n,) -> [(frame, "close" | "open")]: where the gripper signal crosses mid-range and stays.

    The sign convention differs between robots and between commands and openings; demonstrations
    start with the gripper open, so the first event's direction is the one called "close".
    """
    g = np.asarray(gripper, dtype=np.float64)
    lo, hi = float(g.min()), float(g.max())
    if hi - lo < _GRIP_MIN_RANGE * max(abs(lo), abs(hi), 1e-9):
        return []
    u = (g - lo) / (hi - lo)
    level = np.where(u >= _GRIP_HIGH, 1, np.where(u <= _GRIP_LOW, 0, -1))
    events: list[tuple[int, int]] = []  # (frame of the mid-range crossing, new level)
    current = level[0] if level[0] >= 0 else int(u[0] >= 0.5)
    t = 1
    while t < len(u):
        if level[t] >= 0 and level[t] != current:
            held = level[t : t + min_hold]
            if np.all((held == level[t]) | (held < 0)) or t + min_hold >= len(u):
                cross = t
                while cross > 0 and (u[cross - 1] >= 0.5) == (level[t] == 1):
                    cross -= 1
                events.append((cross, int(level[t])))
                current = level[t]
        t += 1
    if not events:
        return []
    closing_level = events[0][1]
    return [(f, "close" if lvl == closing_level else "open") for f, lvl in events]


def grasp_boundaries(
    score: np.ndarray, peaks: Sequence[int], events: Sequence[tuple[int, Kind]], delay: int, slack: int, bonus: float
) -> list[Candidate]:
    """For each gripper event, the frame where the next motion starts: from `slack` frames before
    the event (a gripper command and the motion it allows are logged a frame or two apart) to
    `delay` frames after it.

    The first peak in the window that reaches half the window's strongest is taken: a lift that
    follows a grasp comes before the larger turn towards the goal.
    """
    out: list[Candidate] = []
    for frame, kind in events:
        inside = [p for p in peaks if frame - slack <= p <= frame + delay]
        if inside:
            best = max(score[p] for p in inside)
            onset = next(p for p in inside if score[p] >= 0.5 * best)
        else:
            onset = frame
        out.append(Candidate(onset, bonus + float(score[onset]), kind))
    return out


def choose(
    candidates: Sequence[Candidate],
    needs: Sequence[Kind],
    n_frames: int,
    min_frames: int,
    mismatch_penalty: float,
) -> list[Candidate] | None:
    """The boundaries, one per entry of `needs` and in order, that maximise the total score.

    `needs[i]` is the kind of event that should end subtask i: "close" after a pick, "open" after
    a place, "motion" otherwise (any candidate). A candidate of the wrong kind costs
    `mismatch_penalty`. Boundaries keep every subtask at least `min_frames` long. None when the
    candidates cannot fit.
    """
    cands = sorted((c for c in candidates if min_frames <= c.frame <= n_frames - min_frames), key=lambda c: c.frame)
    k, m = len(needs), len(cands)
    if k == 0:
        return []
    neg = -np.inf
    gain = np.array(
        [[c.score - (0 if need in ("motion", c.kind) else mismatch_penalty) for c in cands] for need in needs]
    ).reshape(k, m)
    best = np.full((k, m), neg)
    back = np.full((k, m), -1, dtype=int)
    best[0] = gain[0]
    for i in range(1, k):
        for j in range(m):
            prev = [q for q in range(j) if cands[j].frame - cands[q].frame >= min_frames and best[i - 1, q] > neg]
            if prev:
                q = max(prev, key=lambda q: best[i - 1, q])
                best[i, j], back[i, j] = best[i - 1, q] + gain[i, j], q
    if m == 0 or not np.isfinite(best[k - 1]).any():
        return None
    j = int(np.argmax(best[k - 1]))
    chosen = [cands[j]]
    for i in range(k - 1, 0, -1):
        j = int(back[i, j])
        chosen.append(cands[j])
    return chosen[::-1]
