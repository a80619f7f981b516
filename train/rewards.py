"""GRPO rewards from the latent world model: subgoal energy, final-goal energy, expert deviation.

For a state (frame t of an episode) and candidate chunks, the world model predicts the latents over
a horizon of H chunks (`rewards.horizon`, default 1): the candidate chunk, then the expert's next
H-1 chunks from the recorded states, rolled out autoregressively, so a candidate is also scored on
where it leaves the robot for what follows. Energies are mean absolute distances in the
layer-normed latent space (V-JEPA 2-AC's planning energy), averaged over the H predicted latents, to
the boundary frame that ends the current subtask (subgoal) and to the episode's last frame (final goal); the deviation is the mean squared difference from the expert
chunk in normalised action units over the chunk's real steps. Rewards are the negatives, each
weighted in the config (weight 0 switches a term off) and each reported on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from atomvla.errors import UserError
from atomvla.train.worldmodel.data import LatentEpisode
from atomvla.train.worldmodel.world_model import WorldModel

TERMS = ("subgoal", "final", "deviation")


class RewardError(UserError, ValueError):
    """A state the rewards cannot be computed for (no subtasks, frame outside the episode)."""


@dataclass(frozen=True)
class RewardConfig:
    subgoal: float = 1.0
    final: float = 1.0
    deviation: float = 0.1
    horizon: int = 1  # H: chunks the world model rolls out per candidate (at most its training steps + 1)

    def weights(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in TERMS}


@dataclass(frozen=True)
class States:
    """A batch of states to score chunks from: latents now, at the subgoal, at the end; the expert chunk."""

    latent: Float[Tensor, "b n d"]
    state: Float[Tensor, "b s"]
    subgoal: Float[Tensor, "b n d"]
    final: Float[Tensor, "b n d"]
    expert: Float[Tensor, "b h a"]
    mask: Float[Tensor, "b h"]
    # the expert's chunks and states after the candidate's, for a horizon of H > 1 chunks
    next_chunks: Float[Tensor, "b k h a"] | None = None
    next_states: Float[Tensor, "b k s"] | None = None

    @classmethod
    def gather(cls, picks: Sequence[tuple[LatentEpisode, int]], horizon: int, chunks: int = 1) -> States:
        rows = [_state(ep, t, horizon) + (_next(ep, t, horizon, chunks) if chunks > 1 else ()) for ep, t in picks]
        return cls(*(torch.stack(col) for col in zip(*rows)))

    def to(self, device: torch.device | str) -> States:
        return States(*(None if (v := getattr(self, f)) is None else v.to(device) for f in self.__dataclass_fields__))


def _state(ep: LatentEpisode, t: int, horizon: int) -> tuple[Tensor, ...]:
    meta = ep.source.meta
    if not ep.source.subtasks:
        raise RewardError(f"{meta.source}: episode {meta.episode_id}: no subtasks, so no subgoal to reward progress to")
    if not 0 <= t < ep.n_frames:
        raise RewardError(f"{meta.source}: episode {meta.episode_id}: frame {t} is outside [0, {ep.n_frames})")
    try:
        goal = ep.subgoal_frame(t)
    except IndexError as exc:
        raise RewardError(f"{meta.source}: episode {meta.episode_id}: the subtasks do not cover frame {t}") from exc
    expert, mask = ep.chunk(t, horizon)
    return ep.latents[t], ep.states[t], ep.latents[goal], ep.latents[-1], expert, mask


def _next(ep: LatentEpisode, t: int, horizon: int, chunks: int) -> tuple[Tensor, Tensor]:
    """The expert's chunks 1..H-1 after frame t and the states they start from (held at the episode's end)."""
    starts = [min(t + k * horizon, ep.n_frames - 1) for k in range(1, chunks)]
    return torch.stack([ep.chunk(s, horizon)[0] for s in starts]), ep.states[starts]


@torch.no_grad()
def score(wm: WorldModel, states: States, chunks: Float[Tensor, "b g h a"], config: RewardConfig) -> dict[str, Tensor]:
    """Per candidate (b, g): each term's reward (unweighted) and `total`, the weighted sum."""
    b, g = chunks.shape[:2]

    def per_candidate(x: Tensor) -> Tensor:
        return x.unsqueeze(1).expand(b, g, *x.shape[1:]).reshape(b * g, *x.shape[1:])

    first = chunks.reshape(b * g, 1, *chunks.shape[2:])
    if config.horizon > 1:
        if states.next_chunks is None or states.next_chunks.shape[1] != config.horizon - 1:
            raise RewardError(f"rewards.horizon={config.horizon}: the states hold no expert chunks after the first "
                              "(gather them with chunks=rewards.horizon)")
        if config.horizon > wm.predictor.max_steps:
            raise RewardError(f"rewards.horizon={config.horizon}: the world model rolls out at most "
                              f"{wm.predictor.max_steps} chunks (its predictor.steps + 1)")
        plan = torch.cat([first, per_candidate(states.next_chunks)], 1)
        state_seq = torch.cat([per_candidate(states.state)[:, None], per_candidate(states.next_states)], 1)
    else:
        plan, state_seq = first, per_candidate(states.state)[:, None]
    pred = wm.rollout(per_candidate(states.latent), state_seq, plan)  # (b*g, H, n, d)

    def energy(goal: Tensor) -> Tensor:
        return -(pred - per_candidate(goal)[:, None]).abs().mean((1, 2, 3)).view(b, g)

    terms = {"subgoal": energy(states.subgoal), "final": energy(states.final)}
    diff = (wm.norm.action(chunks) - wm.norm.action(states.expert).unsqueeze(1)).pow(2).mean(-1)  # (b, g, h)
    mask = states.mask.unsqueeze(1)
    terms["deviation"] = -(diff * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
    weights = config.weights()
    terms["total"] = sum(weights[k] * terms[k] for k in TERMS)
    return terms
