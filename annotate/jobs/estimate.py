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

    Each paid model is counted at its price: the backend's, or a hybrid's parts'. A backend
    without `estimate_tokens` (no paid model) costs nothing.
    """
    parts = {id(p): p for p in getattr(backend, "parts", (backend,))}.values()  # a hybrid may use one part twice
    paid = [p for p in parts if hasattr(p, "estimate_tokens")]
    if not paid or not episodes:
        return Estimate(len(episodes), 0, 0.0, 0.0, 0.0, 0.0)
    picks = sorted(set(np.linspace(0, len(episodes) - 1, min(sample, len(episodes))).round().astype(int).tolist()))
    sampled = [Episode(episodes[i]) for i in picks]
    tin = tout = usd = batch_usd = 0.0
    for part in paid:
        tokens = np.array([part.estimate_tokens(e) for e in sampled], dtype=float)  # (k, 2): input, output
        part_in, part_out = tokens.mean(axis=0)
        tin, tout = tin + part_in, tout + part_out
        usd += cost_usd(part.model, round(part_in), round(part_out))
        batch_usd += cost_usd(part.model, round(part_in), round(part_out), batch=True)
    return Estimate(len(episodes), len(picks), float(tin), float(tout), usd, batch_usd)
