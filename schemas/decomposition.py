"""A decomposition record: validated subtasks plus provenance, status, author and revision."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from atomvla.errors import UserError
from atomvla.schemas.rules import DEFAULT_MIN_FRAMES, check_subtasks
from atomvla.schemas.subtask import Subtask


class Status(str, Enum):
    proposed = "proposed"
    accepted = "accepted"
    rejected = "rejected"
    needs_review = "needs_review"
    failed = "failed"


class DecompositionError(UserError):
    """A decomposition breaks the contract; `problems` lists each broken rule.

    Not a ValueError on purpose: pydantic would wrap a ValueError into a generic ValidationError,
    and callers (the review UI, a model backend's repair retry) want the rule-by-rule list.
    """

    def __init__(self, episode_id: str, problems: list[str]):
        self.episode_id = episode_id
        self.problems = problems
        super().__init__(f"episode {episode_id}: " + "; ".join(problems))


class Provenance(BaseModel):
    """Where a decomposition came from and what it cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str
    model: str | None = None
    prompt_version: str | None = None
    settings_hash: str | None = Field(None, description="hash of the backend settings, for skip/resume")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    confidence: float | None = None
    profile: str | None = Field(None, description="the named profile (fitted settings/weights) that made it")
    learned_from: int | None = Field(None, description="how many accepted episodes that profile was fitted on")


class Decomposition(BaseModel):
    """The subtasks of one episode at one revision.

    `failed` records carry no subtasks (the error goes in `note`); every other status must satisfy
    the contract rules, checked here and nowhere else.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    episode_id: str
    n_frames: int = Field(gt=0)
    subtasks: tuple[Subtask, ...] = ()
    status: Status = Status.proposed
    author: str
    revision: int = Field(0, ge=0, description="0 until stored; the store numbers revisions 1, 2, ...")
    provenance: Provenance | None = None
    note: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    min_frames: int = Field(DEFAULT_MIN_FRAMES, ge=1, description="shortest subtask allowed when validated")

    @model_validator(mode="after")
    def _check_contract(self) -> Decomposition:
        if self.status is Status.failed:
            return self
        problems = check_subtasks(self.subtasks, self.n_frames, self.min_frames)
        if problems:
            raise DecompositionError(self.episode_id, problems)
        return self

    @property
    def boundaries(self) -> list[int]:
        """The start frames of subtasks 2..k."""
        return [s.start_frame for s in self.subtasks[1:]]
