"""`heuristic`: subtasks from kinematics alone, named from the task instruction. Offline, no model.

Kinematic candidates (see `atomvla.annotate.segmentation`) are matched to the plan the instruction
implies (see `atomvla.annotate.instructions`): the plan fixes how many subtasks there are and
which gripper event should end each (a pick ends at the grasp, a place after the release); the
kinematics fix where. Without a usable plan the number of subtasks comes from the kinematics.
Every arm found in the feature names contributes its gripper's events.

Where a boundary lies around a grasp is a team's convention, not a fact of the data: every such
choice is a setting of `HeuristicConfig` (`pick_end`, `closed_fraction`, `start_transient_s`,
`regrasp_s`, ...), and `atom-annotate calibrate` fits them to a few accepted episodes.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

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
    closing_end,
    drop_regrasps,
    gripper_events,
    grasp_boundaries,
    local_peaks,
    motion_onset,
    quantile,
    window_means,
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
# A hand moving at less than this fraction of its typical (90th percentile) speed is still.
STILL = 0.08
# A pause interrupts a motion only if the hand moved at least this fraction of its typical speed
# (on average) just before and just after it.
MOVING = 0.3
# A motion after a pause whose direction is within ~70 degrees of the one before it resumed it.
RESUMED = 0.3
_END_KIND: dict[str, Kind] = {"pick": "close", "place": "open"}


PickEnd = Literal["closed", "moved", "lifted"]


class HeuristicConfig(BackendConfig):
    """The heuristic's settings. The conventions (where a pick ends, what is a start transient or a
    re-grasp) differ between teams: `atom-annotate calibrate` fits them to accepted episodes."""

    window_s: float = Field(0.3, gt=0, description="half-window of the before/after velocity means")
    min_subtask_s: float = Field(0.25, gt=0, description="shortest subtask")
    pick_end: PickEnd = Field(
        "moved",
        description="where a pick ends: 'closed' when the fingers have closed on the object, 'moved' at the "
        "object's first motion after the grasp (lift or carry), 'lifted' after the lift, when the carry starts",
    )
    closed_fraction: float = Field(
        0.9, gt=0, le=1, description="pick_end=closed: share of the fingers' closing travel that counts as closed"
    )
    start_transient_s: float = Field(
        0.5, ge=0, description="gripper motion in the first seconds (a twitch, fingers leaving their rest pose) makes "
        "no event; a motion still under way then is followed until it stops (up to 4x as long)",
    )
    pause_s: float = Field(
        1.0, ge=0, description="a pause (hand and gripper still) shorter than this inside a motion is a hesitation and "
        "splits nothing; longer ones may end a subtask",
    )
    regrasp_s: float = Field(
        1.0, ge=0, description="a release followed by a new grasp of the same gripper within this long is a re-grasp, not two events"
    )
    arms: tuple[str, ...] | None = Field(
        None, description="name prefixes of the arms, e.g. left,right (default: found from the feature names)"
    )
    ee_dims: tuple[int, ...] | None = Field(None, description="end-effector dims of observation.state (names win otherwise)")
    gripper_dim: int | None = Field(None, description="gripper dim of observation.state (names win otherwise)")

    # What `atom-annotate calibrate` searches: the conventions first, then the timing scales.
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "pick_end": ("closed", "moved", "lifted"),
        "closed_fraction": (0.6, 0.75, 0.9, 0.97),
        "window_s": (0.2, 0.3, 0.45),
    }


def _plan_from_kinematics(ends: list[Candidate], task: str, obj: str | None) -> list[Step]:
    """Steps for segments found without a plan: a segment ending in a grasp is a pick, the next a
    place, others are named by the task; at least MIN_SUBTASKS of them. Without a known object
    every segment is named by the task (never "pick up the object")."""
    kinds = [e.kind for e in ends] + [None] * max(1, MIN_SUBTASKS - len(ends))
    steps = []
    for i, kind in enumerate(kinds):
        if obj is None:
            steps.append(Step("other", task, None))
        elif kind == "close":
            steps.append(Step("pick", f"pick up {the_object(obj)}", obj))
        elif i > 0 and kinds[i - 1] == "close":
            steps.append(Step("place", f"place {the_object(obj)}", obj))
        else:
            steps.append(Step("other", task, obj))
    return steps


def _freed(grasp: Candidate, measured: np.ndarray, typical: float, w: int, n_frames: int) -> Candidate:
    """Grasp, then pull free: when the commanded motion after a grasp leaves the measured hand
    still for a whole window (the object resists: a peg in its hole, a nut on its peg), the
    object's first motion is where the hand breaks free: the first frame the measured speed
    reaches MOVING of its `typical` value."""
    ahead = measured[grasp.frame : grasp.frame + w]
    if len(ahead) == 0 or ahead.max() >= STILL * typical:
        return grasp
    moving = np.flatnonzero(measured[grasp.frame :] >= MOVING * typical)
    if not len(moving):
        return grasp
    return Candidate(min(grasp.frame + int(moving[0]), n_frames - 1), grasp.score, grasp.kind)


def _move_pick_ends(
    grasps: list[Candidate],
    tagged: list[tuple[int, str, int]],
    kin: Kinematics,
    sideways_score: np.ndarray,
    sideways_peaks: list[int],
    sideways_speed: np.ndarray,
    w: int,
    n_frames: int,
    config: HeuristicConfig,
) -> list[Candidate]:
    """Grasp candidates (one per close event, in order) moved to the `pick_end` convention:
    "closed" = where that arm's fingers finish closing; "lifted" = where the carry starts after
    the object's first motion (the first salient sideways change past it)."""
    closes = [(i, f, arm) for i, (f, kind, arm) in enumerate(tagged) if kind == "close"]
    out = []
    for c, (i, frame, arm) in zip(grasps, closes):
        stop = tagged[i + 1][0] if i + 1 < len(tagged) else n_frames
        if config.pick_end == "closed":
            fingers = (kin.fingers or (kin.gripper,))[arm]
            new = closing_end(fingers, frame, stop, config.closed_fraction) if fingers is not None else frame
        else:
            after = [p for p in sideways_peaks if c.frame + w // 2 < p <= stop + w]
            if after:
                strongest = max(sideways_score[p] for p in after)
                peak = next(p for p in after if sideways_score[p] >= 0.5 * strongest)
                new = motion_onset(sideways_speed, peak, 2 * w)
            else:
                new = c.frame
        out.append(Candidate(new, c.score, "close"))
    return out


def hesitations(kin: Kinematics, longest: int, w: int) -> np.ndarray:
    """(n,) bool: frames of pauses shorter than `longest` frames inside one motion: the hand moves
    less than STILL of its typical speed, no gripper changes, and the `w` frames after the pause
    move the way the `w` frames before it did, both at MOVING of the typical speed or more (a
    motion resumed, not a new one)."""
    norm = np.linalg.norm(kin.motion, axis=1)
    typical = quantile(norm, 0.9) or 1.0
    # over 3 frames: one frame of device jitter does not end a pause
    smooth = norm.copy()
    smooth[1:-1] = (norm[:-2] + norm[1:-1] + norm[2:]) / 3
    still = smooth <= STILL * typical
    out = np.zeros(len(still), dtype=bool)
    if not still.any():
        return out
    signals = {id(g): g for g in (*kin.grippers, *kin.fingers) if g is not None}  # fingers may be the command
    for g in signals.values():
        span = float(g.max() - g.min())
        if span > 0:
            still[:-1] &= np.abs(np.diff(g)) <= 0.01 * span
    edges = np.flatnonzero(np.diff(np.r_[0, still.astype(np.int8), 0]))
    a, b = edges[::2], edges[1::2]  # still runs [a, b)
    inner = (a > 0) & (b < len(still)) & (b - a < longest)
    if not inner.any():
        return out
    a, b = a[inner], b[inner]
    means_before, means_after = window_means(kin.motion, w)
    before, after = means_before[a], means_after[b]
    nb, na = np.linalg.norm(before, axis=1), np.linalg.norm(after, axis=1)
    resumed = (np.minimum(nb, na) > MOVING * typical) & ((before * after).sum(axis=1) > RESUMED * nb * na)
    for x, y in zip(a[resumed], b[resumed]):
        out[x:y] = True
    return out


def motion_scores(kin: Kinematics, w: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(n,) change scores of the motion (half-window `w`) and, with a known vertical axis, (n,) contact
    scores; computed once per Kinematics (the learned backend's features read the ones used here)."""
    if w not in kin.scores:
        contact = contact_scores(kin.motion, kin.vertical, w) if kin.vertical is not None else None
        kin.scores[w] = (change_scores(kin.motion, kin.speed, w, ARRIVAL), contact)
    return kin.scores[w]


def decompose(kin: Kinematics, task: str, n_frames: int, fps: float, config: HeuristicConfig) -> tuple[list[Subtask], float]:
    """Subtasks and a confidence for one episode's signals (pure: the backend's core).

    Hesitations (see `hesitations`) are cut out of the signals first, so a motion resumed after
    one is not a new start; boundaries found on the rest map back to the original frames."""
    pauses = hesitations(kin, round(config.pause_s * fps), max(2, round(config.window_s * fps)))
    if not pauses.any():
        return _decompose(kin, task, n_frames, fps, config)
    keep = np.flatnonzero(~pauses)
    subtasks, confidence = _decompose(kin.take(keep), task, len(keep), fps, config)
    starts = [int(keep[s.start_frame]) for s in subtasks]
    ends = [*starts[1:], n_frames]
    return [s.model_copy(update={"start_frame": a, "end_frame": b}) for s, a, b in zip(subtasks, starts, ends)], confidence


def _decompose(kin: Kinematics, task: str, n_frames: int, fps: float, config: HeuristicConfig) -> tuple[list[Subtask], float]:
    w = max(2, round(config.window_s * fps))
    min_frames = max(DEFAULT_MIN_FRAMES, round(config.min_subtask_s * fps))
    if n_frames < MIN_SUBTASKS * min_frames:
        raise KinematicsError(f"{n_frames} frames is too short for {MIN_SUBTASKS} subtasks of {min_frames}+ frames")

    plain, contact = motion_scores(kin, w)
    score = plain
    if contact is not None:
        score = score * (1.0 + CONTACT_BONUS * contact)
    peaks = local_peaks(score, min_frames)
    skip = round(config.start_transient_s * fps)
    regrasp = round(config.regrasp_s * fps)
    grippers = kin.grippers or (kin.gripper,)
    fingers = kin.fingers or (None,) * len(grippers)
    speed = np.linalg.norm(kin.motion, axis=1)
    travelling = window_means(speed[:, None], w)[1][:, 0] > MOVING * (quantile(speed, 0.9) or 1.0)
    per_arm = [
        [
            (f, kind, arm)
            for f, kind in drop_regrasps(
                gripper_events(g, min_frames, skip, fingers[arm] if fingers[arm] is not g else None, travelling), regrasp
            )
        ]
        for arm, g in enumerate(grippers)
        if g is not None
    ]
    tagged = sorted(e for arm_events in per_arm for e in arm_events)
    events = [(f, kind) for f, kind, _ in tagged]
    # After a grasp the object moves with the hand: its first motion, up or sideways, ends the pick
    # (pick_end="moved"); the other conventions move that boundary back to the closing or on past the lift.
    # (Not raised by the contact bonus: reaching from above is what precedes a grasp, not what follows it.)
    grasps = []
    if any(kind == "close" for _, kind in events):
        plain_peaks = peaks if plain is score else local_peaks(plain, min_frames)
        grasps = [c for c in grasp_boundaries(plain, plain_peaks, speed, events, w, GRIPPER_BONUS) if c.kind == "close"]
    if not any(kind == "open" for _, kind in events) and config.pick_end != "lifted":
        sideways_speed = sideways_score = np.zeros(0)  # not needed: spared (the heuristic must be fast)
        sideways_peaks: list[int] = []
    else:
        sideways = kin.horizontal()
        sideways_speed = np.linalg.norm(sideways, axis=1)
        sideways_score = change_scores(sideways, sideways_speed, w, ARRIVAL)
        sideways_peaks = local_peaks(sideways_score, min_frames)
    if grasps:
        typical = quantile(kin.speed, 0.9) or 1.0
        grasps = [_freed(c, kin.speed, typical, w, n_frames) for c in grasps]
    if config.pick_end != "moved":
        grasps = _move_pick_ends(grasps, tagged, kin, sideways_score, sideways_peaks, sideways_speed, w, n_frames, config)
    if any(kind == "open" for _, kind in events):
        # After a release, backing off the object still belongs to the place: the next subtask
        # starts when the arm sets off sideways.
        releases = grasp_boundaries(sideways_score, sideways_peaks, sideways_speed, events, w, GRIPPER_BONUS)
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
            kin = extract(meta, episode.arrays, cfg.ee_dims, cfg.gripper_dim, cfg.arms)
            return decompose(kin, meta.task, meta.n_frames, meta.fps, cfg)
        except KinematicsError as exc:
            raise BackendError(self.name, meta, str(exc)) from exc
