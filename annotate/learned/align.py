"""Exemplar alignment: a team's accepted episodes carry their boundaries to a new episode.

Accepted episodes are exemplars with known boundaries. A new episode's per-frame features are
aligned to each exemplar's by dynamic time warping (DTW: human-like episodes differ in pace and
pauses, which the warping absorbs), each exemplar boundary is carried along the warping path to
the new episode's frames, and the carried boundaries of all exemplars become an alignment prior:
a bump at each, averaged over exemplars (1 where every exemplar agrees), that decoding adds to
the network's probability as it adds the heuristic's prior. It finds a team's events the
fine-tuned network does not mark (an object's own first motion where pretraining taught the
hand's events), when the episodes do the same thing in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float

from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries

# The continuous channels an episode is aligned on (features.py): the hand's motion, the grippers
# and fingers, how far the scene has moved and the hand's distance to it, and progress (a weak pull
# towards the diagonal: the same phase lies at a similar fraction of both episodes). Event bumps
# and spiky speeds are left out (the network reads them already; they align by chance), and so is
# the plan (the same for every episode of a task). Chosen on the development split, alignment alone
# (first 2 episodes -> the others): human-like 0.88 vs 0.80 with the scene's speed instead of progress.
ALIGN_CHANNELS = (
    "speed", "motion_up", "motion_sideways", "grip_max", "grip_min", "fingers_max", "fingers_min",
    "scene_moved", "scene_near", "progress",
)
PRIOR_SIGMA = 1.5  # grid frames: the width of a carried boundary's bump


class AlignmentError(ValueError):
    """Exemplars that cannot be aligned with an episode (another feature layout, bad shapes)."""


@dataclass(frozen=True)
class Exemplar:
    """An accepted episode as alignment needs it: its alignment features, boundaries (grid frames)
    and instruction (an episode aligns only with exemplars of its own: another task's boundaries,
    carried over, would pull decoding to events that task does not have)."""

    x: Float[np.ndarray, "t d"]
    boundaries: tuple[int, ...]
    instruction: str = ""


def align_features(x: Float[np.ndarray, "t c"], channels: Sequence[str]) -> Float[np.ndarray, "t d"]:
    """The ALIGN_CHANNELS of features `x` (layout `channels`), each standardised over the episode
    (a flat channel reads 0). Raises AlignmentError when the layout lacks one or the widths differ."""
    if x.ndim != 2 or x.shape[1] != len(channels):
        raise AlignmentError(f"features of shape {x.shape} do not match a layout of {len(channels)} channels")
    if missing := [c for c in ALIGN_CHANNELS if c not in channels]:
        raise AlignmentError(f"the feature layout has no {', '.join(missing)} channel(s) to align on")
    a = x[:, [channels.index(c) for c in ALIGN_CHANNELS]].astype(np.float64)
    return np.ascontiguousarray((a - a.mean(0)) / np.maximum(a.std(0), 1e-6), dtype=np.float32)


def exemplar(x: Float[np.ndarray, "t c"], channels: Sequence[str], boundaries: Sequence[int], instruction: str = "") -> Exemplar:
    """An exemplar from an accepted episode's features, its boundaries (grid frames) and instruction."""
    if any(not 0 < b < len(x) for b in boundaries):
        raise AlignmentError(f"boundaries {list(boundaries)} do not lie inside an episode of {len(x)} grid frames")
    return Exemplar(align_features(x, channels), tuple(int(b) for b in boundaries), instruction)


