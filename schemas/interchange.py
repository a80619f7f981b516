"""The JSON Lines interchange record (one episode per line), also the ground-truth format."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from atomvla.schemas.decomposition import Status
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
