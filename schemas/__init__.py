"""The data contracts: pure pydantic models and validation rules, no I/O."""

from atomvla.schemas.decomposition import (
    Decomposition,
    DecompositionError,
    Provenance,
    Status,
)
from atomvla.schemas.episode import CameraRef, EpisodeMeta
from atomvla.schemas.interchange import InterchangeRecord
from atomvla.schemas.model_output import decomposition_json_schema
from atomvla.schemas.subtask import SKILLS, Skill, Subtask
from atomvla.schemas.rules import DEFAULT_MIN_FRAMES, MAX_SUBTASKS, MIN_SUBTASKS, check_subtasks

__all__ = [
    "CameraRef",
    "Decomposition",
    "DecompositionError",
    "DEFAULT_MIN_FRAMES",
    "EpisodeMeta",
    "InterchangeRecord",
    "MAX_SUBTASKS",
    "MIN_SUBTASKS",
    "Provenance",
    "SKILLS",
    "Skill",
    "Status",
    "Subtask",
    "check_subtasks",
    "decomposition_json_schema",
]
