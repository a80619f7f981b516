"""GRPO's pieces: group-normalised advantages and the clipped-ratio loss with a k3 KL penalty."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

ADV_EPS = 1e-4


def group_advantages(rewards: Float[Tensor, "b g"]) -> Float[Tensor, "b g"]:
    """A = (r − mean_group) / (std_group + 1e-4): each state's candidates compete with each other."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + ADV_EPS)


@dataclass(frozen=True)
class LossParts:
    loss: Tensor
    policy: Tensor
    kl: Tensor
    ratio: Tensor  # mean ratio (1 at the first update after sampling)
    clip_fraction: Tensor


def grpo_loss(
    logp: Float[Tensor, "n b"],
    old_logp: Float[Tensor, "n b"],
    ref_logp: Float[Tensor, "n b"],
    advantages: Float[Tensor, " b"],
    clip: float,
    beta: float,
) -> LossParts:
    """Per denoising step: −min(ρA, clip(ρ, 1−ε, 1+ε)A) + β·k3, with k3 = e^(ref−logp) − (ref−logp) − 1."""
    ratio = torch.exp(logp - old_logp)
    a = advantages[None, :]
    policy = -torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    d = ref_logp - logp
    kl = torch.exp(d) - d - 1
    loss = (policy + beta * kl).mean()
    clipped = ((ratio - 1).abs() > clip).float().mean()
    return LossParts(loss, policy.mean().detach(), kl.mean().detach(), ratio.mean().detach(), clipped)
