"""`hybrid`: boundaries from one backend, language (instructions, skills) from another.

E.g. heuristic boundaries with GPT-4o's instructions, or UVD's visual cuts named by the heuristic.
Both backends run on the episode (concurrently when they are asynchronous); each boundary
segment takes the language of the language backend's subtask in the same place in the order when
both found as many subtasks, else of the one it overlaps most. Optionally each boundary moves to
the nearest kinematic event (a gripper open/close, the onset of a salient change of motion)
within `snap_s` seconds, so that a model's approximate cut lands on the frame the arm shows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field, ValidationError, model_validator

from atomvla.annotate.backends.base import AsyncBackend, Backend, BackendConfig, BackendError, get_backend, register
from atomvla.annotate.kinematics import ACTION, STATE, KinematicsError, extract
from atomvla.annotate.segmentation import change_scores, gripper_events, local_peaks, motion_onset
from atomvla.annotate.client.pricing import Usage
from atomvla.curate.episode import Episode
from atomvla.schemas import DEFAULT_MIN_FRAMES, Decomposition, EpisodeMeta, Provenance, Status, Subtask

log = logging.getLogger(__name__)

# Kinematic events: velocity means over this half-window; motion changes at least this salient
# (in the units of `segmentation.change_scores`) count, as starting from rest is favoured by ARRIVAL.
EVENT_WINDOW_S = 0.3
EVENT_MIN_SCORE = 0.5
ARRIVAL = 0.5
NAME = "hybrid"


class HybridConfig(BackendConfig):
    boundaries: str = Field("uvd", description="backend whose boundaries are kept")
    boundaries_settings: dict[str, Any] = Field(default_factory=dict, description="settings of that backend")
    language: str = Field("heuristic", description="backend whose instructions and skills are kept")
    language_settings: dict[str, Any] = Field(default_factory=dict, description="settings of that backend")
    snap_s: float = Field(0.5, ge=0, description="move boundaries to the nearest kinematic event this close (0: never)")

    @model_validator(mode="after")
    def _parts_exist(self) -> HybridConfig:
        """Both parts are registered backends other than hybrid, with settings they accept, kept as
        their configs read them (`frames=8` given on the command line as text is stored as 8, so
        the settings hash does not depend on how a setting was written)."""
        for role, name, settings in (
            ("boundaries", self.boundaries, self.boundaries_settings),
            ("language", self.language, self.language_settings),
        ):
            if name == NAME:
                raise ValueError(f"{role}: hybrid cannot take its {role} from itself")
            try:
                checked = get_backend(name).Config.model_validate(settings)
            except KeyError as exc:
                raise ValueError(f"{role}: {exc.args[0]}") from None
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"{role}_settings for {name}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
            settings.update(checked.model_dump(mode="json", include=set(settings)))
        return self


def event_frames(meta: EpisodeMeta, arrays: dict[str, np.ndarray]) -> list[int]:
    """Gripper events and onsets of salient motion changes, sorted; [] without usable kinematics."""
    try:
        kin = extract(meta, arrays)
    except KinematicsError as exc:
        log.debug("%s: no kinematic events (%s)", meta.episode_id, exc)
        return []
    w = max(2, round(EVENT_WINDOW_S * meta.fps))
    score = change_scores(kin.motion, kin.speed, w, ARRIVAL)
    speed = np.linalg.norm(kin.motion, axis=1)
    events = {motion_onset(speed, p, 2 * w) for p in local_peaks(score, w) if score[p] >= EVENT_MIN_SCORE}
    if kin.gripper is not None:
        events |= {f for f, _ in gripper_events(kin.gripper, w)}
    return sorted(events)


def snap(boundaries: list[int], events: list[int], window: int, n_frames: int, min_frames: int) -> list[int]:
    """Each boundary moved to the nearest event within `window` frames, unless that would break
    the order or leave a subtask shorter than `min_frames` (then it stays)."""
    out: list[int] = []
    for i, b in enumerate(boundaries):
        low = (out[-1] if out else 0) + min_frames
        high = (boundaries[i + 1] if i + 1 < len(boundaries) else n_frames) - min_frames
        near = [e for e in events if abs(e - b) <= window and low <= e <= high]
        out.append(min(near, key=lambda e: (abs(e - b), e)) if near else b)
    return out


def transfer_language(cut: tuple[Subtask, ...], named: tuple[Subtask, ...]) -> list[Subtask]:
    """`cut`'s frame ranges with `named`'s language: by position when the counts agree, else by
    largest overlap."""
    def overlap(a: Subtask, b: Subtask) -> int:
        return min(a.end_frame, b.end_frame) - max(a.start_frame, b.start_frame)

    sources = named if len(named) == len(cut) else [max(named, key=lambda n, c=c: overlap(c, n)) for c in cut]
    return [c.model_copy(update={"instruction": n.instruction, "skill": n.skill}) for c, n in zip(cut, sources)]


def _named(usage: Usage, part: Backend, dec: Decomposition) -> Usage:
    """A part's usage with its model named (the one its decomposition says it called, else the
    part's backend), so the ledger prices and groups it as that model, not as `hybrid`."""
    return usage.named(dec.provenance.model if dec.provenance and dec.provenance.model else part.name)


