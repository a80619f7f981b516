"""Training the boundary network: pretraining on generated sets, fine-tuning on accepted episodes.

Loss per stage: binary cross-entropy of each grid frame's boundary logit against Gaussian bumps
at the true boundaries (positives weighted up: boundaries are rare), plus cross-entropy of the
skill logits, plus (offset head) a smooth-L1 loss on the signed distance to the nearest boundary
over the frames within OFFSET_REACH of one; summed over stages as MS-TCN does. Fine-tuning starts from the given model and runs
a fixed number of full-batch steps (the accepted episodes of one dataset fit in one batch).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F

from atomvla.annotate.evaluation.boundaries import BoundaryMatch, match_boundaries
from atomvla.annotate.instructions import plan
from atomvla.annotate.learned.align import Exemplar, exemplar, leave_one_out
from atomvla.annotate.learned.data import Sample, features_for, make_sample
from atomvla.annotate.learned.features import EVENT_CHANNELS, HEURISTIC_CHANNEL, robot_layout
from atomvla.annotate.learned.decode import best_boundaries, boundary_errors, priors
from atomvla.annotate.learned.model import N_SKILLS, TARGET_SIGMA, LearnedModel, ModelSpec
from atomvla.curate.episode import Episode
from atomvla.schemas import MAX_SUBTASKS, MIN_SUBTASKS, Subtask, check_subtasks

log = logging.getLogger(__name__)

POS_WEIGHT = 5.0
OFFSET_REACH = 4  # grid frames: the offset head learns the distance to a boundary this near
OFFSET_WEIGHT = 0.5


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    crop: int = 0  # > 0: train on random windows of this many grid frames (long sets); 0: whole episodes
    stretch: float = 0.0  # > 0: each episode played at a random speed in [1/(1+s), 1+s] (tasks differ in pace)
    # > 0: each drawn sample loses the heuristic's event channels (zeroed) with this chance, so the
    # network also learns the cues that decide where the events are wrong
    drop_events: float = 0.0
    balance_tasks: bool = False  # draw every task equally often (default: every episode; tasks differ in episode count)
    seed: int = 0


# Fine-tuning: few steps from the pretrained weights, a lower rate (seconds on a CPU for 20 episodes).
FINE_TUNE = TrainConfig(steps=120, batch=8, lr=1e-3, crop=160)


def _heat(boundaries: Sequence[int], length: int) -> Float[np.ndarray, " t"]:
    """The boundary target per grid frame: Gaussian bumps at the boundaries."""
    t = np.arange(length)
    heat = np.zeros(length, dtype=np.float32)
    for b in boundaries:
        heat = np.maximum(heat, np.exp(-0.5 * ((t - b) / TARGET_SIGMA) ** 2).astype(np.float32))
    return heat


def _offsets(boundaries: Sequence[int], length: int) -> np.ndarray:
    """The offset target per grid frame: the signed distance to the nearest boundary (NaN farther
    than OFFSET_REACH: no offset loss there)."""
    t = np.arange(length)
    offset = np.full(length, np.nan, dtype=np.float32)
    for b in boundaries:
        near = (np.abs(b - t) <= OFFSET_REACH) & ~(np.abs(offset) <= np.abs(b - t))
        offset[near] = (b - t)[near]
    return offset


def _moved(sample: Sample, length: int) -> list[int]:
    """The sample's boundaries on a grid resampled to `length` frames."""
    n = len(sample.features.x)
    return [round(b * (length - 1) / (n - 1)) for b in sample.boundaries]


