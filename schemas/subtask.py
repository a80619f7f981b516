"""One atomic subtask: a frame range, a short imperative instruction and a skill verb."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Skill = Literal[
    "reach", "pick", "place", "push", "pull", "open", "close", "turn", "press", "insert", "other"
]
SKILLS: tuple[str, ...] = get_args(Skill)


class Subtask(BaseModel):
    """Frames `[start_frame, end_frame)` of an episode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_frame: int = Field(ge=0, description="first frame, inclusive")
    end_frame: int = Field(ge=0, description="last frame, exclusive")
    instruction: str = Field(min_length=1, description='short imperative, e.g. "pick up the bowl"')
    skill: Skill

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame
