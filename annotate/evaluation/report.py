"""Per-episode scores, and their summary overall and per task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from rich.table import Table

from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries
from atomvla.annotate.evaluation.objects import object_hits
from atomvla.annotate.evaluation.segmental import OVERLAPS, SegmentCounts, edit_score, f1_counts, segments_of
from atomvla.schemas import Subtask


def _boundaries(subtasks: Sequence[Subtask]) -> list[int]:
    return [s.start_frame for s in subtasks[1:]]


@dataclass(frozen=True)
class EpisodeScore:
    """One episode's prediction against its truth; `predicted` is None when there is no proposal."""

    episode_id: str
    task: str
    predicted: tuple[Subtask, ...] | None
    truth: tuple[Subtask, ...]
    boundary: BoundaryMatch
    segmental: tuple[SegmentCounts, ...]  # one per OVERLAPS
    edit: float
    objects: tuple[bool, ...]  # per true subtask

    @property
    def count_ok(self) -> bool:
        return self.predicted is not None and len(self.predicted) == len(self.truth)


def score_episode(
    episode_id: str, task: str, predicted: Sequence[Subtask] | None, truth: Sequence[Subtask], tolerance: int
) -> EpisodeScore:
    pred = tuple(predicted or ())
    pred_seg, true_seg = segments_of(pred), segments_of(truth)
    return EpisodeScore(
        episode_id=episode_id,
        task=task,
        predicted=None if predicted is None else pred,
        truth=tuple(truth),
        boundary=match_boundaries(_boundaries(pred), _boundaries(truth), tolerance),
        segmental=tuple(f1_counts(pred_seg, true_seg, k) for k in OVERLAPS),
        edit=edit_score(pred_seg, true_seg),
        objects=tuple(object_hits(pred, truth)),
    )


@dataclass(frozen=True)
class Summary:
    """Metrics over a group of episodes. Boundary and segmental scores are micro-averaged (counts
    summed, then divided, as MS-TCN does); edit score is the mean over episodes; object accuracy is
    over all true subtasks."""

    episodes: int
    missing: int  # episodes without a proposal (scored as predicting nothing)
    precision: float
    recall: float
    f1: float
    mean_abs_error: float | None  # frames, over matched boundaries
    median_abs_error: float | None
    count_accuracy: float
    f1_at: dict[str, float]  # "10", "25", "50" -> segmental F1
    edit: float
    object_accuracy: float


def summarize(scores: Sequence[EpisodeScore]) -> Summary:
    if not scores:
        raise ValueError("no episodes to summarise")
    b = sum((s.boundary for s in scores), BoundaryMatch(0, 0, 0, ()))
    seg = [sum((s.segmental[i] for s in scores), SegmentCounts(0, 0, 0)) for i in range(len(OVERLAPS))]
    objects = [hit for s in scores for hit in s.objects]
    return Summary(
        episodes=len(scores),
        missing=sum(s.predicted is None for s in scores),
        precision=b.precision,
        recall=b.recall,
        f1=b.f1,
        mean_abs_error=float(np.mean(b.errors)) if b.errors else None,
        median_abs_error=float(np.median(b.errors)) if b.errors else None,
        count_accuracy=float(np.mean([s.count_ok for s in scores])),
        f1_at={f"{round(k * 100)}": c.f1 for k, c in zip(OVERLAPS, seg)},
        edit=float(np.mean([s.edit for s in scores])),
        object_accuracy=float(np.mean(objects)) if objects else 1.0,
    )


def report(scores: Sequence[EpisodeScore], tolerance: int) -> dict:
    """Everything as plain data: overall, per task, per episode (JSON-ready)."""
    tasks = sorted({s.task for s in scores})
    return {
        "tolerance_frames": tolerance,
        "overall": asdict(summarize(scores)),
        "per_task": {t: asdict(summarize([s for s in scores if s.task == t])) for t in tasks},
        "episodes": [
            {
                "episode_id": s.episode_id,
                "task": s.task,
                "predicted_boundaries": None if s.predicted is None else _boundaries(s.predicted),
                "true_boundaries": _boundaries(s.truth),
                "boundary_f1": s.boundary.f1,
                "count_ok": s.count_ok,
                "edit": s.edit,
                "objects": list(s.objects),
            }
            for s in scores
        ],
    }


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(title: str, rep: dict) -> Table:
    """Rows per task, then overall; slashes pack related metrics so the table fits a terminal."""
    t = Table(title=title)
    t.add_column("task", no_wrap=True, overflow="ellipsis", max_width=32)
    for col in ("eps", "no prop.", f"F1@{rep['tolerance_frames']}f", "P/R", "err mean/med", "count",
                "F1@10/25/50", "edit", "object"):
        t.add_column(col, justify="right", no_wrap=True)
    rows = [*rep["per_task"].items(), ("overall", rep["overall"])]
    for i, (name, s) in enumerate(rows):
        f1_at = "/".join(_fmt(s["f1_at"][k]) for k in ("10", "25", "50"))
        t.add_row(
            name, str(s["episodes"]), str(s["missing"]), _fmt(s["f1"]),
            f"{_fmt(s['precision'])}/{_fmt(s['recall'])}",
            f"{_fmt(s['mean_abs_error'], 1)}/{_fmt(s['median_abs_error'], 1)}", _fmt(s["count_accuracy"]),
            f1_at, _fmt(s["edit"]), _fmt(s["object_accuracy"]), end_section=i == len(rows) - 2,
        )
    return t
