"""The decomposition rules of DESIGN.md, written once; every other module calls `check_subtasks`."""

from __future__ import annotations

from collections.abc import Sequence

from atomvla.schemas.subtask import Subtask

MIN_SUBTASKS = 2
MAX_SUBTASKS = 5
DEFAULT_MIN_FRAMES = 2


def check_subtasks(
    subtasks: Sequence[Subtask], n_frames: int, min_frames: int = DEFAULT_MIN_FRAMES
) -> list[str]:
    """Every rule the subtasks break, one message each, naming the subtask (1-based); [] if valid."""
    problems: list[str] = []
    k = len(subtasks)
    if not MIN_SUBTASKS <= k <= MAX_SUBTASKS:
        problems.append(f"has {k} subtasks; a decomposition needs {MIN_SUBTASKS}-{MAX_SUBTASKS}")
    if k == 0:
        return problems
    if subtasks[0].start_frame != 0:
        problems.append(f"subtask 1 starts at frame {subtasks[0].start_frame}; the first must start at 0")
    if subtasks[-1].end_frame != n_frames:
        problems.append(
            f"subtask {k} ends at frame {subtasks[-1].end_frame}; the last must end at n_frames={n_frames}"
        )
    for i, s in enumerate(subtasks, start=1):
        if s.end_frame - s.start_frame < min_frames:
            problems.append(
                f"subtask {i} spans frames [{s.start_frame}, {s.end_frame}): "
                f"{s.end_frame - s.start_frame} frames, fewer than the minimum {min_frames}"
            )
        if s.end_frame > n_frames:
            problems.append(f"subtask {i} ends at frame {s.end_frame}, past n_frames={n_frames}")
        if i < k and s.end_frame != subtasks[i].start_frame:
            gap = "a gap" if s.end_frame < subtasks[i].start_frame else "an overlap"
            problems.append(
                f"subtask {i} ends at frame {s.end_frame} but subtask {i + 1} starts at "
                f"{subtasks[i].start_frame} ({gap}); subtasks must be contiguous"
            )
    return problems