def _stretched(sample: Sample, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, heat, skills of `sample` resampled to `factor` times as many grid frames (linear for x,
    nearest for skills; the targets' bumps redrawn at the moved boundaries, same width)."""
    x = sample.features.x
    t = max(2, round(len(x) * factor))
    at = np.linspace(0.0, len(x) - 1.0, t)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, len(x) - 1)
    frac = (at - lo)[:, None].astype(np.float32)
    return x[lo] * (1 - frac) + x[hi] * frac, _heat(_moved(sample, t), t), sample.skills[np.rint(at).astype(int)]


@dataclass(frozen=True)
class Batch:
    x: Float[Tensor, "b t c"]
    mask: Float[Tensor, "b t 1"]
    heat: Float[Tensor, "b t"]
    offset: Float[Tensor, "b t"]  # NaN where no boundary is within OFFSET_REACH
    skills: Int[Tensor, "b t"]


def _batch(samples: Sequence[Sample], rng: np.random.Generator, config: TrainConfig, events: Sequence[int] = ()) -> Batch:
    """The samples' inputs and targets, padded to the longest; `events`: the event channels'
    indices, zeroed in a sample with chance `config.drop_events`."""
    parts = []
    for s in samples:
        if config.stretch > 0:
            x, heat, skills = _stretched(s, float(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(config.stretch))))
            offset = _offsets(_moved(s, len(x)), len(x))
        else:
            x, skills = s.features.x, s.skills
            heat, offset = _heat(s.boundaries, len(x)), _offsets(s.boundaries, len(x))
        if config.crop and len(x) > config.crop:
            window = slice(a := int(rng.integers(0, len(x) - config.crop + 1)), a + config.crop)
            x, heat, offset, skills = x[window], heat[window], offset[window], skills[window]
        if config.drop_events > 0 and rng.random() < config.drop_events:
            x = x.copy()
            x[:, list(events)] = 0.0
        parts.append((x, heat, offset, skills))
    t = max(len(p[0]) for p in parts)
    c = parts[0][0].shape[1]
    xs = np.zeros((len(parts), t, c), np.float32)
    mask = np.zeros((len(parts), t, 1), np.float32)
    heats = np.zeros((len(parts), t), np.float32)
    offsets = np.full((len(parts), t), np.nan, np.float32)
    skills = np.zeros((len(parts), t), np.int64)
    for i, (x, h, o, k) in enumerate(parts):
        xs[i, : len(x)] = x
        mask[i, : len(x)] = 1
        heats[i, : len(x)] = h
        offsets[i, : len(x)] = o
        skills[i, : len(x)] = k
    return Batch(*(torch.from_numpy(a) for a in (xs, mask, heats, offsets, skills)))


def loss(model: LearnedModel, batch: Batch) -> Tensor:
    m = batch.mask[..., 0]
    total = torch.zeros(())
    weight = 1.0 + (POS_WEIGHT - 1.0) * batch.heat
    near = ~torch.isnan(batch.offset) & (m > 0)
    for out in model.net(batch.x, batch.mask):
        bce = F.binary_cross_entropy_with_logits(out[..., 0], batch.heat, weight=weight, reduction="none")
        ce = F.cross_entropy(out[..., 1 : 1 + N_SKILLS].transpose(1, 2), batch.skills, reduction="none")
        total = total + ((bce + 0.3 * ce) * m).sum() / m.sum()
        if model.spec.offsets and near.any():
            total = total + OFFSET_WEIGHT * F.smooth_l1_loss(out[..., 1 + N_SKILLS][near], batch.offset[near])
    return total


def _task_weights(samples: Sequence[Sample]) -> Float[np.ndarray, " n"]:
    """Each sample's chance to be drawn so that every (source, task) is drawn equally often."""
    count = Counter((s.source, s.task) for s in samples)
    weights = np.array([1.0 / count[s.source, s.task] for s in samples])
    return weights / weights.sum()


def fit(
    model: LearnedModel, samples: Sequence[Sample], config: TrainConfig = TrainConfig(),
    on_step: Callable[[int, float], None] | None = None,
) -> LearnedModel:
    """Train `model` in place on `samples` and return it."""
    if not samples:
        raise ValueError("no samples to train on")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)  # small matrices: intra-op threads cost more than they save
    opt = torch.optim.AdamW(model.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(1, config.steps // 10)
    # linear warm-up over the first tenth, then cosine down to zero
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (k + 1) / warm if k < warm else 0.5 * (1 + np.cos(np.pi * (k - warm) / max(1, config.steps - warm)))
    )
    events = [i for i, c in enumerate(model.spec.channels) if c in EVENT_CHANNELS]
    draw = _task_weights(samples) if config.balance_tasks else None
    model.net.train()
    for step in range(config.steps):
        pick = rng.choice(len(samples), size=min(config.batch, len(samples)), replace=False, p=draw)
        value = loss(model, _batch([samples[i] for i in pick], rng, config, events))
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.net.parameters(), 1.0)
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step, float(value))
    model.net.eval()
    return model


