"""`learned`: a temporal segmentation network over kinematics and the heuristic's events.

See `atomvla.annotate.learned` for the model, its features and fine-tuning. The weights are the
packaged pretrained ones, a file (`weights`), or a profile's fine-tuned weights (given to the
constructor with the profile's name by `atomvla.annotate.profiles.with_weights`, which each
proposal's provenance names; their hash is in the config, so the settings hash, and what a re-run
skips, follows them). `prepare` loads and checks them once:
missing or damaged weights, or weights computed on another feature layout, stop a run before any
work. A profile fitted on one robot's features refuses a run with episodes of another before any
work (`check_episodes`), and each such episode given to `propose` directly, naming both layouts.
An episode the features cannot be built for (e.g. a pixel model and no camera) falls back to the
heuristic, with the reason in the decomposition's note.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field

from atomvla.annotate.backends.base import Backend, BackendConfig, BackendError, SetupError, register
from atomvla.annotate.backends.heuristic import HeuristicBackend
from atomvla.annotate.kinematics import ACTION, STATE, KinematicsError
from atomvla.annotate.learned import DEFAULT_WEIGHTS
from atomvla.annotate.learned.data import features_for, wants
from atomvla.annotate.learned.decode import propose
from atomvla.annotate.learned.features import layout, robot_layout
from atomvla.annotate.learned.model import LearnedModel, WeightsError
from atomvla.curate.episode import Episode
from atomvla.errors import UserError
from atomvla.curate.errors import SourceError
from atomvla.schemas import DEFAULT_MIN_FRAMES, Decomposition, EpisodeMeta, Provenance, Status, Subtask


# What to do with episodes of another robot than a profile's (it is not "the learned backend cannot
# handle it", BackendError's words: it can, with its packaged weights).
OTHER_ROBOT = "without --profile (the packaged weights) or with a profile calibrated on this robot's accepted episodes"
SHOWN_IDS = 3  # episode ids a refused run names


class RobotMismatch(BackendError):
    """A profile fine-tuned on one robot's features given an episode of another (the Python API;
    a run refuses such episodes before any work, see `LearnedBackend.check_episodes`)."""

    def __init__(self, backend: str, meta: EpisodeMeta, problem: str):
        self.episode_id = meta.episode_id
        UserError.__init__(self, f"episode {meta.episode_id}: {problem}; propose it {OTHER_ROBOT}")


class LearnedConfig(BackendConfig):
    weights: str | None = Field(None, description="a weights file (.safetensors; default: the pretrained weights in the package)")
    weights_sha256: str | None = Field(None, description="set by a profile: the digest of the fine-tuned weights it carries")
    min_subtask_s: float = Field(0.25, gt=0, description="shortest subtask")


@register
class LearnedBackend(Backend):
    """MS-TCN-style boundary network, pretrained on every generated ground-truth set."""

    name = "learned"
    Config = LearnedConfig

    def __init__(
        self, config: BackendConfig | None = None, weights: bytes | None = None, model: LearnedModel | None = None,
        profile: str | None = None, learned_from: int | None = None,
    ):
        super().__init__(config)
        self._weights = weights
        self.model: LearnedModel | None = model
        self._digest = ""
        # the profile the weights came from and how many accepted episodes it was fitted on: each
        # proposal's provenance names them, so a reviewer sees which fit made it
        self._profile = profile
        self._learned_from = learned_from

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        return bool({ACTION, STATE} & set(meta.feature_names))

    @property
    def _where(self) -> str:
        cfg: LearnedConfig = self.config  # type: ignore[assignment]
        if self._weights is not None:
            return f"profile {self._profile!r} weights" if self._profile else f"profile weights {cfg.weights_sha256 or ''}".strip()
        return str(cfg.weights or DEFAULT_WEIGHTS)

    def prepare(self) -> None:
        if self.model is None:
            cfg: LearnedConfig = self.config  # type: ignore[assignment]
            try:
                if self._weights is not None:
                    self.model = LearnedModel.from_bytes(self._weights)
                else:
                    path = Path(cfg.weights) if cfg.weights else DEFAULT_WEIGHTS
                    if not path.is_file():
                        raise WeightsError(f"no such file (make it with `python -m benchmarks.learned_pretrain`)")
                    self.model = LearnedModel.load(path)
            except WeightsError as exc:
                raise SetupError(f"learned backend: {self._where}: {exc}") from exc
        channels = self.model.spec.channels
        if tuple(channels) != layout(*wants(channels)):
            raise SetupError(
                f"learned backend: {self._where}: weights for feature layout {','.join(channels)}; "
                f"this version computes {','.join(layout(*wants(channels)))}"
            )
        self._digest = self.model.digest()[:12]
        # One episode's tensors are small: intra-op threads cost more than they save (one thread
        # proposes about as many episodes a second as two, at half the CPU), as in train.fit.
        torch.set_num_threads(1)

    def check_episodes(self, metas: Sequence[EpisodeMeta]) -> None:
        """A profile fitted on one robot refuses a run with episodes of another, once, naming both layouts."""
        if self.model is None:
            self.prepare()
        assert self.model is not None
        fitted = self.model.info.robot_layout
        if fitted is None:  # the packaged weights serve any robot
            return
        others: dict[str, list[str]] = {}  # robot layout -> ids of the episodes that have it
        for meta in metas:
            if (here := robot_layout(meta)) != fitted:
                others.setdefault(here, []).append(meta.episode_id)
        if others:
            ids = [e for group in others.values() for e in group]
            shown = ", ".join(ids[:SHOWN_IDS]) + (f", ... ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")
            raise SetupError(
                f"learned backend: {self._where}: fine-tuned on {fitted}; {len(ids)} of the {len(metas)} episodes to "
                f"propose have {' or '.join(others)} ({shown}): propose them {OTHER_ROBOT}; select the others with --episodes"
            )

    def _check_robot(self, meta: EpisodeMeta) -> None:
        assert self.model is not None
        fitted = self.model.info.robot_layout
        if fitted is not None and fitted != (here := robot_layout(meta)):
            raise RobotMismatch(self.name, meta, f"the profile was fine-tuned on {fitted}; this episode has {here}")

    def segment(self, episode: Episode) -> tuple[list[Subtask], float | None]:
        if self.model is None:
            self.prepare()
        assert self.model is not None
        meta = episode.meta
        self._check_robot(meta)
        cfg: LearnedConfig = self.config  # type: ignore[assignment]
        try:
            feats = features_for(self.model.spec.channels, episode)
        except KinematicsError as exc:
            raise BackendError(self.name, meta, str(exc)) from exc
        return propose(self.model, feats, meta.task, max(DEFAULT_MIN_FRAMES, round(cfg.min_subtask_s * meta.fps)))

    def propose(self, episode: Episode) -> Decomposition:
        """The learned proposal; when its features cannot be built for this episode (no camera for
        a pixel model, a missing array), the heuristic's, with the reason in the note."""
        start = time.perf_counter()
        try:
            subtasks, confidence = self.segment(episode)
            model, note = f"learned:{self._digest}", None
        except RobotMismatch:
            raise  # another robot's profile: refused, not papered over
        except (BackendError, SourceError, ValueError) as exc:
            try:
                subtasks, confidence = HeuristicBackend().segment(episode)
            except BackendError:
                raise exc from None  # nothing to fall back on: the learned backend's own reason
            model, note = "heuristic (fallback)", f"learned backend fell back to the heuristic: {exc}"
        provenance = Provenance(backend=self.name, model=model, settings_hash=self.settings_hash,
                                latency_s=time.perf_counter() - start, confidence=confidence,
                                profile=self._profile, learned_from=self._learned_from)
        return Decomposition(episode_id=episode.meta.episode_id, n_frames=episode.meta.n_frames, subtasks=tuple(subtasks),
                             status=Status.proposed, author=self.name, provenance=provenance, note=note)
