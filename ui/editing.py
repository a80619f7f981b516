"""The boundary editor's model: segments that may break the contract while being edited, the edit
operations of the review app, live validation through `schemas`, and undo/redo.

Pure Python, no I/O: the app turns key presses into these calls and saves `EditSession.to_record()`
as the author's draft after every change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from pydantic import ValidationError

from atomvla.errors import UserError
from atomvla.schemas import Decomposition, Subtask, check_subtasks

MAX_UNDO = 200  # edits kept per draft; older ones drop off the bottom of the stack


class EditError(UserError, ValueError):
    """An edit that cannot be applied here (e.g. split on an existing boundary); nothing changed."""


@dataclass(frozen=True)
class Segment:
    """One subtask as the editor holds it: frames [start, end), possibly not yet valid."""

    start: int
    end: int
    instruction: str
    skill: str


Segments = tuple[Segment, ...]


def segments_of(dec: Decomposition) -> Segments:
    return tuple(Segment(s.start_frame, s.end_frame, s.instruction, s.skill) for s in dec.subtasks)


def problems(segments: Segments, n_frames: int, min_frames: int) -> list[str]:
    """Every contract rule the segments break ([] if they may be saved as accepted).

    Field rules come from `Subtask`, decomposition rules from `check_subtasks`: the rules stay in
    `schemas`, written once.
    """
    found: list[str] = []
    for i, s in enumerate(segments, start=1):
        try:
            Subtask(start_frame=s.start, end_frame=s.end, instruction=s.instruction.strip(), skill=s.skill)
        except ValidationError as exc:
            for err in exc.errors():
                found.append(f"subtask {i}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
    unchecked = [
        Subtask.model_construct(start_frame=s.start, end_frame=s.end, instruction=s.instruction, skill=s.skill)
        for s in segments
    ]
    return found + check_subtasks(unchecked, n_frames, min_frames)


def to_subtasks(segments: Segments) -> tuple[Subtask, ...]:
    return tuple(
        Subtask(start_frame=s.start, end_frame=s.end, instruction=s.instruction.strip(), skill=s.skill)
        for s in segments
    )


def segment_at(segments: Segments, frame: int) -> int:
    """Index of the segment holding `frame` (the last one past the end)."""
    for i, s in enumerate(segments):
        if s.start <= frame < s.end:
            return i
    return len(segments) - 1


def nearest_boundary(segments: Segments, frame: int) -> int:
    """Boundary b (1..k-1, the start of segment b) closest to `frame`."""
    if len(segments) < 2:
        raise EditError("there is no boundary: split a subtask first")
    return min(range(1, len(segments)), key=lambda b: abs(segments[b].start - frame))


# -- edit operations: each returns new segments or raises EditError ---------------------------


def split(segments: Segments, frame: int) -> Segments:
    i = segment_at(segments, frame)
    s = segments[i]
    if not s.start < frame < s.end:
        raise EditError(f"frame {frame} is already a boundary; move the cursor inside a subtask to split it")
    # The new part keeps the skill but gets no instruction: validation asks the annotator to name it.
    return segments[:i] + (replace(s, end=frame), Segment(frame, s.end, "", s.skill)) + segments[i + 1 :]


def merge_with_next(segments: Segments, frame: int) -> Segments:
    i = segment_at(segments, frame)
    if i + 1 >= len(segments):
        raise EditError("the last subtask has no next subtask to merge with")
    merged = replace(segments[i], end=segments[i + 1].end)
    return segments[:i] + (merged,) + segments[i + 2 :]


def move_boundary(segments: Segments, boundary: int, frame: int) -> Segments:
    """Boundary `boundary` (1..k-1) to `frame`, kept strictly between its neighbours."""
    if not 1 <= boundary < len(segments):
        raise EditError(f"no boundary {boundary} (the decomposition has {len(segments) - 1})")
    left, right = segments[boundary - 1], segments[boundary]
    frame = min(max(frame, left.start + 1), right.end - 1)
    return (
        segments[: boundary - 1]
        + (replace(left, end=frame), replace(right, start=frame))
        + segments[boundary + 1 :]
    )


def nudge(segments: Segments, boundary: int, delta: int) -> Segments:
    if not 1 <= boundary < len(segments):
        raise EditError(f"no boundary {boundary} (the decomposition has {len(segments) - 1})")
    return move_boundary(segments, boundary, segments[boundary].start + delta)


def set_instruction(segments: Segments, index: int, text: str) -> Segments:
    _check_index(segments, index)
    return segments[:index] + (replace(segments[index], instruction=text.strip()),) + segments[index + 1 :]


def set_skill(segments: Segments, index: int, skill: str) -> Segments:
    _check_index(segments, index)
    return segments[:index] + (replace(segments[index], skill=skill),) + segments[index + 1 :]


def _check_index(segments: Segments, index: int) -> None:
    if not 0 <= index < len(segments):
        raise EditError(f"no subtask {index + 1} (the decomposition has {len(segments)})")


# -- the editing session of one author on one episode ----------------------------------------


@dataclass
class EditSession:
    """Segments with undo/redo; `based_on` is the stored revision the edit started from (0: none)."""

    episode_id: str
    n_frames: int
    min_frames: int
    based_on: int
    segments: Segments
    undo_stack: list[Segments] = field(default_factory=list)
    redo_stack: list[Segments] = field(default_factory=list)

    def apply(self, new: Segments) -> bool:
        """Make `new` current; False (and nothing recorded) when it equals the current segments."""
        if new == self.segments:
            return False
        self.undo_stack = (self.undo_stack + [self.segments])[-MAX_UNDO:]
        self.redo_stack = []
        self.segments = new
        return True

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.segments)
        self.segments = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.segments)
        self.segments = self.redo_stack.pop()
        return True

    @property
    def problems(self) -> list[str]:
        return problems(self.segments, self.n_frames, self.min_frames)

    def to_record(self) -> dict:
        """The draft's JSON: the segments with their undo and redo stacks (reload restores all three)."""

        def rows(segs: Segments) -> list[dict]:
            return [asdict(s) for s in segs]

        return {
            "n_frames": self.n_frames,
            "min_frames": self.min_frames,
            "segments": rows(self.segments),
            "undo": [rows(s) for s in self.undo_stack],
            "redo": [rows(s) for s in self.redo_stack],
        }

    @classmethod
    def from_record(cls, episode_id: str, based_on: int, record: dict) -> EditSession:
        def segs(rows: list[dict]) -> Segments:
            return tuple(Segment(**r) for r in rows)

        return cls(
            episode_id=episode_id,
            n_frames=record["n_frames"],
            min_frames=record["min_frames"],
            based_on=based_on,
            segments=segs(record["segments"]),
            undo_stack=[segs(s) for s in record["undo"]],
            redo_stack=[segs(s) for s in record["redo"]],
        )
