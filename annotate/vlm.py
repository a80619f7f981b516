"""The path every vision-language backend shares: frames, a versioned prompt, strict parsing, one repair.

A backend supplies only `generate(messages) -> (text, Usage)` (an API call, a local model); this
module samples the frames (uniform plus the kinematic events the heuristic finds), writes the
prompt as OpenAI-style chat messages (`Frame 37:` text before each image), parses the answer
against the contract in `schemas`, and on a bad answer sends one repair request that quotes what
was wrong. A second bad answer raises `AnswerFailed` with the reason and the tokens spent.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import json
import logging
import re
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atomvla.annotate.backends.base import Backend, BackendConfig, BackendError
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.schemas import (
    DEFAULT_MIN_FRAMES,
    MAX_SUBTASKS,
    MIN_SUBTASKS,
    SKILLS,
    Decomposition,
    EpisodeMeta,
    Provenance,
    Status,
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
    "the episode's frame count. A subtask starts at the frame where its motion begins (a pick "
    "ends when the gripper closes on the object; the place starts when the object first moves). "
    "Each subtask lasts at least {min_frames} frames. Write each instruction as a short "
    'imperative that names the object, e.g. "pick up the black bowl". Frames you do not see lie '
    "between the numbered frames you are shown; choose boundary frames anywhere in the episode."
)


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars spent on one episode; `requests` counts calls made, `cached` answers reused."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    cached: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
            self.requests + other.requests,
            self.cached + other.cached,
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


def kinematic_events(episode: Episode) -> list[int]:
    """Boundary frames the heuristic finds from the episode's state/action; [] when it cannot."""
    from atomvla.annotate.backends.heuristic import HeuristicBackend

    if not HeuristicBackend.can_handle(episode.meta):
        return []
    try:
        subtasks, _ = HeuristicBackend().segment(episode)
    except (BackendError, SourceError, ValueError) as exc:  # events are optional: uniform frames remain
        log.debug("%s: no kinematic events (%s)", episode.meta.episode_id, exc)
        return []
    return [s.start_frame for s in subtasks[1:]]


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


def encode_jpeg(frame: np.ndarray, max_side: int, quality: int = 85) -> str:
    """(H, W, 3) uint8 -> `data:image/jpeg;base64,...`, downscaled so the longer side is <= max_side."""
    img = Image.fromarray(frame)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


# -- prompt ----------------------------------------------------------------------------------


def system_prompt(min_frames: int) -> str:
    return SYSTEM.format(skills=", ".join(SKILLS), lo=MIN_SUBTASKS, hi=MAX_SUBTASKS, min_frames=min_frames)


def intro_text(meta: EpisodeMeta, n_shown: int) -> str:
    return (
        f"Task instruction: {meta.task}\n"
        f"The episode has {meta.n_frames} frames (0 to {meta.n_frames - 1}) at {meta.fps:g} fps. "
        f"Here are {n_shown} of them, each after its frame number."
    )


def frame_label(index: int) -> str:
    return f"Frame {index}:"