def _plain_part(name: str, settings: dict[str, Any]) -> Backend:
    cls = get_backend(name)
    return cls(cls.Config(**settings))


@register
class HybridBackend(AsyncBackend):
    """Boundaries from `boundaries`, language from `language`, optionally snapped to kinematics."""

    name = NAME
    Config = HybridConfig

    def __init__(self, config: HybridConfig | None = None, make_part: Callable[[str, dict[str, Any]], Backend] | None = None):
        """`make_part(name, settings)` builds each part; the job engine passes one that gives a paid
        API its key variable, response cache and retry policy, as for a top-level backend."""
        super().__init__(config)
        cfg: HybridConfig = self.config  # type: ignore[assignment]
        make = make_part or _plain_part
        self.cutter = make(cfg.boundaries, cfg.boundaries_settings)
        same = (cfg.language, cfg.language_settings) == (cfg.boundaries, cfg.boundaries_settings)
        self.namer = self.cutter if same else make(cfg.language, cfg.language_settings)

    @property
    def parts(self) -> tuple[Backend, ...]:
        return (self.cutter, self.namer)

    def prepare(self) -> None:
        for part in self.parts:
            part.prepare()

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        # Which backends it combines is a setting; this is what either kind of backend reads.
        return bool(meta.cameras) or bool({ACTION, STATE} & set(meta.feature_names))

    async def apropose(self, episode: Episode) -> tuple[Decomposition, Usage]:
        """The combined decomposition and what both backends cost; `failed` if either failed."""
        meta = episode.meta
        cfg: HybridConfig = self.config  # type: ignore[assignment]
        for part in {id(b): b for b in (self.cutter, self.namer)}.values():
            if not part.can_handle(meta):
                raise BackendError(self.name, meta, f"the {part.name} backend cannot handle it")
        start = time.perf_counter()
        if self.namer is self.cutter:
            cut, used_cut = await self.cutter.apropose(episode)
            named, usage = cut, _named(used_cut, self.cutter, cut)
        else:
            # Both run to the end before a failure is raised, so what the other part paid for is
            # spent within the episode (the runner ledgers it), not by a task left running.
            both = await asyncio.gather(self.cutter.apropose(episode), self.namer.apropose(episode), return_exceptions=True)
            if errors := [b for b in both if isinstance(b, BaseException)]:
                raise errors[0]
            (cut, used_cut), (named, used_named) = both
            usage = _named(used_cut, self.cutter, cut) + _named(used_named, self.namer, named)
        status, subtasks, note = Status.proposed, (), None
        failed = [(role, d) for role, d in (("boundaries", cut), ("language", named)) if d.status is Status.failed]
        if failed:
            role, dec = failed[0]
            status, note = Status.failed, f"{role} from {dec.author} failed: {dec.note}"
        else:
            subtasks = transfer_language(cut.subtasks, named.subtasks)
            if cfg.snap_s > 0:
                moved = snap(
                    [s.start_frame for s in subtasks[1:]], event_frames(meta, episode.arrays),
                    round(cfg.snap_s * meta.fps), meta.n_frames, cut.min_frames,
                )
                edges = [0, *moved, meta.n_frames]
                subtasks = [s.model_copy(update={"start_frame": a, "end_frame": b}) for s, a, b in zip(subtasks, edges, edges[1:])]
        models = [p.model for p in (named.provenance, cut.provenance) if p is not None and p.model]
        provenance = Provenance(
            backend=self.name,
            model=" + ".join(dict.fromkeys(models)) or None,
            prompt_version=next((p.prompt_version for p in (named.provenance, cut.provenance) if p and p.prompt_version), None),
            settings_hash=self.settings_hash,
            tokens_in=usage.answer_input_tokens,
            tokens_out=usage.answer_output_tokens,
            cost_usd=usage.answer_cost_usd,
            latency_s=time.perf_counter() - start,
            confidence=cut.provenance.confidence if cut.provenance else None,
        )
        dec = Decomposition(
            episode_id=meta.episode_id, n_frames=meta.n_frames, subtasks=tuple(subtasks), status=status,
            author=self.name, provenance=provenance, note=note, min_frames=max(cut.min_frames, DEFAULT_MIN_FRAMES),
        )
        return dec, usage

