"""Agreement between two decompositions of one episode: boundary F1 within a tolerance and the
mean segment IoU, and the same summed over episodes for each pair of authors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from atomvla.curate.quality.boundaries import BoundaryMatch, match_boundaries
from atomvla.schemas import Decomposition, Subtask


def _best_iou(segment: Subtask, others: Sequence[Subtask]) -> float:
    best = 0.0
    for o in others:
        inter = min(segment.end_frame, o.end_frame) - max(segment.start_frame, o.start_frame)
        if inter > 0:
            union = max(segment.end_frame, o.end_frame) - min(segment.start_frame, o.start_frame)
            best = max(best, inter / union)
    return best


def segment_iou(a: Sequence[Subtask], b: Sequence[Subtask]) -> float:
    """Mean over the segments of each side of the best frame IoU with a segment of the other side,
    averaged over both sides (symmetric; 1.0 for identical boundaries)."""
    if not a or not b:
        return 0.0
    ab = sum(_best_iou(s, b) for s in a) / len(a)
    ba = sum(_best_iou(s, a) for s in b) / len(b)
    return (ab + ba) / 2


@dataclass(frozen=True)
class PairAgreement:
    """Two authors' latest revisions compared over the episodes both decomposed."""

    kind: str  # "backends", "annotators", "backend vs annotator" or "annotator vs backend" (first vs second)
    first: str
    second: str
    episodes: int
    boundaries: BoundaryMatch
    mean_iou: float

    @property
    def f1(self) -> float:
        return self.boundaries.f1

    def as_dict(self) -> dict:
        return {"kind": self.kind, "first": self.first, "second": self.second, "episodes": self.episodes,
                "boundary_f1": round(self.f1, 4), "segment_iou": round(self.mean_iou, 4)}


@dataclass(frozen=True)
class EpisodeAgreement:
    episode_id: str
    first: str
    second: str
    boundaries: BoundaryMatch
    iou: float


def compare(a: Decomposition, b: Decomposition, tolerance: int) -> tuple[BoundaryMatch, float]:
    """Boundary match (b taken as reference) and segment IoU of two decompositions of one episode."""
    return match_boundaries(a.boundaries, b.boundaries, tolerance), segment_iou(a.subtasks, b.subtasks)


def pairwise(
    by_episode: Mapping[str, Mapping[str, Decomposition]],
    kind_of: Mapping[str, str],
    tolerance_of: Mapping[str, int],
) -> tuple[list[PairAgreement], list[EpisodeAgreement]]:
    """For every pair of authors: the agreement summed over the episodes both decomposed.

    `by_episode` maps episode -> author -> that author's latest usable revision; `kind_of` says
    whether an author is a backend or a person; `tolerance_of` gives each episode's tolerance in frames.
    """
    sums: dict[tuple[str, str], tuple[int, BoundaryMatch, float]] = {}
    per_episode: list[EpisodeAgreement] = []
    for episode_id, by_author in by_episode.items():
        for first, second in combinations(sorted(by_author), 2):
            match, iou = compare(by_author[first], by_author[second], tolerance_of[episode_id])
            per_episode.append(EpisodeAgreement(episode_id, first, second, match, iou))
            n, total, iou_sum = sums.get((first, second), (0, BoundaryMatch(0, 0, 0, ()), 0.0))
            sums[(first, second)] = (n + 1, total + match, iou_sum + iou)
    pairs = [
        PairAgreement(_pair_kind(kind_of[a], kind_of[b]), a, b, n, total, iou_sum / n)
        for (a, b), (n, total, iou_sum) in sorted(sums.items())
    ]
    return pairs, per_episode


def _pair_kind(a: str, b: str) -> str:
    return f"{a}s" if a == b else f"{a} vs {b}"  # in the order of the first and second columns


def authors(decs: Iterable[Decomposition]) -> dict[str, Decomposition]:
    """The latest non-failed revision of each author among `decs`."""
    out: dict[str, Decomposition] = {}
    for d in sorted(decs, key=lambda d: d.revision):
        if d.subtasks:
            out[d.author] = d
    return out
