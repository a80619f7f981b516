"""Does a predicted subtask name the same object as the true one it overlaps most?"""

from __future__ import annotations

import re
from collections.abc import Sequence

from atomvla.annotate.instructions import object_of
from atomvla.schemas import Subtask


def _words(phrase: str) -> set[str]:
    # Naive singular: "blocks" and "block" are the same object.
    return {re.sub(r"(?<=[a-z]{3})s$", "", w) for w in phrase.split()}


def same_object(predicted: str | None, truth: str | None) -> bool:
    """True when one object's words contain the other's ("drawer" ~ "drawer handle"; "black bowl"
    is not "white bowl"). A missing object on either side never matches."""
    if not predicted or not truth:
        return False
    p, t = _words(predicted), _words(truth)
    return p <= t or t <= p


def pair_by_overlap(predicted: Sequence[Subtask], truth: Sequence[Subtask]) -> list[tuple[int, int]]:
    """One-to-one (predicted index, truth index) pairs, largest frame overlap first; no empty overlaps."""
    overlaps = sorted(
        (
            (min(p.end_frame, t.end_frame) - max(p.start_frame, t.start_frame), i, j)
            for i, p in enumerate(predicted)
            for j, t in enumerate(truth)
        ),
        reverse=True,
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    pairs = []
    for overlap, i, j in overlaps:
        if overlap > 0 and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return sorted(pairs, key=lambda ij: ij[1])


def object_hits(predicted: Sequence[Subtask], truth: Sequence[Subtask]) -> list[bool]:
    """Per true subtask: does the predicted subtask paired with it name the same object?"""
    hits = [False] * len(truth)
    for i, j in pair_by_overlap(predicted, truth):
        hits[j] = same_object(object_of(predicted[i].instruction), object_of(truth[j].instruction))
    return hits
