"""`VLMBackend`: the base of every backend that asks a vision-language model.

Subclasses implement `generate` (blocking, e.g. an in-process model) or `agenerate` (async, e.g.
an API client) and name their `model`; frames, prompt, parsing and the repair turn come from
`atomvla.annotate.vlm`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import numpy as np
from pydantic import Field

from atomvla.annotate.backends.base import AsyncBackend, BackendConfig, BackendError
from atomvla.annotate.backends.heuristic import HeuristicBackend, HeuristicConfig
from atomvla.annotate.client.pricing import Usage
from atomvla.annotate.vlm import (
    PROMPT_VERSION,
    AnswerFailed,
    Message,
    adecompose,
    build_messages,
    encode_jpeg,
    sample_indices,
)
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.schemas import DEFAULT_MIN_FRAMES, Decomposition, EpisodeMeta, Provenance, Status, Subtask


log = logging.getLogger(__name__)


def kinematic_events(episode: Episode, pick_end: str = "moved") -> list[int]:
    """Boundary frames the heuristic finds from the episode's state/action; [] when it cannot."""
    if not HeuristicBackend.can_handle(episode.meta):
        return []
    try:
        subtasks, _ = HeuristicBackend(HeuristicConfig(pick_end=pick_end)).segment(episode)
    except (BackendError, SourceError, ValueError) as exc:  # events are optional: uniform frames remain
        log.debug("%s: no kinematic events (%s)", episode.meta.episode_id, exc)
        return []
    return [s.start_frame for s in subtasks[1:]]


class VLMConfig(BackendConfig):
    """Settings every vision-language backend shares: which frames it sees and how."""

    frames: int = Field(14, ge=2, description="frames spread uniformly over the episode")
    kinematic_events: bool = Field(True, description="also send the frames where the heuristic finds events")
    max_event_frames: int = Field(6, ge=0, description="at most this many event frames")
    camera: str | None = Field(None, description="camera to show (default: the episode's first)")
    max_side: int = Field(512, ge=32, description="frames are downscaled to this longer side")
    min_subtask_frames: int = Field(DEFAULT_MIN_FRAMES, ge=1, description="shortest subtask accepted")
    pick_end: Literal["closed", "moved", "lifted"] = Field(
        "moved", description="the convention the prompt states: a pick ends when the fingers close, when the object "
        "first moves, or after the lift (as the heuristic's setting of that name)",
    )


class VLMBackend(AsyncBackend):
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
        events = kinematic_events(episode, cfg.pick_end) if cfg.kinematic_events else []
        indices = sample_indices(episode.meta.n_frames, cfg.frames, events, cfg.max_event_frames)
        return indices, self.camera(episode).get_many(indices)

    def camera(self, episode: Episode):
        """The frames of the configured camera; BackendError when the episode has none (or not that one)."""
        try:
            return episode.frames(self.config.camera)  # type: ignore[attr-defined]
        except (ValueError, KeyError) as exc:
            raise BackendError(self.name, episode.meta, str(exc).strip("'\"")) from None

    def request(self, episode: Episode) -> tuple[list[Message], np.ndarray]:
        """The first request for an episode (blocking: decodes frames) and the frames it shows."""
        cfg: VLMConfig = self.config  # type: ignore[assignment]
        indices, frames = self.sample(episode)
        images = [encode_jpeg(f, cfg.max_side) for f in frames]
        return build_messages(episode.meta, indices, images, cfg.min_subtask_frames, self.detail, cfg.pick_end), frames

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
            tokens_in=usage.answer_input_tokens,
            tokens_out=usage.answer_output_tokens,
            cost_usd=usage.answer_cost_usd,
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

