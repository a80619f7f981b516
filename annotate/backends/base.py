"""The backend interface (episode in, validated decomposition out) and the one registry."""

from __future__ import annotations

import asyncio
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from atomvla.errors import UserError
from atomvla.registry import Registry
from atomvla.annotate.client.pricing import Usage
from atomvla.curate.episode import Episode
from atomvla.schemas import Decomposition, EpisodeMeta, Provenance, Status, Subtask

BACKENDS: Registry[type[Backend]] = Registry(
    "backend",
    plugins=[f"atomvla.annotate.backends.{m}" for m in ("heuristic", "openai_backend", "uvd", "hybrid", "internvideo", "learned")],
)


class BackendConfig(BaseModel):
    """Settings of one backend; frozen, and hashed into each proposal's provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SetupError(UserError, RuntimeError):
    """What every episode of a run needs cannot be had (a key, model weights): said once, up front."""


class BackendError(UserError):
    """A backend cannot decompose this episode; the message names the backends that can."""

    def __init__(self, backend: str, meta: EpisodeMeta, problem: str):
        self.episode_id = meta.episode_id
        others = [name for name, cls in BACKENDS.items() if name != backend and cls.can_handle(meta)]
        alternative = (
            f"backends that can handle it: {', '.join(others)}"
            if others
            else "no other registered backend can handle it"
        )
        super().__init__(f"episode {meta.episode_id}: {problem}; the {backend} backend cannot handle it ({alternative})")


def register(cls: type[Backend]) -> type[Backend]:
    return BACKENDS.register(cls)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as `name`; an unknown name is a UserError naming the known ones."""
    return BACKENDS[name]


class Backend(ABC):
    """Turns one episode into subtasks. Subclasses set `name` and `Config` and are `@register`ed."""

    name: ClassVar[str]
    Config: ClassVar[type[BackendConfig]]

    def __init__(self, config: BackendConfig | None = None):
        self.config = config if config is not None else self.Config()

    def prepare(self) -> None:
        """Make sure what every episode needs is there (an API key, loaded weights) before any work:
        raises SetupError with one line. Nothing to do by default."""

    def check_episodes(self, metas: Sequence[EpisodeMeta]) -> None:
        """Refuse a run whose episodes this setup cannot serve, from their metadata alone, before any
        work: raises SetupError with one line that says which and why. Nothing to check by default."""

    @property
    def settings_hash(self) -> str:
        """Same backend and settings -> same hash: a re-run skips episodes it already proposed."""
        payload = f"{self.name}:{self.config.model_dump_json()}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    @abstractmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        """Cheap check on metadata alone: does the episode have what this backend reads?"""

    @abstractmethod
    def segment(self, episode: Episode) -> tuple[list[Subtask], float | None]:
        """The subtasks and a confidence in [0, 1] (None if the backend has none).

        Raises BackendError when the episode lacks what the backend needs.
        """

    def propose(self, episode: Episode) -> Decomposition:
        """A `proposed` decomposition authored by the backend, validated against the contract."""
        start = time.perf_counter()
        subtasks, confidence = self.segment(episode)
        provenance = Provenance(
            backend=self.name,
            settings_hash=self.settings_hash,
            latency_s=time.perf_counter() - start,
            confidence=confidence,
        )
        return Decomposition(
            episode_id=episode.meta.episode_id,
            n_frames=episode.meta.n_frames,
            subtasks=tuple(subtasks),
            status=Status.proposed,
            author=self.name,
            provenance=provenance,
        )

    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        """What the runner awaits. A synchronous backend runs in a worker thread; what it spent is
        what its provenance records."""
        dec = await asyncio.to_thread(self.propose, episode)
        p = dec.provenance
        return dec, Usage(p.tokens_in, p.tokens_out, p.cost_usd) if p is not None else Usage()


class AsyncBackend(Backend):
    """A backend whose work is a coroutine (model calls, other backends): the runner awaits
    `apropose`; the synchronous interface runs it to completion."""

    @abstractmethod
    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        """The decomposition (`failed` with the reason in its note when no valid one came) and its cost."""

    def propose(self, episode: Episode) -> Decomposition:
        return asyncio.run(self.apropose(episode))[0]

    def segment(self, episode: Episode) -> tuple[list[Subtask], float | None]:
        dec = self.propose(episode)
        if dec.status is Status.failed:
            raise BackendError(self.name, episode.meta, dec.note or "no decomposition")
        return list(dec.subtasks), dec.provenance.confidence if dec.provenance else None
