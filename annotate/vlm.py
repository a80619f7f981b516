"""The path every vision-language backend shares: frames, a versioned prompt, strict parsing, one repair.

A backend supplies only `generate(messages) -> (text, Usage)` (an API call, a local model); this
module samples the frames (uniform plus the kinematic events the heuristic finds), writes the
prompt as OpenAI-style chat messages (`Frame 37:` text before each image), parses the answer
against the contract in `schemas`, and on a bad answer sends one repair request that quotes what
was wrong. A second bad answer raises `AnswerFailed` with the reason and the tokens spent.
The backend base class that runs this path is `atomvla.annotate.backends.vlm_backend.VLMBackend`;
this module sits below the backends and imports none of them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from atomvla.annotate.client.cache import Keyed
from atomvla.annotate.client.pricing import Usage
from atomvla.curate.episode import Episode
from atomvla.schemas import (
    MAX_SUBTASKS,
    MIN_SUBTASKS,
    SKILLS,
    EpisodeMeta,
    Subtask,
    check_subtasks,
    decomposition_json_schema,
)

log = logging.getLogger(__name__)

# Bump when the wording or the frame layout changes: it is part of every cache key and provenance.
PROMPT_VERSION = "atomic-v1"
SCHEMA_NAME = "decomposition"

Message = dict  # OpenAI chat message: {"role": ..., "content": str | list of parts}

SYSTEM = (
    "You segment robot demonstration videos into atomic subtasks. An atomic subtask is one "
    "short manipulation step with a single skill verb from this vocabulary: {skills}. "
    "Split the episode into {lo}-{hi} consecutive subtasks that together cover every frame: the "
    "first starts at frame 0, each one ends (exclusive) where the next starts, the last ends at "
    "the episode's frame count. A subtask starts at the frame where its motion begins; {pick_end}. "
    "Each subtask lasts at least {min_frames} frames. Write each instruction as a short "
    'imperative that names the object, e.g. "pick up the black bowl". Frames you do not see lie '
    "between the numbered frames you are shown; choose boundary frames anywhere in the episode."
)


class AnswerError(Exception):
    """A model answer that is not valid JSON, does not match the schema, or breaks the contract."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class AnswerFailed(Exception):
    """The answer was still invalid after the repair request; `usage` is what both calls cost."""

    def __init__(self, reason: str, usage: Usage):
        self.reason = reason
        self.usage = usage
        super().__init__(reason)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subtasks: list[Subtask]


# -- frames ----------------------------------------------------------------------------------


def sample_indices(n_frames: int, n_uniform: int, events: Sequence[int] = (), max_events: int = 6) -> list[int]:
    """`n_uniform` frames spread over the episode (first and last included) plus up to `max_events`
    event frames, sorted and distinct."""
    uniform = np.linspace(0, n_frames - 1, min(n_uniform, n_frames)).round().astype(int).tolist()
    extra = [int(e) for e in events if 0 <= e < n_frames][:max_events]
    return sorted(set(uniform) | set(extra))


def dense_indices(n_frames: int, centre: int, half_window: int, k: int) -> list[int]:
    """Up to `k` distinct frames spread over [centre - half_window, centre + half_window] within the episode."""
    lo, hi = max(0, centre - half_window), min(n_frames - 1, centre + half_window)
    return sorted(set(np.linspace(lo, hi, min(k, hi - lo + 1)).round().astype(int).tolist()))


