"""Stochastic denoising for the flow-matching action head, with exact per-step log-probabilities.

Flow-GRPO's SDE in the head's convention (x_s = s·actions + (1 − s)·noise, velocity v = actions −
noise, s = 0 noise → s = 1 actions). The score of x_s is −(x − s·v)/(1 − s), so the reverse SDE
with the flow's marginals is, per step of size ds = 1/N,

    x' = x + [v − σ_s² / (2(1 − s)) · (x − s·v)] ds + σ_s √ds · ξ,   σ_s = η √((1 − s)/s),

with σ at s = 0 taken at the first step's s = 1/N (as Flow-GRPO does at t = 1). Each step is a
Gaussian N(mean(x, s), σ_s² ds), so the log-probability of a sampled chunk is the sum of the
steps' Gaussian log-densities, exact, and recomputable under other parameters (ratio, KL).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

Velocity = Callable[[Float[Tensor, "b h a"], Float[Tensor, " b"]], Float[Tensor, "b h a"]]


def times(steps: int) -> Float[Tensor, " steps"]:
    return torch.arange(steps, dtype=torch.float32) / steps


def step_std(s: Float[Tensor, "..."], steps: int, eta: float) -> Float[Tensor, "..."]:
    """σ_s · √ds, the standard deviation of the step taken at time s."""
    s_eff = s.clamp_min(1.0 / steps)
    return eta * torch.sqrt((1 - s_eff) / s_eff) * math.sqrt(1.0 / steps)


def step_mean(x: Tensor, v: Tensor, s: Tensor, steps: int, eta: float) -> Tensor:
    """Mean of the next state; `s` broadcasts against x (shape (b, 1, 1))."""
    ds = 1.0 / steps
    var = step_std(s, steps, eta) ** 2 / ds  # σ_s²
    return x + (v - var / (2 * (1 - s)) * (x - s * v)) * ds


def gaussian_log_prob(x: Float[Tensor, "b h a"], mean: Float[Tensor, "b h a"], std: Tensor) -> Float[Tensor, " b"]:
    """log N(x; mean, std²) summed over the chunk's dimensions."""
    std = std.expand_as(x)
    return (-((x - mean) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi)).sum((-2, -1))


@dataclass(frozen=True)
class Trajectory:
    """States x_0 (noise) .. x_N (the chunk) of a stochastic denoising run, and each step's log-prob."""

    xs: Float[Tensor, "n1 b h a"]
    log_probs: Float[Tensor, "n b"]

    @property
    def chunk(self) -> Float[Tensor, "b h a"]:
        return self.xs[-1]


@torch.no_grad()
def sample(velocity: Velocity, noise: Float[Tensor, "b h a"], steps: int, eta: float, generator: torch.Generator) -> Trajectory:
    xs, logps = [noise], []
    x = noise
    for s_val in times(steps).tolist():
        s = torch.full((x.shape[0],), s_val, device=x.device, dtype=x.dtype)
        mean = step_mean(x, velocity(x, s), s[:, None, None], steps, eta)
        std = step_std(s[:, None, None], steps, eta)
        x = mean + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xs.append(x)
        logps.append(gaussian_log_prob(x, mean, std))
    return Trajectory(torch.stack(xs), torch.stack(logps))


def log_probs(velocity: Velocity, xs: Float[Tensor, "n1 b h a"], steps: int, eta: float) -> Float[Tensor, "n b"]:
    """Per-step log-probs of the transitions xs[k] -> xs[k+1] under `velocity` (all steps in one batch)."""
    n, b = xs.shape[0] - 1, xs.shape[1]
    x = xs[:-1].reshape(n * b, *xs.shape[2:])
    s = times(steps).to(xs).repeat_interleave(b)
    mean = step_mean(x, velocity(x, s), s[:, None, None], steps, eta)
    return gaussian_log_prob(xs[1:].reshape(n * b, *xs.shape[2:]), mean, step_std(s[:, None, None], steps, eta)).view(n, b)
