"""Boundary candidates from kinematics, and the choice of boundaries that fits a plan.

Boundary convention (studied on the Meta-World fixture and on scripted LIBERO rollouts): a
boundary is the first frame of the next phase's motion, i.e. the first frame commanded (or, with
no command, measured) for the new phase. A motion that starts from rest starts on the frame after
the last one at rest. Around the gripper: a pick ends at the grasp, and the object's first
motion after it, whether a lift or a carry, starts the next subtask (the Meta-World fixture's
pick-place: the gripper closes while the hand holds still, and the first frame that lifts and
carries the puck starts "place the puck at the goal"); releasing an object and backing the hand
off it belong to the place, and the next subtask starts with the first sideways motion.

Scores follow the principal-axis idea: over windows of frames before and after each frame, the
change of the mean velocity (translation and rotation), divided by how fast the arm moved just
before (a subgoal is reached, then the next motion starts: a change that starts from rest is more
salient than one made at speed), and raised where the hand stops descending and starts moving
sideways (it reached an object from above and starts working on it). Gripper open/close events
are found apart and outrank motion changes.
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
# A gripper signal changing less than this fraction of its range per frame is still; a start
# transient that is still moving at the end of its window is followed up to this many windows.
_STILL, _TRANSIENT_STRETCH = 0.01, 4
# A gripper signal moving less than this fraction of its range over half a transient window has settled.
_SETTLED = 0.05
# A command and the fingers whose correlation is weaker than this say nothing about each other.
_RELATED = 0.2
# While accelerating from rest, each frame is at most this fraction as fast as the next.
_RAMP = 0.8
# After a gripper event, the first motion change at least this fraction as salient as the
# strongest one before the next event starts the next subtask.
_FIRST_SALIENT = 0.5


@dataclass(frozen=True)
class Candidate:
    frame: int
    score: float
    kind: Kind


def window_means(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) -> before (n, d), after (n, d): means over [t-w, t) and [t, t+w), clipped at the ends."""
    n, d = x.shape
    # Running sums padded with w copies of their first and last value: every window is then the
    # difference of two slices (slices, not fancy indexing: this runs several times per episode).
    c = np.empty((n + 1 + 2 * w, d))
    c[: w + 1] = 0.0
    np.cumsum(x, axis=0, out=c[w + 1 : w + 1 + n])
    c[w + 1 + n :] = c[w + n]
    t = np.arange(n)
    before = (c[w : w + n] - c[:n]) / np.maximum(np.minimum(t, w), 1)[:, None]
    after = (c[2 * w : 2 * w + n] - c[w : w + n]) / np.maximum(np.minimum(n - t, w), 1)[:, None]
    return before, after


