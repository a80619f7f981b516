"""What a run will cost before it starts (`atom-annotate run --dry-run`, and `--max-cost`'s reservation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atomvla.annotate.backends.base import Backend
from atomvla.annotate.client.pricing import cost_usd
from atomvla.curate.episode import Episode
from atomvla.schemas import EpisodeMeta

# Episodes whose requests are counted; the rest are extrapolated from their mean.
SAMPLE = 50


@dataclass(frozen=True)
class Estimate:
    episodes: int
    sampled: int
    input_tokens_per_episode: float
    output_tokens_per_episode: float
    usd_per_episode: float
    batch_usd_per_episode: float

    @property
    def usd(self) -> float:
        return self.episodes * self.usd_per_episode

    @property
    def batch_usd(self) -> float:
        return self.episodes * self.batch_usd_per_episode


def estimate(backend: Backend, episodes: Sequence[EpisodeMeta], sample: int = SAMPLE) -> Estimate:
    """Tokens and dollars for `episodes`, counted on up to `sample` of them spread over the list.

    A backend without `estimate_tokens` (no paid model) costs nothing.
    """
    count = getattr(backend, "estimate_tokens", None)
    if count is None or not episodes:
        return Estimate(len(episodes), 0, 0.0, 0.0, 0.0, 0.0)
    picks = sorted(set(np.linspace(0, len(episodes) - 1, min(sample, len(episodes))).round().astype(int).tolist()))
    tokens = np.array([count(Episode(episodes[i])) for i in picks], dtype=float)  # (k, 2): input, output
    tin, tout = tokens.mean(axis=0)
    model = getattr(backend, "model", backend.name)
    return Estimate(
        episodes=len(episodes),
        sampled=len(picks),
        input_tokens_per_episode=float(tin),
        output_tokens_per_episode=float(tout),
        usd_per_episode=cost_usd(model, round(tin), round(tout)),
        batch_usd_per_episode=cost_usd(model, round(tin), round(tout), batch=True),
    )
