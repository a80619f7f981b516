"""`openai`: GPT-4o, or any model behind an OpenAI-compatible server (vLLM, SGLang) via `base_url`.

The frames, prompt, parsing and repair are the shared VLM path (`atomvla.annotate.vlm`); this
module adds the request: Structured Outputs with the strict schema, the response cache, the
rate limiter fed by the server's headers, retries with backoff, token and dollar accounting, and
the optional coarse-to-fine pass that re-asks around each boundary with dense frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextvars import ContextVar
from typing import Literal

import httpx2
import numpy as np
from pydantic import Field

from atomvla.annotate.backends.base import SetupError, register
from atomvla.annotate.backends.vlm_backend import VLMBackend, VLMConfig, kinematic_events
from atomvla.annotate.client.cache import ResponseCache, encode_body, request_key
from atomvla.annotate.client.limiter import RateLimiter
from atomvla.annotate.client.pricing import Usage, cost_usd, input_tokens, spent, text_tokens
from atomvla.annotate.client.retry import ResponseError, RetryPolicy, with_retries
from atomvla.annotate.vlm import (
    PROMPT_VERSION,
    Message,
    build_messages,
    dense_indices,
    encode_jpeg,
    frame_label,
    response_format,
    sample_indices,
)
from atomvla.curate.episode import Episode
from atomvla.schemas import Decomposition, Status, Subtask, check_subtasks

log = logging.getLogger(__name__)

# The cache keys of the answers one episode's decomposition used (set per `apropose`; the tasks it
# gathers share the list).
_ASKED: ContextVar[list[str] | None] = ContextVar("asked", default=None)

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
JSON_HEADERS = {"Content-Type": "application/json"}
REFINE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "boundary",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"start_frame": {"type": "integer", "description": "frame where the second subtask starts"}},
            "required": ["start_frame"],
            "additionalProperties": False,
        },
    },
}


# Dry-run and --max-cost estimates assume a typical answer: 4 subtasks with instructions of
# about 40 characters.
TYPICAL_SUBTASKS = 4
TYPICAL_ANSWER_TOKENS = text_tokens(
    json.dumps({"subtasks": [{"start_frame": 100, "end_frame": 100, "instruction": "x" * 40, "skill": "place"}] * TYPICAL_SUBTASKS})
)
# A boundary in the estimate: instructions of about 40 characters.
TYPICAL_PAIR = (
    Subtask(start_frame=0, end_frame=1, instruction="pick up the black bowl from the table", skill="pick"),
    Subtask(start_frame=1, end_frame=2, instruction="place the black bowl on the plate", skill="place"),
)


def refine_text(task: str, before: Subtask, after: Subtask) -> str:
    return (
        f"Task instruction: {task}\n"
        f'Subtask "{before.instruction}" ({before.skill}) is followed by subtask '
        f'"{after.instruction}" ({after.skill}). The frames below surround the change. '
        f"Answer the frame number, one of those shown, where the second subtask starts."
    )


class MissingKeyError(SetupError):
    """No API key in the environment (the message names the variable, never a value)."""


class OpenAIConfig(VLMConfig):
    model: str = Field("gpt-4o", description="model name as the server knows it")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://host:8000/v1 (vLLM)")
    detail: Literal["low", "high", "auto"] = Field("low", description="image detail: low costs 85 tokens a frame")
    max_output_tokens: int = Field(600, ge=16)
    temperature: float = Field(0.0, ge=0)
    coarse_to_fine: bool = Field(False, description="re-ask around each boundary with dense frames")
    dense_frames: int = Field(8, ge=2, description="coarse-to-fine: frames per boundary")
    dense_window_s: float = Field(0.75, gt=0, description="coarse-to-fine: seconds either side of a boundary")


@register
class OpenAIBackend(VLMBackend):
    """Chat Completions with images; the key comes only from the environment."""

    name = "openai"
    Config = OpenAIConfig

    def __init__(
        self,
        config: OpenAIConfig | None = None,
        *,
        api_key_env: str = DEFAULT_KEY_ENV,
        cache: ResponseCache | None = None,
        retry: RetryPolicy = RetryPolicy(),
    ):
        super().__init__(config)
        self.api_key_env = api_key_env
        self.cache = cache
        self.retry = retry
        self.limiter = RateLimiter()
        # An async client is bound to the event loop it first ran on; a sync caller's asyncio.run
        # makes a new loop each time. The loop is held, so its identity cannot be reused.
        self._client: object | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @property
    def model(self) -> str:
        return self.config.model  # type: ignore[attr-defined]

    @property
    def detail(self) -> str:
        return self.config.detail  # type: ignore[attr-defined]

    def prepare(self) -> None:
        self.check_key()

    def check_key(self) -> None:
        """Raise MissingKeyError unless the key variable is set (call before any work)."""
        if not os.environ.get(self.api_key_env):
            raise MissingKeyError(
                f"no API key: set {self.api_key_env}"
                + (", or name the variable with --api-key-env" if self.api_key_env == DEFAULT_KEY_ENV else "")
            )

    def client(self):
        """The async client of the running event loop (SDK retries off: `with_retries` owns them)."""
        import openai

        loop = asyncio.get_running_loop()
        if self._client_loop is not loop:
            self.check_key()
            cfg: OpenAIConfig = self.config  # type: ignore[assignment]
            self._client = openai.AsyncOpenAI(
                api_key=os.environ[self.api_key_env], base_url=cfg.base_url, max_retries=0, timeout=self.retry.timeout_s
            )
            self._client_loop = loop
        return self._client

    def body(self, messages: list[Message], schema: dict) -> dict:
        """The Chat Completions request body (also one line of a Batch API input file)."""
        cfg: OpenAIConfig = self.config  # type: ignore[assignment]
        return {
            "model": cfg.model,
            "messages": messages,
            "response_format": schema,
            "temperature": cfg.temperature,
            "max_completion_tokens": cfg.max_output_tokens,
        }

    def cache_key(self, body: dict) -> str:
        return request_key(PROMPT_VERSION, body)

    async def complete(self, messages: list[Message], schema: dict) -> tuple[str, Usage]:
        """The answer text to one request: from the cache when this exact request was answered."""
        payload = self.body(messages, schema)
        key = self.cache_key(payload)
        if (asked := _ASKED.get()) is not None:
            asked.append(key)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit["text"], Usage(
                cached=1,
                cached_cost_usd=hit.get("cost_usd", 0.0),
                cached_input_tokens=hit["input_tokens"],
                cached_output_tokens=hit["output_tokens"],
                model=self.model,
            )
        client = self.client()
        estimate = input_tokens(messages, schema)
        # The generic `post` sends the body encoded once: the typed `chat.completions.create` would
        # walk every content part to transform it, then encode it again (10-50 ms of CPU per
        # request with a dozen images).
        body = encode_body(payload)
        raw = await with_retries(
            lambda: client.post(
                "/chat/completions", content=body, options={"headers": JSON_HEADERS}, cast_to=httpx2.Response
            ),
            self.retry,
            self.limiter,
            estimate,
        )
        self.limiter.update(raw.headers)
        text, tokens_in, tokens_out = _answer(raw, estimate)
        cost = cost_usd(self.model, tokens_in, tokens_out)
        if self.cache is not None:
            self.cache.put(key, {"text": text, "input_tokens": tokens_in, "output_tokens": tokens_out, "model": self.model,
                                 "cost_usd": cost})
        return text, spent(Usage(tokens_in, tokens_out, cost, requests=1, model=self.model))

    async def agenerate(self, messages: list[Message], frames: np.ndarray) -> tuple[str, Usage]:
        return await self.complete(messages, response_format())

    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        """As every VLM backend; a `failed` decomposition's answers leave the response cache, so that
        asking again (`--again`) asks the model instead of replaying the same invalid answers."""
        asked: list[str] = []
        token = _ASKED.set(asked)
        try:
            dec, usage = await super().apropose(episode)
        finally:
            _ASKED.reset(token)
        if dec.status is Status.failed and self.cache is not None:
            for key in asked:
                self.cache.drop(key)
        return dec, usage

    async def refine(self, episode: Episode, subtasks: list[Subtask]) -> tuple[list[Subtask], Usage]:
        """Coarse-to-fine: each boundary re-asked with dense frames around it, all at once.

        A boundary moves only within its neighbours' limits; an invalid refined answer keeps the
        coarse boundary (the coarse decomposition was already valid).
        """
        cfg: OpenAIConfig = self.config  # type: ignore[assignment]
        if not cfg.coarse_to_fine:
            return subtasks, Usage()
        meta = episode.meta
        half = max(1, round(cfg.dense_window_s * meta.fps))
        m = cfg.min_subtask_frames
        asks = []
        for i in range(1, len(subtasks)):
            lo, hi = subtasks[i - 1].start_frame + m, subtasks[i].end_frame - m
            centre = subtasks[i].start_frame
            window = [f for f in dense_indices(meta.n_frames, centre, half, cfg.dense_frames) if lo <= f <= hi]
            asks.append(self._refine_one(episode, subtasks[i - 1], subtasks[i], window or [centre]))
        results = await asyncio.gather(*asks)
        starts = [0] + [frame for frame, _ in results]
        usage = sum((u for _, u in results), Usage())
        ends = starts[1:] + [meta.n_frames]
        refined = [s.model_copy(update={"start_frame": a, "end_frame": b}) for s, a, b in zip(subtasks, starts, ends)]
        if check_subtasks(refined, meta.n_frames, m):
            return subtasks, usage
        return refined, usage

    async def _refine_one(self, episode: Episode, before: Subtask, after: Subtask, window: list[int]) -> tuple[int, Usage]:
        cfg: OpenAIConfig = self.config  # type: ignore[assignment]
        frames = await asyncio.to_thread(self.camera(episode).get_many, window)
        parts: list[dict] = [{"type": "text", "text": refine_text(episode.meta.task, before, after)}]
        for i, f in zip(window, frames):
            parts.append({"type": "text", "text": frame_label(i)})
            parts.append({"type": "image_url", "image_url": {"url": encode_jpeg(f, cfg.max_side), "detail": cfg.detail}})
        text, usage = await self.complete([{"role": "user", "content": parts}], REFINE_SCHEMA)
        try:
            frame = int(json.loads(text)["start_frame"])
        except (ValueError, KeyError, TypeError):
            return after.start_frame, usage
        return (frame if window[0] <= frame <= window[-1] else after.start_frame), usage

    def estimate_tokens(self, episode: Episode) -> tuple[int, int]:
        """(input, output) tokens one episode is expected to cost, without decoding a frame: the
        first request counted as the API bills it, the answer taken as a typical 4-subtask answer,
        coarse-to-fine as one dense request per expected boundary."""
        cfg: OpenAIConfig = self.config  # type: ignore[assignment]
        meta = episode.meta
        events = kinematic_events(episode, cfg.pick_end) if cfg.kinematic_events else []
        indices = sample_indices(meta.n_frames, cfg.frames, events, cfg.max_event_frames)
        size = _frame_size(meta, cfg)
        messages = build_messages(meta, indices, ["data:,"] * len(indices), cfg.min_subtask_frames, cfg.detail, cfg.pick_end)
        tokens_in = input_tokens(messages, response_format(), size)
        tokens_out = TYPICAL_ANSWER_TOKENS
        if cfg.coarse_to_fine:
            dense = [{"type": "image_url", "image_url": {"url": "data:,", "detail": cfg.detail}}] * cfg.dense_frames
            labels = [{"type": "text", "text": frame_label(meta.n_frames)}] * cfg.dense_frames
            one = input_tokens([{"role": "user", "content": [{"type": "text", "text": refine_text(meta.task, *TYPICAL_PAIR)}, *labels, *dense]}], REFINE_SCHEMA, size)
            tokens_in += (TYPICAL_SUBTASKS - 1) * one
            tokens_out += (TYPICAL_SUBTASKS - 1) * text_tokens('{"start_frame": 100}')
        return tokens_in, tokens_out


def _answer(raw: httpx2.Response, estimate: int) -> tuple[str, int, int]:
    """(text, input tokens, output tokens) of a Chat Completions response; the estimate stands in
    for servers that report no usage."""
    try:
        data = raw.json()
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ResponseError(f"the server's answer is not a chat completion ({type(exc).__name__}): {raw.text[:80]!r}") from None
    text = message.get("content")
    if text is None:
        text = message.get("refusal") or ""
    usage = data.get("usage") or {}
    return text, usage.get("prompt_tokens", estimate), usage.get("completion_tokens", 0)


def _frame_size(meta, cfg: OpenAIConfig) -> tuple[int, int]:
    """(width, height) of the frames as sent (after downscaling), 512x512 when the store does not know."""
    cams = {c.key: c for c in meta.cameras}
    cam = cams.get(cfg.camera) if cfg.camera else next(iter(cams.values()), None)
    if cam is None or not cam.width or not cam.height:
        return 512, 512
    scale = min(1.0, cfg.max_side / max(cam.width, cam.height))
    return round(cam.width * scale), round(cam.height * scale)
