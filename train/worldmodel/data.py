"""Cached latents with the states, actions and subtasks of each episode, and windows over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from atomvla.train.data.episodes import TrainEpisode
from atomvla.train.latents import LatentCache, MappedLatents
from atomvla.train.worldmodel.model import normalise_latents


@dataclass(frozen=True)
class Normaliser:
    """Mean/std of states and actions (from the training episodes), saved with the world model."""

    state_mean: Tensor
    state_std: Tensor
    action_mean: Tensor
    action_std: Tensor

    @classmethod
    def fit(cls, episodes: Sequence[LatentEpisode]) -> Normaliser:
        s = torch.cat([e.states for e in episodes])
        a = torch.cat([e.actions for e in episodes])
        return cls(s.mean(0), s.std(0).clamp_min(1e-3), a.mean(0), a.std(0).clamp_min(1e-3))

    def state(self, x: Tensor) -> Tensor:
        return (x - self.state_mean.to(x)) / self.state_std.to(x)

    def action(self, x: Tensor) -> Tensor:
        return (x - self.action_mean.to(x)) / self.action_std.to(x)

    def tensors(self) -> dict[str, Tensor]:
        return {f"stats.{k}": getattr(self, k) for k in ("state_mean", "state_std", "action_mean", "action_std")}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> Normaliser:
        return cls(*(t[f"stats.{k}"] for k in ("state_mean", "state_std", "action_mean", "action_std")))


@dataclass(frozen=True)
class NormedLatents:
    """An episode's cached latents, read from disk on indexing and layer-normed (float32)."""

    frames: MappedLatents

    @property
    def shape(self) -> tuple[int, ...]:
        return self.frames.shape

    def __getitem__(self, index) -> Float[Tensor, "..."]:
        return normalise_latents(self.frames[index])


@dataclass(frozen=True)
class LatentEpisode:
    """One episode's layer-normed latents (per frame, read on demand) with its raw states and actions."""

    source: TrainEpisode
    latents: NormedLatents | Float[Tensor, "f n d"]
    states: Float[Tensor, "f s"]
    actions: Float[Tensor, "f a"]

    @property
    def n_frames(self) -> int:
        return self.latents.shape[0]

    def subgoal_frame(self, t: int) -> int:
        """The boundary frame that ends the subtask active at t (the last frame for the last subtask)."""
        sub = self.source.subtasks[self.source.subtask_at(t)]
        return min(sub.end_frame, self.n_frames - 1)

    def chunk(self, t: int, horizon: int) -> tuple[Float[Tensor, "h a"], Float[Tensor, " h"]]:
        """Actions t..t+H-1, the tail padded with the last action, and the mask of real steps."""
        idx = torch.arange(t, t + horizon)
        mask = (idx < self.n_frames).float()
        return self.actions[idx.clamp_max(self.n_frames - 1)], mask


def load_latent_episodes(
    episodes: Sequence[TrainEpisode], cache: LatentCache, state_key: str = "observation.state", action_key: str = "action"
) -> list[LatentEpisode]:
    out = []
    for ep in episodes:
        latents = NormedLatents(cache.open(ep.meta))
        out.append(LatentEpisode(ep, latents, torch.tensor(ep.array(state_key)), torch.tensor(ep.array(action_key))))
    return out


@dataclass(frozen=True)
class Windows:
    """Every (episode, start frame) whose `steps` chunks of `horizon` actions lie inside the episode."""

    episodes: Sequence[LatentEpisode]
    horizon: int
    steps: int

    def __post_init__(self) -> None:
        span = self.horizon * self.steps
        starts = [(i, t) for i, e in enumerate(self.episodes) for t in range(e.n_frames - span)]
        if not starts:
            raise ValueError(f"no episode is longer than {span} frames ({self.steps} chunks of {self.horizon})")
        object.__setattr__(self, "starts", np.asarray(starts, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.starts)

    def batch(
        self, index: Sequence[int], norm: Normaliser
    ) -> tuple[Float[Tensor, "b k1 n d"], Float[Tensor, "b k h a"], Float[Tensor, "b k s"]]:
        """Latents at steps 0..K (K+1 of them), the K normalised chunks and the states at steps 0..K-1."""
        z, a, s = [], [], []
        h, k = self.horizon, self.steps
        for j in index:
            i, t = self.starts[j]
            e = self.episodes[i]
            frames = t + h * np.arange(k + 1)
            z.append(e.latents[frames])
            a.append(e.actions[t : t + h * k].reshape(k, h, -1))
            s.append(e.states[torch.from_numpy(frames[:-1])])
        return torch.stack(z), norm.action(torch.stack(a)), norm.state(torch.stack(s))
