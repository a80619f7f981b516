"""The JSON Lines interchange record (one episode per line), also the ground-truth format."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from atomvla.schemas.decomposition import Decomposition, Status
from atomvla.schemas.rules import DEFAULT_MIN_FRAMES
from atomvla.schemas.subtask import Subtask


class InterchangeRecord(BaseModel):
    """`{"episode_index", "episode_id", "task", "n_frames", "fps", "subtasks", "status", ...}`.

    Extra keys (a ground-truth file's `seed`, say) are kept, so a round trip loses nothing.
    """

    model_config = ConfigDict(extra="allow")

    episode_index: int
    episode_id: str | None = None
    task: str | None = None
    n_frames: int
    fps: float | None = None
    subtasks: list[Subtask]
    status: Status = Status.accepted
    author: str | None = None
    revision: int | None = None

    @classmethod
    def from_decomposition(
        cls, dec: Decomposition, episode_index: int, task: str, fps: float
    ) -> InterchangeRecord:
        return cls(
            episode_index=episode_index,
            episode_id=dec.episode_id,
            task=task,
            n_frames=dec.n_frames,
            fps=fps,
            subtasks=list(dec.subtasks),
            status=dec.status,
            author=dec.author,
            revision=dec.revision,
        )

    def to_decomposition(self, episode_id: str, author: str, min_frames: int = DEFAULT_MIN_FRAMES) -> Decomposition:
        """The record as a new (unstored) revision by `author`; validated against the contract."""
        return Decomposition(
            episode_id=episode_id,
            n_frames=self.n_frames,
            subtasks=tuple(self.subtasks),
            status=self.status,
            author=author,
            min_frames=min_frames,
            note=f"imported from a file authored by {self.author}" if self.author and self.author != author else None,
        )