def build_messages(
    meta: EpisodeMeta, indices: Sequence[int], images: Sequence[str], min_frames: int, detail: str = "low"
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
    return [{"role": "system", "content": system_prompt(min_frames)}, {"role": "user", "content": parts}]


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

Generate = Callable[[list[Message]], tuple[str, Usage]]
AGenerate = Callable[[list[Message]], Awaitable[tuple[str, Usage]]]


@dataclass
class _Dialogue:
    """The exchange as a generator, so the sync and async drivers share one set of rules."""

    messages: list[Message]
    n_frames: int
    min_frames: int
    usage: Usage = field(default_factory=Usage)

    def steps(self) -> Generator[list[Message], tuple[str, Usage], list[Subtask]]:
        text, used = yield self.messages
        self.usage += used
        try:
            return parse_answer(text, self.n_frames, self.min_frames)
        except AnswerError as first:
            log.debug("invalid answer (%s); asking once more", first)
            text, used = yield [*self.messages, assistant_message(text), repair_message(first)]
            self.usage += used
            try:
                return parse_answer(text, self.n_frames, self.min_frames)
            except AnswerError as second:
                raise AnswerFailed(f"invalid answer after one repair request: {second}", self.usage) from None


def decompose(generate: Generate, messages: list[Message], n_frames: int, min_frames: int) -> tuple[list[Subtask], Usage]:
    """Ask, validate, repair once; the subtasks and the usage of every call, or AnswerFailed."""
    dialogue = _Dialogue(messages, n_frames, min_frames)
    steps = dialogue.steps()
    request = next(steps)
    while True:
        try:
            request = steps.send(generate(request))
        except StopIteration as done:
            return done.value, dialogue.usage


async def adecompose(
    agenerate: AGenerate, messages: list[Message], n_frames: int, min_frames: int
) -> tuple[list[Subtask], Usage]:
    """`decompose` with an async `generate` (API clients under the job runner)."""
    dialogue = _Dialogue(messages, n_frames, min_frames)
    steps = dialogue.steps()
    request = next(steps)
    while True:
        answer = await agenerate(request)
        try:
            request = steps.send(answer)
        except StopIteration as done:
            return done.value, dialogue.usage


# -- the shared backend ----------------------------------------------------------------------


class VLMConfig(BackendConfig):
    """Settings every vision-language backend shares: which frames it sees and how."""

    frames: int = Field(14, ge=2, description="frames spread uniformly over the episode")
    kinematic_events: bool = Field(True, description="also send the frames where the heuristic finds events")
    max_event_frames: int = Field(6, ge=0, description="at most this many event frames")
    camera: str | None = Field(None, description="camera to show (default: the episode's first)")
    max_side: int = Field(512, ge=32, description="frames are downscaled to this longer side")
    min_subtask_frames: int = Field(DEFAULT_MIN_FRAMES, ge=1, description="shortest subtask accepted")


class VLMBackend(Backend):
    """A backend that asks a vision-language model. Subclasses implement `generate` (blocking, e.g. an
    in-process model) or `agenerate` (async, e.g. an API client), and name their `model`."""

    Config = VLMConfig

    @property
    def model(self) -> str:
        raise NotImplementedError

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        return bool(meta.cameras)

    def generate(self, messages: list[Message], frames: np.ndarray) -> tuple[str, Usage]:
        """The model's answer to `messages`, whose images are `frames` (k, H, W, 3) in order."""
        raise NotImplementedError(f"{type(self).__name__} implements neither generate nor agenerate")

    async def agenerate(self, messages: list[Message], frames: np.ndarray) -> tuple[str, Usage]:
        return await asyncio.to_thread(self.generate, messages, frames)

    def sample(self, episode: Episode) -> tuple[list[int], np.ndarray]:
        """The frame numbers shown to the model and the frames, (k, H, W, 3)."""
        cfg: VLMConfig = self.config  # type: ignore[assignment]
        events = kinematic_events(episode) if cfg.kinematic_events else []
        indices = sample_indices(episode.meta.n_frames, cfg.frames, events, cfg.max_event_frames)
        return indices, episode.frames(cfg.camera).get_many(indices)

    def request(self, episode: Episode) -> tuple[list[Message], np.ndarray]:
        """The first request for an episode (blocking: decodes frames) and the frames it shows."""
        cfg: VLMConfig = self.config  # type: ignore[assignment]
        indices, frames = self.sample(episode)
        images = [encode_jpeg(f, cfg.max_side) for f in frames]
        return build_messages(episode.meta, indices, images, cfg.min_subtask_frames, self.detail), frames

    @property
    def detail(self) -> str:
        return "low"

    async def refine(self, episode: Episode, subtasks: list[Subtask]) -> tuple[list[Subtask], Usage]:
        """A second pass over valid subtasks (coarse-to-fine); none by default."""
        return subtasks, Usage()

    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        """A `proposed` decomposition, or a `failed` one whose note says why, and what it cost.

        Frames that cannot be read raise SourceError (nothing was asked, nothing is stored).
        """
        cfg: VLMConfig = self.config  # type: ignore[assignment]
        meta = episode.meta
        start = time.perf_counter()
        messages, frames = await asyncio.to_thread(self.request, episode)

        async def ask(msgs: list[Message]) -> tuple[str, Usage]:
            return await self.agenerate(msgs, frames)

        status, subtasks, note = Status.proposed, (), None
        try:
            found, usage = await adecompose(ask, messages, meta.n_frames, cfg.min_subtask_frames)
            found, more = await self.refine(episode, found)
            usage += more
            subtasks = tuple(found)
        except AnswerFailed as exc:
            status, note, usage = Status.failed, exc.reason, exc.usage
        provenance = Provenance(
            backend=self.name,
            model=self.model,
            prompt_version=PROMPT_VERSION,
            settings_hash=self.settings_hash,
            tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens,
            cost_usd=usage.cost_usd,
            latency_s=time.perf_counter() - start,
        )
        dec = Decomposition(
            episode_id=meta.episode_id,
            n_frames=meta.n_frames,
            subtasks=subtasks,
            status=status,
            author=self.name,
            provenance=provenance,
            note=note,
            min_frames=cfg.min_subtask_frames,
        )
        return dec, usage

    def propose(self, episode: Episode) -> Decomposition:
        return asyncio.run(self.apropose(episode))[0]

    def segment(self, episode: Episode) -> tuple[list[Subtask], float | None]:
        dec = self.propose(episode)
        if dec.status is Status.failed:
            raise BackendError(self.name, episode.meta, dec.note or "no valid answer")
        return list(dec.subtasks), None
