"""Training the boundary network: pretraining on generated sets, fine-tuning on accepted episodes.

Loss per stage: binary cross-entropy of each grid frame's boundary logit against Gaussian bumps
at the true boundaries (positives weighted up: boundaries are rare), plus cross-entropy of the
skill logits; summed over stages as MS-TCN does. Fine-tuning starts from the given model and runs
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
from torch import Tensor
from torch.nn import functional as F

from atomvla.annotate.instructions import plan
from atomvla.annotate.learned.data import Sample, features_for, make_sample
from atomvla.annotate.learned.features import robot_layout
from atomvla.annotate.learned.model import LearnedModel, ModelSpec
from atomvla.curate.episode import Episode
from atomvla.schemas import MAX_SUBTASKS, MIN_SUBTASKS, Subtask

log = logging.getLogger(__name__)

TARGET_SIGMA = 1.0  # grid frames
POS_WEIGHT = 5.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    crop: int = 0  # > 0: train on random windows of this many grid frames (long sets); 0: whole episodes
    stretch: float = 0.0  # > 0: each episode played at a random speed in [1/(1+s), 1+s] (tasks differ in pace)
    seed: int = 0


# Fine-tuning: few steps from the pretrained weights, a lower rate (seconds on a CPU for 20 episodes).
FINE_TUNE = TrainConfig(steps=120, batch=8, lr=1e-3, crop=160)


def _targets(sample: Sample, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(len(sample.features.x) if length is None else length)
    heat = np.zeros(len(t), dtype=np.float32)
    for b in sample.boundaries:
        heat = np.maximum(heat, np.exp(-0.5 * ((t - b) / TARGET_SIGMA) ** 2).astype(np.float32))
    return heat, sample.skills


def _stretched(sample: Sample, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, heat, skills of `sample` resampled to `factor` times as many grid frames (linear for x,
    nearest for skills; the targets' bumps redrawn at the moved boundaries, same width)."""
    x = sample.features.x
    t = max(2, round(len(x) * factor))
    at = np.linspace(0.0, len(x) - 1.0, t)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, len(x) - 1)
    frac = (at - lo)[:, None].astype(np.float32)
    moved = replace(sample, boundaries=tuple(round(b * (t - 1) / (len(x) - 1)) for b in sample.boundaries))
    heat, _ = _targets(moved, t)
    return x[lo] * (1 - frac) + x[hi] * frac, heat, sample.skills[np.rint(at).astype(int)]


def _batch(
    samples: Sequence[Sample], rng: np.random.Generator, crop: int, stretch: float = 0.0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (b, t, c), mask (b, t, 1), heat (b, t), skills (b, t), padded to the longest."""
    parts = []
    for s in samples:
        if stretch > 0:
            x, heat, skills = _stretched(s, float(np.exp(rng.uniform(-1.0, 1.0) * np.log1p(stretch))))
        else:
            x = s.features.x
            heat, skills = _targets(s)
        if crop and len(x) > crop:
            a = int(rng.integers(0, len(x) - crop + 1))
            x, heat, skills = x[a : a + crop], heat[a : a + crop], skills[a : a + crop]
        parts.append((x, heat, skills))
    t = max(len(p[0]) for p in parts)
    c = parts[0][0].shape[1]
    xs = np.zeros((len(parts), t, c), np.float32)
    mask = np.zeros((len(parts), t, 1), np.float32)
    heats = np.zeros((len(parts), t), np.float32)
    skills = np.zeros((len(parts), t), np.int64)
    for i, (x, h, k) in enumerate(parts):
        xs[i, : len(x)] = x
        mask[i, : len(x)] = 1
        heats[i, : len(x)] = h
        skills[i, : len(x)] = k
    return torch.from_numpy(xs), torch.from_numpy(mask), torch.from_numpy(heats), torch.from_numpy(skills)


def loss(model: LearnedModel, x: Tensor, mask: Tensor, heat: Tensor, skills: Tensor) -> Tensor:
    m = mask[..., 0]
    total = torch.zeros(())
    weight = 1.0 + (POS_WEIGHT - 1.0) * heat
    for out in model.net(x, mask):
        bce = F.binary_cross_entropy_with_logits(out[..., 0], heat, weight=weight, reduction="none")
        ce = F.cross_entropy(out[..., 1:].transpose(1, 2), skills, reduction="none")
        total = total + ((bce + 0.3 * ce) * m).sum() / m.sum()
    return total


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
    model.net.train()
    for step in range(config.steps):
        pick = rng.choice(len(samples), size=min(config.batch, len(samples)), replace=False)
        x, mask, heat, skills = _batch([samples[i] for i in pick], rng, config.crop, config.stretch)
        value = loss(model, x, mask, heat, skills)
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
    samples = [make_sample(features_for(base.spec.channels, e), t) for e, t in zip(episodes, truths)]
    return fine_tune_samples(base, samples, robot_layout(episodes[0].meta),
                             plan_convention([e.meta.task for e in episodes], truths), config)


def fine_tune_samples(
    base: LearnedModel, samples: Sequence[Sample], layout: str | None, convention: tuple[bool, int] = (True, 0),
    config: TrainConfig = FINE_TUNE,
) -> LearnedModel:
    """`fine_tune` on ready samples (the evaluation's path: no store episodes); `convention`: see `plan_convention`."""
    info = replace(base.info, robot_layout=layout, count_from_plan=convention[0], plan_offset=convention[1])
    model = LearnedModel(copy.deepcopy(base.net), info)
    return fit(model, samples, config)
