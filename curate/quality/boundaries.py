"""Boundary detection scores: greedy one-to-one matching within a tolerance in frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BoundaryMatch:
    """Counts and matched errors for one episode (or summed over many)."""

    tp: int
    fp: int
    fn: int
    errors: tuple[int, ...]  # |predicted - true| of each matched pair, in frames

    @property
    def precision(self) -> float:
        """TP / predicted; 1.0 when nothing was predicted (no false claim was made)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / true; 1.0 when there is nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: BoundaryMatch) -> BoundaryMatch:
        return BoundaryMatch(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.errors + other.errors)


def match_boundaries(predicted: Sequence[int], truth: Sequence[int], tolerance: int) -> BoundaryMatch:
    """Pairs closest first; each boundary is used at most once; pairs farther than `tolerance` never match."""
    pairs = sorted(
        (abs(p - t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth) if abs(p - t) <= tolerance
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    errors: list[int] = []
    for dist, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            errors.append(dist)
    tp = len(errors)
    return BoundaryMatch(tp=tp, fp=len(predicted) - tp, fn=len(truth) - tp, errors=tuple(errors))
