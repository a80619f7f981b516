"""`heuristic`: subtasks from kinematics alone, named from the task instruction. Offline, no model.

Kinematic candidates (see `atomvla.annotate.segmentation`) are matched to the plan the instruction
implies (see `atomvla.annotate.instructions`): the plan fixes how many subtasks there are and
which gripper event should end each (a pick ends at the grasp, a place after the release); the
kinematics fix where. Without a usable plan the number of subtasks comes from the kinematics.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from atomvla.annotate.backends.base import Backend, BackendConfig, BackendError, register
from atomvla.annotate.instructions import Step, plan, the_object
from atomvla.annotate.kinematics import ACTION, STATE, Kinematics, KinematicsError, extract
from atomvla.annotate.segmentation import (
    Candidate,
    Kind,
    change_scores,
    contact_scores,
    choose,
    gripper_events,
    grasp_boundaries,
    local_peaks,
    motion_onset,
)
from atomvla.curate.episode import Episode
from atomvla.schemas import DEFAULT_MIN_FRAMES, MAX_SUBTASKS, MIN_SUBTASKS, EpisodeMeta, Subtask

log = logging.getLogger(__name__)

# Bounds the bonus of a change that starts from rest (speed_before + ARRIVAL in the denominator).
ARRIVAL = 0.5
# A change from descending to moving sideways (the hand reached an object from above and starts
# working on it) counts up to this much more.
CONTACT_BONUS = 1.0
# Gripper events outrank any motion change (motion scores rarely exceed 2).
GRIPPER_BONUS = 2.0
# Ending a pick with a non-grasp candidate is allowed (the grasp may be missed) but costs this much.
MISMATCH_PENALTY = 1.5
# Without a plan, a motion change this salient starts a new subtask.
PEAK_THRESHOLD = 0.8
_END_KIND: dict[str, Kind] = {"pick": "close", "place": "open"}


class HeuristicConfig(BackendConfig):
    window_s: float = Field(0.3, gt=0, description="half-window of the before/after velocity means")
    min_subtask_s: float = Field(0.25, gt=0, description="shortest subtask")
    ee_dims: tuple[int, ...] | None = Field(None, description="end-effector dims of observation.state (names win otherwise)")
    gripper_dim: int | None = Field(None, description="gripper dim of observation.state (names win otherwise)")


def _plan_from_kinematics(ends: list[Candidate], task: str, obj: str | None) -> list[Step]:
    """Steps for segments found without a plan: a segment ending in a grasp is a pick, the next a
    place, others are named by the task; at least MIN_SUBTASKS of them."""
    kinds = [e.kind for e in ends] + [None] * max(1, MIN_SUBTASKS - len(ends))
    steps = []
    for i, kind in enumerate(kinds):
        if kind == "close":
            steps.append(Step("pick", f"pick up {the_object(obj)}", obj))
        elif i > 0 and kinds[i - 1] == "close":
            steps.append(Step("place", f"place {the_object(obj)}", obj))
        else:
            steps.append(Step("other", task, obj))
    return steps


def decompose(kin: Kinematics, task: str, n_frames: int, fps: float, config: HeuristicConfig) -> tuple[list[Subtask], float]:
    """Subtasks and a confidence for one episode's signals (pure: the backend's core)."""
    w = max(2, round(config.window_s * fps))
    min_frames = max(DEFAULT_MIN_FRAMES, round(config.min_subtask_s * fps))
    if n_frames < MIN_SUBTASKS * min_frames:
        raise KinematicsError(f"{n_frames} frames is too short for {MIN_SUBTASKS} subtasks of {min_frames}+ frames")

    score = change_scores(kin.motion, kin.speed, w, ARRIVAL)
    if kin.vertical is not None:
        score = score * (1.0 + CONTACT_BONUS * contact_scores(kin.motion, kin.vertical, w))
    peaks = local_peaks(score, min_frames)
    events = gripper_events(kin.gripper, min_frames) if kin.gripper is not None else []
    speed = np.linalg.norm(kin.motion, axis=1)
    # After a grasp the object moves with the hand: its first motion, up or sideways, ends the pick.
    grasps = [c for c in grasp_boundaries(score, peaks, speed, events, w, GRIPPER_BONUS) if c.kind == "close"]
    if any(kind == "open" for _, kind in events):
        # After a release, backing off the object still belongs to the place: the next subtask
        # starts when the arm sets off sideways.
        sideways = kin.horizontal()
        sideways_speed = np.linalg.norm(sideways, axis=1)
        sideways_score = change_scores(sideways, sideways_speed, w, ARRIVAL)
        releases = grasp_boundaries(
            sideways_score, local_peaks(sideways_score, min_frames), sideways_speed, events, w, GRIPPER_BONUS
        )
        grasps += [c for c in releases if c.kind == "open"]
    motions = [
        Candidate(motion_onset(speed, p, 2 * w), float(score[p]), "motion")
        for p in peaks
        if all(abs(p - g.frame) >= min_frames for g in grasps)
    ]
    candidates = grasps + motions

    steps = plan(task)
    if len(steps) > MAX_SUBTASKS:
        log.warning("instruction %r implies %d subtasks; keeping the first %d", task, len(steps), MAX_SUBTASKS)
        steps = steps[:MAX_SUBTASKS]
    if len(steps) < MIN_SUBTASKS:
        strongest = sorted(candidates, key=lambda c: -c.score)
        salient = [c for c in strongest if c.score >= PEAK_THRESHOLD][: MAX_SUBTASKS - 1] or strongest[:1]
        steps = _plan_from_kinematics(sorted(salient, key=lambda c: c.frame), task, steps[0].obj if steps else None)

    needs = [_END_KIND.get(s.skill, "motion") for s in steps[:-1]]
    chosen = choose(candidates, needs, n_frames, min_frames, MISMATCH_PENALTY)
    if chosen is None:
        # No kinematic evidence fits: equal parts, as many as the length allows, confidence 0.
        k = min(len(steps), n_frames // min_frames)
        frames = [round(i * n_frames / k) for i in range(1, k)]
        chosen, steps = [Candidate(f, 0.0, "motion") for f in frames], steps[: k - 1] + steps[-1:]

    starts = [0, *(c.frame for c in chosen)]
    ends = [*(c.frame for c in chosen), n_frames]
    subtasks = []
    for i, step in enumerate(steps):
        if step.skill == "reach" and i < len(chosen) and chosen[i].kind == "close":
            step = Step("pick", f"grasp {the_object(step.obj)}", step.obj)  # the approach ended in a grasp
        subtasks.append(Subtask(start_frame=starts[i], end_frame=ends[i], instruction=step.instruction, skill=step.skill))
    confidence = float(np.mean([c.score / (1.0 + c.score) for c in chosen])) if chosen else 0.0
    return subtasks, confidence


@register
class HeuristicBackend(Backend):
    """Principal-axis kinematic segmentation (AtomicVLA-style), named from the instruction."""

    name = "heuristic"
    Config = HeuristicConfig

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        return bool({ACTION, STATE} & set(meta.feature_names))

    def segment(self, episode: Episode) -> tuple[list[Subtask], float]:
        meta = episode.meta
        cfg: HeuristicConfig = self.config  # type: ignore[assignment]
        try:
            kin = extract(meta, episode.arrays, cfg.ee_dims, cfg.gripper_dim)
            return decompose(kin, meta.task, meta.n_frames, meta.fps, cfg)
        except KinematicsError as exc:
            raise BackendError(self.name, meta, str(exc)) from exc