def quantile(x: np.ndarray, q: float) -> float:
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
    scale = quantile(np.linalg.norm(motion, axis=1), 0.9) or 1.0
    change = np.linalg.norm(after - before, axis=1) / scale
    speed_before = window_means(speed[:, None], w)[0][:, 0] / (quantile(speed, 0.5) or 1.0)
    score = change / (speed_before + arrival)
    edge = max(w // 2, 1)
    score[:edge] = 0.0
    score[-edge:] = 0.0
    return score


def contact_scores(motion: np.ndarray, vertical: int, w: int) -> np.ndarray:
    """(n, d) -> (n,) in [0, 1]: how much frame t looks like reaching an object from above and
    starting to work on it: the share of downward motion over the `w` frames before times the
    share of sideways motion over the `w` frames after (z is up in robot base frames)."""
    before, after = window_means(motion, w)
    down = np.clip(-before[:, vertical], 0, None) / (np.linalg.norm(before, axis=1) + 1e-12)
    sideways = np.linalg.norm(np.delete(after, vertical, axis=1), axis=1) / (np.linalg.norm(after, axis=1) + 1e-12)
    return down * sideways


def local_peaks(score: np.ndarray, min_distance: int) -> list[int]:
    """Frames of local maxima of `score` (> 0), at least `min_distance` apart, strongest kept."""
    s = score
    is_peak = np.zeros(len(s), dtype=bool)
    is_peak[1:-1] = (s[1:-1] >= s[:-2]) & (s[1:-1] > s[2:]) & (s[1:-1] > 0)
    peaks = np.flatnonzero(is_peak)
    blocked = np.zeros(len(s), dtype=bool)  # within min_distance of a stronger kept peak
    kept: list[int] = []
    for t in peaks[np.argsort(-s[peaks], kind="stable")].tolist():  # Python ints index faster than numpy's
        if not blocked[t]:
            kept.append(t)
            blocked[max(t - min_distance + 1, 0) : t + min_distance] = True
    return sorted(kept)


def open_level(command: np.ndarray, fingers: np.ndarray) -> int | None:
    """Which level of a gripper command (0: its low end, 1: its high end) opens the gripper, read
    from the measured fingers (n,): they start open, and move with the command or against it.
    None when the fingers do not tell (no motion, not at either end at the start, unrelated)."""
    span, c_span = float(np.ptp(fingers)), float(np.ptp(command))
    if span == 0 or c_span == 0:
        return None
    start = (fingers[0] - fingers.min()) / span
    if _GRIP_LOW < start < _GRIP_HIGH:
        return None
    c, f = command - command.mean(), fingers - fingers.mean()
    corr = float(c @ f) / float(np.sqrt((c @ c) * (f @ f)))  # Pearson's r (np.corrcoef costs more)
    if abs(corr) < _RELATED:
        return None
    return int((start >= _GRIP_HIGH) == (corr > 0))


def gripper_events(
    gripper: np.ndarray,
    min_hold: int,
    skip: int = 0,
    fingers: np.ndarray | None = None,
    travelling: np.ndarray | None = None,
) -> list[tuple[int, Kind]]:
    """(n,) -> [(frame, "close" | "open")]: where the gripper signal starts a change across
    mid-range that stays (a slow, hesitant closing counts from where it set off).

    The sign convention differs between robots and between commands and openings. With the
    measured `fingers` (n,) beside a command, the direction that closes is read from them (see
    `open_level`); otherwise demonstrations start with the gripper open, so the first event's
    direction is the one called "close". The first `skip` frames are a start transient (a twitch,
    fingers opening from their rest pose): the signals are read from the end of that transient on
    (see `after_transient`, which `travelling` (n,) bool, the arm moving, informs), so whatever
    they do before decides nothing.
    """
    if skip > 0:
        g = np.asarray(gripper, dtype=np.float64)
        # The fingers, where measured, say how long it lasts (they lag the command).
        if fingers is None:
            start = after_transient(g, skip, None, travelling)
        else:
            start = after_transient(np.asarray(fingers, dtype=np.float64), skip, g, travelling)
        tail = None if fingers is None else np.asarray(fingers)[start:]
        return [(f + start, kind) for f, kind in gripper_events(g[start:], min_hold, 0, tail)]
    g = np.asarray(gripper, dtype=np.float64)
    if len(g) < 2:
        return []
    lo, hi = float(g.min()), float(g.max())
    if hi - lo < _GRIP_MIN_RANGE * max(abs(lo), abs(hi), 1e-9):
        return []
    u = (g - lo) / (hi - lo)
    level = np.where(u >= _GRIP_HIGH, 1, np.where(u <= _GRIP_LOW, 0, -1))
    # Hysteresis: between the levels the last level reached holds.
    t = np.arange(len(u))
    reached = np.maximum.accumulate(np.where(level >= 0, t, 0))
    held = np.where(level[reached] >= 0, level[reached], int(u[0] >= 0.5))
    events: list[tuple[int, int]] = []  # (first frame past mid-range, new level)
    current = held[0]
    for t in np.flatnonzero(held[1:] != held[:-1]) + 1:
        if held[t] == current or not np.all(held[t : t + min_hold] == held[t]):
            continue  # back before `min_hold` frames: a flicker, not an event
        cross = t
        while cross > 0 and (u[cross - 1] >= 0.5) == (held[t] == 1):
            cross -= 1
        # back to where the change set off: while each earlier frame is further from the new level
        toward = 1.0 if held[t] == 1 else -1.0
        while cross > 1 and toward * (u[cross - 1] - u[cross - 2]) > _STILL:
            cross -= 1
        events.append((int(cross), int(held[t])))
        current = held[t]
    if not events:
        return []
    opens = open_level(g, np.asarray(fingers, dtype=np.float64)) if fingers is not None and len(fingers) == len(g) else None
    closing_level = events[0][1] if opens is None else 1 - opens
    return [(f, "close" if lvl == closing_level else "open") for f, lvl in events]


def _changing(x: np.ndarray, k: int) -> np.ndarray:
    """(n,) -> (n,) bool: the signal moves by more than `_SETTLED` of its range over the next k
    frames (a slow ramp changes little per frame but keeps changing)."""
    span = float(np.ptp(x))
    out = np.zeros(len(x), dtype=bool)
    if span > 0:
        out[:-k] = np.abs(x[k:] - x[:-k]) > _SETTLED * span
    return out


def after_transient(
    g: np.ndarray, skip: int, command: np.ndarray | None = None, travelling: np.ndarray | None = None
) -> int:
    """Where the start transient of a gripper signal (n,) ends: frame `skip`; or, when the gripper
    (or its `command`) changes in the first `skip` frames and the arm is `travelling` (n,) bool
    (fingers leaving their rest pose during the first reach, as ALOHA's scripts open theirs; a
    grasp closes on an object the hand has reached), the frame the signal settles (having first
    waited for fingers that lag their command), at most `_TRANSIENT_STRETCH` times `skip`."""
    if len(g) <= skip:
        return skip
    k = max(skip // 2, 1)
    changing = _changing(g, k)
    commanded = _changing(command, k) if command is not None else changing
    t = skip
    within = max(skip - k, 1)  # a change that starts (and shows) inside the window
    if changing[:within].any() or commanded[:within].any():
        limit = min(len(g), _TRANSIENT_STRETCH * skip)
        while t < limit and (changing[t] or commanded[t]) and (travelling is None or travelling[t]):
            t += 1
    return t


def drop_regrasps(events: Sequence[tuple[int, Kind]], within: int) -> list[tuple[int, Kind]]:
    """One arm's events without re-grasps: an opening followed by a closing within `within` frames
    (the hand lets go and takes hold again without leaving) is dropped with that closing."""
    out: list[tuple[int, Kind]] = []
    for frame, kind in events:
        if kind == "close" and out and out[-1][1] == "open" and frame - out[-1][0] < within and len(out) > 1:
            out.pop()
            continue
        out.append((frame, kind))
    return out


def closing_end(fingers: np.ndarray, event: int, stop: int, fraction: float) -> int:
    """The frame the fingers have closed: the first frame from `event` on that has covered
    `fraction` of the way from their opening at `event` to where they settle (at `stop`, the
    next event or the end). Slow, hesitant closing then still ends where the fingers come to rest."""
    f = np.asarray(fingers[event:stop], dtype=np.float64)
    if len(f) < 2:
        return event
    settled = float(np.median(f[-max(2, len(f) // 4):]))
    travel = settled - float(fingers[max(event - 1, 0)])
    if travel == 0:
        return event
    covered = (f - float(fingers[max(event - 1, 0)])) / travel
    return event + int(np.argmax(covered >= fraction))


def motion_onset(speed: np.ndarray, peak: int, max_back: int) -> int:
    """The first frame of the motion whose change peaks at `peak`.

    A motion that starts from rest peaks mid-acceleration. Walking back from the peak while each
    frame is clearly slower than the next (below `_RAMP` of it) finds the foot of that ramp, at
    most `max_back` frames back; the motion starts on the frame after it. A switch between two
    motions at speed has no such ramp and keeps the peak.
    """
    t = peak
    while t > 0 and peak - t < max_back and speed[t - 1] < _RAMP * speed[t]:
        t -= 1
    return min(t + 1, peak)


def grasp_boundaries(
    score: np.ndarray,
    peaks: Sequence[int],
    speed: np.ndarray,
    events: Sequence[tuple[int, Kind]],
    w: int,
    bonus: float,
) -> list[Candidate]:
    """For each gripper event, the first frame of the motion that follows it.

    `score`, `peaks` and `speed` describe the motion that counts: all of it after a grasp (the
    object's first motion, lift included, starts the next subtask), horizontal motion after a
    release (backing off still belongs to the place). Peaks from `w // 2` frames before the
    event (a gripper command and the motion it allows are logged a frame or two apart) until `w`
    frames after the next event count (a gripper may be commanded shut long before it closes on
    the object), those where the arm speeds up (the end of the descent onto the object is not the
    start of its motion); the first of them at least `_FIRST_SALIENT` of the strongest is taken (a lift
    from rest and the carry that starts after it can be equally sharp; the lift comes first),
    and the arrival term favours starting from rest over stopping or turning at speed. The
    candidate scores `bonus` plus the strongest change in its window, so that no motion change
    while the gripper holds (a slip and a second grasp) outranks the event itself.
    """
    speed_before, speed_after = (m[:, 0] for m in window_means(speed[:, None], w))
    out: list[Candidate] = []
    for i, (frame, kind) in enumerate(events):
        end = events[i + 1][0] + w if i + 1 < len(events) else len(score)
        inside = [p for p in peaks if frame - w // 2 <= p <= end]
        strongest = max((float(score[p]) for p in inside), default=float(score[frame]))
        starts = [p for p in inside if speed_after[p] > speed_before[p]] or inside
        if starts:
            first = max(score[p] for p in starts)
            peak = next(p for p in starts if score[p] >= _FIRST_SALIENT * first)
            onset = motion_onset(speed, peak, 2 * w)
        else:
            onset = frame
        out.append(Candidate(onset, bonus + strongest, kind))
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
    `mismatch_penalty`, and so does each grasp a pick passes over (a pick ends at the next grasp,
    not at a later one such as the receiving arm's in a handover). Boundaries keep every subtask
    at least `min_frames` long. None when the candidates cannot fit.
    """
    cands = sorted((c for c in candidates if min_frames <= c.frame <= n_frames - min_frames), key=lambda c: c.frame)
    k, m = len(needs), len(cands)
    if k == 0:
        return []
    frames = np.array([c.frame for c in cands])
    kinds = [c.kind for c in cands]
    gain = np.array([[0.0 if need in ("motion", kind) else -mismatch_penalty for kind in kinds] for need in needs])
    gain += np.array([c.score for c in cands])
    # closes[j]: grasps before candidate j. A pick ending at j after one ending at j' passes over
    # closes[j] - closes[j' + 1] grasps: the cost splits into a term of j and one of j'.
    closes = np.concatenate([[0], np.cumsum([kind == "close" for kind in kinds])]).astype(float)
    skip = np.array([mismatch_penalty if need == "close" else 0.0 for need in needs])
    gain -= skip[:, None] * closes[None, :m]
    # Candidates are sorted by frame, so those at least min_frames before candidate j are a prefix.
    allowed = np.searchsorted(frames, frames - min_frames, side="right")
    best = np.full((k, m), -np.inf)
    back = np.zeros((k, m), dtype=int)
    best[0] = gain[0]
    for i in range(1, k):
        carried = best[i - 1] + skip[i] * closes[1:]
        running = np.maximum.accumulate(carried)  # best over each prefix ...
        arg = np.maximum.accumulate(np.where(carried == running, np.arange(m), 0))  # ... and where
        ok = allowed > 0
        best[i, ok] = running[allowed[ok] - 1] + gain[i, ok]
        back[i, ok] = arg[allowed[ok] - 1]
    if m == 0 or not np.isfinite(best[k - 1]).any():
        return None
    j = int(np.argmax(best[k - 1]))
    chosen = [cands[j]]
    for i in range(k - 1, 0, -1):
        j = int(back[i, j])
        chosen.append(cands[j])
    return chosen[::-1]