def _accumulated(q: Float[np.ndarray, "tq d"], ex: Float[np.ndarray, "e te d"]) -> Float[np.ndarray, "e tq te"]:
    """DTW accumulated cost of `q` against each of the (padded) exemplars: D[i, j] = c[i, j] +
    min(D[i-1, j-1], D[i-1, j], D[i, j-1]). Row by row; within a row the left-to-right dependency
    is a running minimum (D[i, j] = S_j + min over l <= j of (m_l - S_(l-1)), S the row's cost
    prefix sums, m_l the best of the two cells above), so each row is a few vector operations."""
    # L1 distances (e, tq, te); torch's cdist is ~10x numpy's broadcast-and-sum here
    qt, et = torch.from_numpy(np.asarray(q, np.float32)), torch.from_numpy(np.asarray(ex, np.float32))
    cost = torch.cdist(qt[None].expand(len(et), -1, -1), et, p=1).numpy().astype(np.float64)
    s = np.cumsum(cost, axis=2)
    before = s - cost  # S_(l-1)
    d = np.empty_like(s)
    d[:, 0] = s[:, 0]
    m = np.empty_like(s[:, 0])
    for i in range(1, q.shape[0]):
        above = d[:, i - 1]
        m[:, 0] = above[:, 0]
        np.minimum(above[:, 1:], above[:, :-1], out=m[:, 1:])
        d[:, i] = s[:, i] + np.minimum.accumulate(m - before[:, i], axis=1)
    return d


def warping_path(d: Float[np.ndarray, "tq te"]) -> tuple[np.ndarray, np.ndarray]:
    """The warping path through accumulated costs `d` as (query frames, exemplar frames), traced back
    from the end to the cheapest of the three cells before (ties: diagonal, then up)."""
    i, j = d.shape[0] - 1, d.shape[1] - 1
    qi, ej = [i], [j]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = d[i - 1, j - 1], d[i - 1, j], d[i, j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        qi.append(i)
        ej.append(j)
    return np.asarray(qi), np.asarray(ej)


def _carried(d: Float[np.ndarray, "tq te"], boundaries: Sequence[int]) -> list[float]:
    """The query frame each exemplar boundary (> 0) maps to: the first query frame of the warping
    path's cells in the boundary's exemplar column (a boundary is a subtask's first frame; where the
    path dwells there, the episode stays in that frame's state)."""
    qi, ej = warping_path(d)
    return [float(qi[ej == b].min()) for b in boundaries]


def carry(q: Float[np.ndarray, "t d"], exemplars: Sequence[Exemplar]) -> list[list[float]]:
    """Per exemplar, where its boundaries fall in the episode of alignment features `q` (grid frames)."""
    if not exemplars:
        return []
    if any(e.x.ndim != 2 or e.x.shape[1] != q.shape[1] for e in exemplars):
        raise AlignmentError(f"exemplar features of width {[e.x.shape[-1] for e in exemplars]} cannot align with {q.shape[1]}")
    te = max(len(e.x) for e in exemplars)
    ex = np.zeros((len(exemplars), te, q.shape[1]), np.float32)
    for k, e in enumerate(exemplars):
        ex[k, : len(e.x)] = e.x  # the padding lies right of each exemplar's end: no cell it reads depends on it
    d = _accumulated(q, ex)
    return [_carried(d[k, :, : len(e.x)], e.boundaries) for k, e in enumerate(exemplars)]


def alignment_prior(q: Float[np.ndarray, "t d"], exemplars: Sequence[Exemplar], weight: float) -> Float[np.ndarray, "t"] | None:
    """`weight` times the mean over exemplars of unit bumps at their carried boundaries (None
    without exemplars or weight)."""
    if not exemplars or not weight:
        return None
    t = np.arange(len(q))
    out = np.zeros(len(q))
    for carried in carry(q, exemplars):
        bumps = np.zeros(len(q))
        for b in carried:
            bumps = np.maximum(bumps, np.exp(-0.5 * ((t - b) / PRIOR_SIGMA) ** 2))
        out += bumps
    return weight * out / len(exemplars)


def leave_one_out(exemplars: Sequence[Exemplar], reach: int) -> float | None:
    """Boundary F1 (a pair matching within `reach` grid frames) of each exemplar's boundaries
    carried from the others of its instruction (their rounded mean where the counts agree); None
    with fewer than 2."""
    if len(exemplars) < 2:
        return None
    total = BoundaryMatch(0, 0, 0, ())
    for j, e in enumerate(exemplars):
        others = [o for k, o in enumerate(exemplars)
                  if k != j and len(o.boundaries) == len(e.boundaries) and o.instruction == e.instruction]
        carried = carry(e.x, others) if others else []
        guess = [round(float(np.mean(c))) for c in zip(*carried)] if carried else []
        total += match_boundaries(guess, list(e.boundaries), reach)
    return total.f1