def encode_jpeg(frame: np.ndarray, max_side: int, quality: int = 85) -> Keyed:
    """(H, W, 3) uint8 -> `data:image/jpeg;base64,...`, downscaled so the longer side is <= max_side;
    the response cache keys it by the frame's pixels and these settings, not by the JPEG bytes."""
    pixels = np.ascontiguousarray(frame)
    digest = hashlib.sha256(f"{pixels.shape} {pixels.dtype} {max_side} {quality}\n".encode())
    digest.update(memoryview(pixels).cast("B"))
    img = Image.fromarray(frame)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Keyed("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), "jpeg-of-pixels:" + digest.hexdigest())


# -- prompt ----------------------------------------------------------------------------------


# Where a pick ends is a team's convention (the heuristic's `pick_end` setting names the same three).
PICK_END = {
    "closed": "a pick ends, and the next subtask starts, when the fingers have closed on the object",
    "moved": "a pick ends, and the next subtask starts, when the grasped object first moves",
    "lifted": "a pick ends, and the next subtask starts, once the object is lifted and the carry begins",
}


def system_prompt(min_frames: int, pick_end: str = "moved") -> str:
    return SYSTEM.format(
        skills=", ".join(SKILLS), lo=MIN_SUBTASKS, hi=MAX_SUBTASKS, min_frames=min_frames, pick_end=PICK_END[pick_end]
    )


def intro_text(meta: EpisodeMeta, n_shown: int) -> str:
    return (
        f"Task instruction: {meta.task}\n"
        f"The episode has {meta.n_frames} frames (0 to {meta.n_frames - 1}) at {meta.fps:g} fps. "
        f"Here are {n_shown} of them, each after its frame number."
    )


def frame_label(index: int) -> str:
    return f"Frame {index}:"


def build_messages(
    meta: EpisodeMeta,
    indices: Sequence[int],
    images: Sequence[str],
    min_frames: int,
    detail: str = "low",
    pick_end: str = "moved",
) -> list[Message]:
    """The decomposition request: system rules, then the task, then `Frame i:` + image per frame.

    `images` are data URLs (see `encode_jpeg`), one per index, in order.
    """
    if len(indices) != len(images):
        raise ValueError(f"{len(indices)} frame indices but {len(images)} images")
    parts: list[dict] = [{"type": "text", "text": intro_text(meta, len(indices))}]
    for i, url in zip(indices, images):
        parts.append({"type": "text", "text": frame_label(i)})
        parts.append({"type": "image_url", "image_url": {"url": url, "detail": detail}})
    parts.append({"type": "text", "text": f"Answer with {MIN_SUBTASKS}-{MAX_SUBTASKS} subtasks as JSON."})
    return [{"role": "system", "content": system_prompt(min_frames, pick_end)}, {"role": "user", "content": parts}]


def response_format() -> dict:
    """Structured Outputs: the strict JSON Schema of `schemas.decomposition_json_schema` (the frame
    count is in the prompt, so one schema serves every episode and every request can be batched)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": decomposition_json_schema()},
    }


def repair_message(error: AnswerError) -> Message:
    """The one follow-up a bad answer gets: what was wrong, quoted from the validator."""
    problems = "\n".join(f"- {p}" for p in error.problems)
    return {
        "role": "user",
        "content": f"Your answer is invalid:\n{problems}\nAnswer again with corrected JSON that follows every rule.",
    }


def flatten(messages: Sequence[Message], image_placeholder: str = "<image>") -> list[tuple[str, str]]:
    """(role, text) per message with each image replaced by `image_placeholder`, for in-process
    models whose chat takes plain text; the images come in the order they appear."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append((m["role"], content))
            continue
        pieces = [p["text"] if p["type"] == "text" else image_placeholder for p in content]
        out.append((m["role"], "\n".join(pieces)))
    return out


# -- answers ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_answer(text: str, n_frames: int, min_frames: int) -> list[Subtask]:
    """The subtasks of a model answer, or AnswerError listing every problem (JSON, schema, contract)."""
    fenced = _FENCE.match(text or "")
    body = fenced.group(1) if fenced else (text or "")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnswerError([f"the answer is not JSON ({exc.msg} at char {exc.pos}): {body[:80]!r}"]) from None
    try:
        subtasks = _Answer.model_validate(data).subtasks
    except ValidationError as exc:
        raise AnswerError(
            [f"{'.'.join(str(x) for x in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()][:8]
        ) from None
    problems = check_subtasks(subtasks, n_frames, min_frames)
    if problems:
        raise AnswerError(problems)
    return subtasks


def assistant_message(text: str) -> Message:
    return {"role": "assistant", "content": text}


# -- generate -> parse -> repair once -> fail ------------------------------------------------

AGenerate = Callable[[list[Message]], Awaitable[tuple[str, Usage]]]


async def adecompose(
    agenerate: AGenerate, messages: list[Message], n_frames: int, min_frames: int
) -> tuple[list[Subtask], Usage]:
    """Ask, validate, repair once: the subtasks and the usage of every call, or AnswerFailed."""
    text, usage = await agenerate(messages)
    try:
        return parse_answer(text, n_frames, min_frames), usage
    except AnswerError as first:
        log.debug("invalid answer (%s); asking once more", first)
        text, more = await agenerate([*messages, assistant_message(text), repair_message(first)])
        usage += more
    try:
        return parse_answer(text, n_frames, min_frames), usage
    except AnswerError as second:
        raise AnswerFailed(f"invalid answer after one repair request: {second}", usage) from None
