"""Segmental F1@k and edit score over skill labels, as MS-TCN / ASFormer define them.

Segments are maximal runs of one label in the frame-wise labelling, so two adjacent subtasks with
the same skill count as one segment, exactly as in those papers' evaluation code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atomvla.schemas import Subtask

OVERLAPS = (0.10, 0.25, 0.50)


@dataclass(frozen=True)
class Segment:
    label: str
    start: int  # inclusive
    end: int  # exclusive


def segments_of(subtasks: Sequence[Subtask]) -> list[Segment]:
    """Subtasks -> label segments, merging neighbours with the same skill."""
    out: list[Segment] = []
    for s in subtasks:
        if out and out[-1].label == s.skill and out[-1].end == s.start_frame:
            out[-1] = Segment(s.skill, out[-1].start, s.end_frame)
        else:
            out.append(Segment(s.skill, s.start_frame, s.end_frame))
    return out


@dataclass(frozen=True)
class SegmentCounts:
    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: SegmentCounts) -> SegmentCounts:
        return SegmentCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def f1_counts(predicted: Sequence[Segment], truth: Sequence[Segment], overlap: float) -> SegmentCounts:
    """MS-TCN's `f_score`: a predicted segment is a hit if its best same-label IoU >= `overlap`
    with a true segment not hit before; otherwise a false positive. Misses are the unhit truths."""
    hit = np.zeros(len(truth), dtype=bool)
    tp = fp = 0
    for p in predicted:
        ious = np.array(
            [
                max(0, min(p.end, t.end) - max(p.start, t.start)) / (max(p.end, t.end) - min(p.start, t.start))
                if t.label == p.label
                else 0.0
                for t in truth
            ]
        )
        j = int(np.argmax(ious)) if len(ious) else -1
        if j >= 0 and ious[j] >= overlap and not hit[j]:
            tp += 1
            hit[j] = True
        else:
            fp += 1
    return SegmentCounts(tp=tp, fp=fp, fn=int((~hit).sum()))


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def edit_score(predicted: Sequence[Segment], truth: Sequence[Segment]) -> float:
    """(1 - normalised Levenshtein distance between the segment label sequences), in [0, 1]."""
    a, b = [s.label for s in predicted], [s.label for s in truth]
    longest = max(len(a), len(b))
    return 1.0 - levenshtein(a, b) / longest if longest else 1.0
