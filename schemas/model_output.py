"""The strict JSON Schema a model must answer with (OpenAI Structured Outputs rules)."""

from __future__ import annotations

from typing import Any

from atomvla.schemas.rules import MAX_SUBTASKS, MIN_SUBTASKS
from atomvla.schemas.subtask import SKILLS


def decomposition_json_schema(n_frames: int | None = None) -> dict[str, Any]:
    """Schema of `{"subtasks": [{start_frame, end_frame, instruction, skill}, ...]}`.

    Strict mode wants every property required and `additionalProperties: false` at every level.
    Frame bounds are stated in the descriptions, since the contiguity rules cannot be expressed in
    JSON Schema; `check_subtasks` enforces them after parsing.
    """
    frames = f" (0 <= frame <= {n_frames})" if n_frames is not None else ""
    subtask = {
        "type": "object",
        "properties": {
            "start_frame": {"type": "integer", "description": "first frame, inclusive" + frames},
            "end_frame": {"type": "integer", "description": "last frame, exclusive" + frames},
            "instruction": {
                "type": "string",
                "description": 'short imperative naming the object, e.g. "pick up the black bowl"',
            },
            "skill": {"type": "string", "enum": list(SKILLS)},
        },
        "required": ["start_frame", "end_frame", "instruction", "skill"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "subtasks": {
                "type": "array",
                "items": subtask,
                "minItems": MIN_SUBTASKS,
                "maxItems": MAX_SUBTASKS,
                "description": "contiguous subtasks covering the whole episode, in order",
            }
        },
        "required": ["subtasks"],
        "additionalProperties": False,
    }
