"""From per-frame boundary and skill probabilities to 2-5 contiguous subtasks.

The number of subtasks is the instruction's plan's (plus the offset a fine-tuned model learned
from a team's accepted episodes, e.g. +1 where a handover ends with the release) where that is
2-5 and the model follows the plan, else the model's own: one more than the boundaries its probability
mass adds up to.
The boundaries are the `k - 1` frames, at least `min_gap` apart, with the highest summed
boundary probability (exact, by dynamic programming), plus the weights' `heuristic_prior` times the
heuristic's proposed boundaries: held out, the network is unsure on tasks unlike its training ones
(peaks of 0.1-0.2 at a wrong cue), and there the rules decide; where it is sure it overrules them.
A fine-tuned model keeps the prior only where the heuristic finds the team's accepted boundaries
as well as the network does (see train.kept_prior). A fine-tuned model with exemplars (its accepted
episodes) adds their alignment prior too: their boundaries carried to the episode by time warping
(see align.py; train.kept_alignment decides its weight per team).
With the offset head, each chosen frame is refined to sub-frame precision: the frames around it vote
for where the boundary is (their own position plus their predicted offset), weighted by their
probability. A fine-tuned model's `boundary_shift` (a team's timing convention learned from its
accepted episodes) is then added to each boundary.
Segments are named from the plan when the counts agree, else from the skill the model gives the segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from atomvla.annotate.instructions import Step, object_of, plan, the_object
from atomvla.annotate.learned.align import align_features, alignment_prior
from atomvla.annotate.learned.features import HEURISTIC_CHANNEL, Features
from atomvla.annotate.learned.model import TARGET_SIGMA, LearnedModel
from atomvla.schemas import MAX_SUBTASKS, MIN_SUBTASKS, SKILLS, Subtask

# The probability mass of one boundary's bump in the training targets.
BUMP_MASS = TARGET_SIGMA * float(np.sqrt(2 * np.pi))


def predicted_count(prob: np.ndarray) -> int:
    """The model's own count: one more than the boundaries its probability mass adds up to."""
    return int(np.clip(round(float(prob.sum()) / BUMP_MASS) + 1, MIN_SUBTASKS, MAX_SUBTASKS))


def best_boundaries(prob: np.ndarray, k: int, min_gap: int) -> list[int]:
    """The k - 1 frames in [min_gap, t - min_gap], each at least `min_gap` after the previous,
    maximising the summed `prob` (t, ). Empty when the episode is too short for k segments."""
    t = len(prob)
    m = k - 1
    if m <= 0 or t < k * min_gap:
        return []
    # best[j][f]: best sum choosing j+1 boundaries with the last at f; prefix maxima make it O(k t).
    neg = -np.inf
    best = np.full((m, t), neg)
    arg = np.zeros((m, t), dtype=int)
    valid = np.arange(t)
    best[0] = np.where((valid >= min_gap) & (valid <= t - min_gap * m), prob, neg)
    for j in range(1, m):
        run = np.maximum.accumulate(best[j - 1])
        where = np.maximum.accumulate(np.where(best[j - 1] == run, valid, 0))  # an argmax of each prefix
        prev = np.full(t, neg)
        prev[min_gap:] = run[: t - min_gap]
        ok = valid <= t - min_gap * (m - j)
        best[j] = np.where(ok, prev + prob, neg)
        arg[j, min_gap:] = where[: t - min_gap]
    f = int(np.argmax(best[m - 1]))
    if not np.isfinite(best[m - 1][f]):
        return []
    out = [f]
    for j in range(m - 1, 0, -1):
        f = int(arg[j, f])
        out.append(f)
    return out[::-1]


REFINE_REACH = 2  # grid frames either side of a chosen frame that vote on where its boundary is


def refine(chosen: list[int], prob: np.ndarray, offset: np.ndarray) -> list[float]:
    """Each chosen grid frame moved to the probability-weighted mean of (frame + predicted offset)
    over the frames within REFINE_REACH of it, kept within REFINE_REACH of where it was."""
    out = []
    for c in chosen:
        f = np.arange(max(0, c - REFINE_REACH), min(len(prob), c + REFINE_REACH + 1))
        w = prob[f] + 1e-6
        out.append(float(np.clip(np.sum(w * (f + offset[f])) / np.sum(w), c - REFINE_REACH, c + REFINE_REACH)))
    return out


def names(task: str, k: int, skills: list[str]) -> list[Step]:
    """What each of k segments is called: the plan's steps when it has k of them, else the
    predicted skill with the task's object ("pick up the cube"), or the task itself."""
    steps = plan(task)
    if len(steps) == k:
        return list(steps)
    obj = object_of(task)
    out = []
    for skill in skills:
        if obj is None or skill == "other":
            out.append(Step("other" if obj is None else skill, task, obj))  # type: ignore[arg-type]
        else:
            verb = {"pick": "pick up", "reach": "reach"}.get(skill, skill)
            out.append(Step(skill, f"{verb} {the_object(obj)}", obj))  # type: ignore[arg-type]
    return out


def segment_skills(skill_prob: np.ndarray, edges: list[int]) -> list[str]:
    """(t, s) skill probabilities, [0, b1, ..., t] -> the most likely skill of each segment."""
    return [SKILLS[int(np.argmax(skill_prob[a:b].mean(axis=0)))] for a, b in zip(edges, edges[1:])]