def pretrain(spec: ModelSpec, samples: Sequence[Sample], config: TrainConfig = TrainConfig(), **info: object) -> LearnedModel:
    """A new model trained on `samples`; `info` fields (data_hash, trained_on, heuristic_prior) go into its metadata."""
    model = fit(LearnedModel.new(spec, config.seed), samples, config)
    model.info = replace(model.info, **info)
    return model


def plan_convention(tasks: Sequence[str], truths: Sequence[Sequence[Subtask]]) -> tuple[bool, int]:
    """(follow the plans' counts, offset): accepted episodes whose subtask count is their plan's
    plus one same offset (at least half of those with a usable plan: a team that always gives a
    handover's release its own subtask has +1), else (False, 0): the model counts."""
    planned = [len(t) - len(plan(task)) for task, t in zip(tasks, truths) if MIN_SUBTASKS <= len(plan(task)) <= MAX_SUBTASKS]
    if not planned:
        return True, 0
    offset, n = Counter(planned).most_common(1)[0]
    return (True, offset) if n * 2 >= len(planned) else (False, 0)


SHIFT_MIN = 0.5  # grid frames: a smaller agreed error is rounding, not a convention


def convention_shift(errors: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Per boundary index, from each episode's errors (truth minus where the model puts it, see
    decode.boundary_errors): their median where every episode errs the same way by at least
    SHIFT_MIN (a team's timing convention, e.g. a pick that ends 4 frames earlier), else 0; () when
    no index has one."""
    shift = []
    for i in range(max((len(e) for e in errors), default=0)):
        at = np.array([e[i] for e in errors if len(e) > i])
        agreed = bool(np.all(at >= SHIFT_MIN) or np.all(at <= -SHIFT_MIN))
        shift.append(round(float(np.median(at)), 2) if agreed else 0.0)
    return tuple(shift) if any(shift) else ()


PRIOR_REACH = 6  # grid frames (0.3 s): a boundary this near an accepted one found the same event


def _peaks(bumps: np.ndarray) -> list[int]:
    """The grid frames where a channel of unit bumps peaks: the bumps' centres."""
    left = np.concatenate([[-np.inf], bumps[:-1]])
    right = np.concatenate([bumps[1:], [-np.inf]])
    return np.flatnonzero((bumps >= 0.5) & (bumps >= left) & (bumps > right)).tolist()


def prior_evidence(start: LearnedModel, samples: Sequence[Sample], network: float) -> tuple[float, float] | None:
    """(the heuristic's, the network's) boundary F1 on accepted samples, a pair matching within
    PRIOR_REACH grid frames: the heuristic's proposed boundaries (the peaks of its channel), and the
    starting network's own (`network`, see `network_f1`). None without the heuristic's channel."""
    if HEURISTIC_CHANNEL not in start.spec.channels:
        return None
    c = start.spec.channels.index(HEURISTIC_CHANNEL)
    heuristic = sum((match_boundaries(_peaks(s.features.x[:, c]), s.boundaries, PRIOR_REACH) for s in samples), BoundaryMatch(0, 0, 0, ()))
    return heuristic.f1, network


def network_f1(start: LearnedModel, samples: Sequence[Sample], reach: int = PRIOR_REACH, with_priors: bool = False) -> float:
    """The starting model's boundary F1 on samples (its best frames, as many as each sample has; the
    network alone, or with the priors it decodes with), a pair matching within `reach` grid frames."""
    network = BoundaryMatch(0, 0, 0, ())
    for s in samples:
        prob = start.predict(torch.from_numpy(s.features.x))[0].numpy().astype(np.float64)
        prior = priors(start, s.features, s.instruction) if with_priors else None
        network += match_boundaries(best_boundaries(prob if prior is None else prob + prior, len(s.boundaries) + 1, 2),
                                    s.boundaries, reach)
    return network.f1


# A team whose accepted boundaries the starting model already proposes, each within this many grid
# frames (50 ms), in at least KEEP_EPISODES episodes, keeps the starting network: 120 steps on a
# few episodes would fit their particulars and lose what pretraining got right; one episode found is
# too little evidence of that (figures in README, "The learned backend").
KEEP_REACH = 1
KEEP_EPISODES = 2
KEPT_START = "kept_pretrained"  # info.extra's key for that decision (calibrate reports it)


def kept_prior(weight: float, evidence: tuple[float, float] | None) -> float:
    """The heuristic prior a fine-tuned model decodes with: `weight` where the heuristic finds the
    team's accepted boundaries at least as well as the starting network alone, else 0 (the team's
    convention is not the heuristic's, and its prior would pull the fitted network to other
    events). Few-shot F1 (2 accepted episodes -> the others; fine-tuning seeds 0 and 1), kept always,
    never, by this rule: Meta-World + ALOHA leave-one-task-out 0.906 and 0.906, 0.930 and 0.928,
    0.913 and 0.911 (410 episodes); LIBERO never trained on, where the prior helps the human-like
    teams, 0.967 and 0.967, 0.949 and 0.950, 0.967 and 0.967 (136)."""
    return weight if evidence is None or evidence[0] >= evidence[1] else 0.0


# The alignment prior's weight per team (`kept_alignment`): 0.5 where the exemplars find each
# other's boundaries at least as well as the starting network, 1.5 where they find all of them and
# the network misses some (its confident wrong peaks outweighed alignment at 0.5). Chosen on the
# development split; the figures are in README, "The learned backend".
ALIGNMENT_WEIGHT = 0.5
ALIGNMENT_WEIGHT_AHEAD = 1.5
MAX_EXEMPLARS = 8  # a profile keeps at most this many accepted episodes to align with (decoding aligns with each)
MAX_EXEMPLAR_FRAMES = 1200  # grid frames (60 s): longer accepted episodes are no exemplars (alignment is quadratic)


def exemplars_of(samples: Sequence[Sample], channels: Sequence[str]) -> tuple[Exemplar, ...]:
    """The first MAX_EXEMPLARS samples no longer than MAX_EXEMPLAR_FRAMES as exemplars (see align.py)."""
    fit_in = [s for s in samples if len(s.features.x) <= MAX_EXEMPLAR_FRAMES][:MAX_EXEMPLARS]
    return tuple(exemplar(s.features.x, channels, s.boundaries, s.instruction) for s in fit_in)


def kept_alignment(evidence: tuple[float, float] | None, tied: float = ALIGNMENT_WEIGHT, ahead: float = ALIGNMENT_WEIGHT_AHEAD) -> float:
    """The alignment prior's weight from (the exemplars' leave-one-out F1, the starting network's F1
    on them): `ahead` where the exemplars find all of each other's boundaries and the network does
    not, `tied` where they find them at least as well as the network, else 0 (the team's episodes
    differ too much in what they do to be aligned)."""
    if evidence is None or evidence[0] < evidence[1]:
        return 0.0
    return ahead if evidence[0] >= 1.0 > evidence[1] else tied


def alignment_evidence(exemplars: Sequence[Exemplar], network: float) -> tuple[float, float] | None:
    """(the exemplars' leave-one-out F1 within PRIOR_REACH, the starting network's F1 on them,
    `network`); None with fewer than 2 exemplars."""
    loo = leave_one_out(exemplars, PRIOR_REACH)
    return None if loo is None else (loo, network)


def fine_tune(
    base: LearnedModel,
    episodes: Sequence[Episode],
    truths: Sequence[Sequence[Subtask]],
    config: TrainConfig = FINE_TUNE,
) -> LearnedModel:
    """A copy of `base` fitted to accepted episodes (`truths[i]` the accepted subtasks of
    `episodes[i]`); `base` is left unchanged. The copy records the robot layout it was fitted on
    (the first episode's; see features.robot_layout) and whether to follow the plans' counts
    (see `plan_convention`). Raises KinematicsError for an episode without usable state or action."""
    if not episodes:
        raise ValueError("no accepted episodes to fine-tune on")
    if len(episodes) != len(truths):
        raise ValueError(f"{len(episodes)} episodes but {len(truths)} accepted decompositions: one each is needed")
    for e, t in zip(episodes, truths):
        if problems := check_subtasks(t, e.meta.n_frames, min_frames=1):
            raise ValueError(f"episode {e.meta.episode_id}: its accepted subtasks cannot be learned from: {problems[0]}")
    samples = [make_sample(features_for(base.spec.channels, e), t, instruction=e.meta.task) for e, t in zip(episodes, truths)]
    return fine_tune_samples(base, samples, robot_layout(episodes[0].meta),
                             plan_convention([e.meta.task for e in episodes], truths), config)


def fine_tune_samples(
    base: LearnedModel, samples: Sequence[Sample], layout: str | None, convention: tuple[bool, int] = (True, 0),
    config: TrainConfig = FINE_TUNE,
) -> LearnedModel:
    """`fine_tune` on ready samples (the evaluation's path: no store episodes); `convention`: see
    `plan_convention`. The heuristic prior is kept only where the heuristic finds the samples'
    boundaries as well as the network (see `kept_prior`; both F1s go in `info.extra`). The fitted
    model's remaining timing error on the samples, where they all agree, becomes its
    `boundary_shift` (see `convention_shift`, `own_errors`). The samples are kept as exemplars
    (at most MAX_EXEMPLARS, see align.py), and their alignment prior is decoded with where they
    find each other's boundaries as well as the starting network finds them, at a higher weight
    where they find all of them and the network does not (`kept_alignment`; the leave-one-out F1
    and the network's go in `info.extra`). Where the starting model, with its priors, already puts
    every accepted boundary of at least KEEP_EPISODES samples within KEEP_REACH, its network is kept unfitted, with its heuristic
    prior (info.extra[KEPT_START] says so), and only the exemplars are added."""
    network = network_f1(base, samples)
    evidence = prior_evidence(base, samples, network)
    exemplars = exemplars_of(samples, base.spec.channels)
    aligned = alignment_evidence(exemplars, network)
    extra = {**{k: v for k, v in base.info.extra.items() if k != KEPT_START},
             **({} if evidence is None else {"prior_heuristic_f1": f"{evidence[0]:.2f}", "prior_network_f1": f"{evidence[1]:.2f}"}),
             **({} if aligned is None else {"alignment_f1": f"{aligned[0]:.2f}", "alignment_network_f1": f"{aligned[1]:.2f}"})}
    info = replace(base.info, robot_layout=layout, count_from_plan=convention[0], plan_offset=convention[1], boundary_shift=(),
                   heuristic_prior=kept_prior(base.info.heuristic_prior, evidence),
                   alignment_prior=kept_alignment(aligned), extra=extra)
    if len(samples) >= KEEP_EPISODES and network_f1(base, samples, KEEP_REACH, with_priors=True) >= 1.0:
        kept = replace(info, heuristic_prior=base.info.heuristic_prior,
                       extra={**extra, KEPT_START: "yes"})
        return LearnedModel(copy.deepcopy(base.net), kept, exemplars)
    model = fit(LearnedModel(copy.deepcopy(base.net), info, exemplars), samples, config)
    model.info = replace(model.info, boundary_shift=convention_shift(own_errors(model, samples)))
    return model


def own_errors(model: LearnedModel, samples: Sequence[Sample]) -> list[list[float]]:
    """Each sample's boundary errors (decode.boundary_errors) under `model` with the other samples
    as its exemplars: aligned with itself, a sample's own boundaries would always be found."""
    if not model.exemplars:
        return [boundary_errors(model, s.features, s.boundaries, s.instruction) for s in samples]
    out = []
    for j, s in enumerate(samples):
        others = LearnedModel(model.net, model.info, exemplars_of([*samples[:j], *samples[j + 1 :]], model.spec.channels))
        out.append(boundary_errors(others, s.features, s.boundaries, s.instruction))
    return out