def decode(
    prob: np.ndarray, skill_prob: np.ndarray, features: Features, task: str, count_from_plan: bool, min_frames: int,
    plan_offset: int = 0, prior: np.ndarray | None = None, offset: np.ndarray | None = None,
    shift: tuple[float, ...] = (),
) -> tuple[list[Subtask], float]:
    """Subtasks over the episode's own frames from grid-frame probabilities, and a confidence (the
    mean boundary probability at the chosen frames); `prior` (t,) is added to `prob` to choose them,
    `offset` (t,) refines them (see `refine`), and `shift[i]` grid frames move the i-th."""
    n = features.n_frames
    min_gap = max(1, int(np.ceil(min_frames / features.scale)))
    planned = len(plan(task))
    usable = count_from_plan and MIN_SUBTASKS <= planned + plan_offset <= MAX_SUBTASKS and planned > 0
    k = planned + plan_offset if usable else predicted_count(prob)
    k = min(k, n // min_frames)
    chosen = best_boundaries(prob if prior is None else prob + prior, k, min_gap) if k >= MIN_SUBTASKS else []
    moved = refine(chosen, prob, offset) if offset is not None else [float(c) for c in chosen]
    moved = [a + (shift[i] if i < len(shift) else 0.0) for i, a in enumerate(moved)]
    # refined and shifted; where that breaks the minimum gap, the chosen frames themselves
    frames = _frames(moved, features, min_frames)
    frames = frames if frames is not None else _frames([float(c) for c in chosen], features, min_frames)
    if frames is None:
        # a rounding collision on a short episode: equal parts, no confidence
        k = max(MIN_SUBTASKS, min(k, n // min_frames))
        frames, chosen = [round(i * n / k) for i in range(1, k)], []
    edges = [0, *frames, n]
    grid_edges = [0, *(features.to_grid(f) for f in frames), len(prob)]
    steps = names(task, len(edges) - 1, segment_skills(skill_prob, grid_edges))
    subtasks = [Subtask(start_frame=a, end_frame=b, instruction=s.instruction, skill=s.skill) for a, b, s in zip(edges, edges[1:], steps)]
    confidence = float(np.mean(prob[chosen])) if chosen else 0.0
    return subtasks, confidence


def _frames(at: list[float], features: Features, min_frames: int) -> list[int] | None:
    """Grid positions -> episode frames; None where two land closer than `min_frames` (or to an end)."""
    frames = sorted({features.to_frame(a) for a in at})
    n = features.n_frames
    if len(frames) != len(at) or any(b - a < min_frames for a, b in zip([0, *frames], [*frames, n])):
        return None
    return frames


def heuristic_prior(features: Features, channels: tuple[str, ...], weight: float) -> np.ndarray | None:
    """`weight` times the heuristic's proposed-boundary channel (None without one or without weight)."""
    if not weight or HEURISTIC_CHANNEL not in channels:
        return None
    return weight * features.x[:, channels.index(HEURISTIC_CHANNEL)].astype(np.float64)


def priors(model: LearnedModel, features: Features, task: str) -> np.ndarray | None:
    """What decoding adds to the network's probability (t,) for an episode of instruction `task`:
    the heuristic's prior plus the alignment prior of the exemplars of the same instruction, each at
    the weights' weight; None without either."""
    parts = [heuristic_prior(features, model.spec.channels, model.info.heuristic_prior)]
    same = [e for e in model.exemplars if e.instruction == task]
    if same and model.info.alignment_prior:
        parts.append(alignment_prior(align_features(features.x, model.spec.channels), same, model.info.alignment_prior))
    parts = [p for p in parts if p is not None]
    return sum(parts[1:], parts[0]) if parts else None


def propose(model: LearnedModel, features: Features, task: str, min_frames: int) -> tuple[list[Subtask], float]:
    """What the backend proposes for one episode's features (the model's count rule, then `decode`)."""
    prob, skills, offset = model.predict(torch.from_numpy(features.x))
    info = model.info
    prior = priors(model, features, task)
    return decode(prob.numpy().astype(np.float64), skills.numpy(), features, task, info.count_from_plan, min_frames,
                  info.plan_offset, prior, None if offset is None else offset.numpy().astype(np.float64), info.boundary_shift)


ERROR_REACH = 6  # grid frames: where the model puts a true boundary is its best frame this near it


def boundary_errors(model: LearnedModel, features: Features, truth: Sequence[int], task: str) -> list[float]:
    """For each true boundary (grid frames) of an episode of instruction `task`, truth minus where
    the model puts it: its highest probability (plus the priors) within ERROR_REACH, refined as
    decoding does (before any shift)."""
    prob, _, offset = model.predict(torch.from_numpy(features.x))
    p = prob.numpy().astype(np.float64)
    prior = priors(model, features, task)
    score = p if prior is None else p + prior
    out = []
    for b in truth:
        lo, hi = max(0, b - ERROR_REACH), min(len(p), b + ERROR_REACH + 1)
        c = lo + int(np.argmax(score[lo:hi]))
        at = refine([c], p, offset.numpy().astype(np.float64))[0] if offset is not None else float(c)
        out.append(b - at)
    return out
