"""Normalisation statistics of state and actions: computed once on the training episodes, saved
with the checkpoint, and checked against any dataset the checkpoint is later used on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from atomvla.train.data.episodes import DatasetError, TrainEpisode

_EPS = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, x: Float[np.ndarray, "... d"]) -> Float[np.ndarray, "... d"]:
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def unnormalize(self, x: Float[np.ndarray, "... d"]) -> Float[np.ndarray, "... d"]:
        return x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)


@dataclass(frozen=True)
class Stats:
    """Per-dimension mean/std of the state and the action, keyed by the dataset's feature keys."""

    state_key: str
    action_key: str
    state: FeatureStats
    action: FeatureStats

    @classmethod
    def compute(cls, episodes: list[TrainEpisode], state_key: str, action_key: str,
                delta_action_dims: tuple[int, ...] = (), horizon: int = 1) -> Stats:
        """Statistics of the state, and of the actions as the model sees them: with `delta_action_dims`,
        action t+k minus the state at t over every chunk offset k < `horizon` (openpi computes its
        statistics after the delta transform too)."""
        feats = {}
        for key in (state_key, action_key):
            if key == action_key and delta_action_dims:
                x = np.concatenate([_deltas(e.array(action_key), e.array(state_key), delta_action_dims, horizon)
                                    for e in episodes]).astype(np.float64)
            else:
                x = np.concatenate([e.array(key) for e in episodes]).astype(np.float64)
            names = tuple(episodes[0].meta.feature_names.get(key) or [f"{key}_{i}" for i in range(x.shape[1])])
            std = np.maximum(x.std(0), _EPS)
            feats[key] = FeatureStats(names, tuple(x.mean(0).tolist()), tuple(std.tolist()))
        return cls(state_key, action_key, feats[state_key], feats[action_key])

    def check(self, episode: TrainEpisode) -> None:
        """Raise a DatasetError if `episode`'s features are not those the statistics describe."""
        for key, stats in ((self.state_key, self.state), (self.action_key, self.action)):
            names = episode.meta.feature_names.get(key)
            if names is None:
                raise DatasetError(
                    f"{episode.meta.source}: episode {episode.meta.episode_id} has no {key!r} feature "
                    f"(has {', '.join(sorted(episode.meta.feature_names)) or 'none'})"
                )
            if tuple(names) != stats.names:
                raise DatasetError(
                    f"{episode.meta.source}: episode {episode.meta.episode_id}: {key!r} is ({', '.join(names)}), "
                    f"the statistics were computed on ({', '.join(stats.names)}); these statistics do not "
                    "match this dataset"
                )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Stats:
        d = json.loads(path.read_text())
        feat = lambda f: FeatureStats(tuple(f["names"]), tuple(f["mean"]), tuple(f["std"]))  # noqa: E731
        return cls(d["state_key"], d["action_key"], feat(d["state"]), feat(d["action"]))


def _deltas(actions: np.ndarray, state: np.ndarray, dims: tuple[int, ...], horizon: int) -> np.ndarray:
    """Every (t, k < horizon) action t+k with `dims` relative to state t."""
    out = []
    for k in range(min(horizon, len(actions))):
        a = actions[k:].copy()
        a[:, list(dims)] -= state[: len(a), list(dims)]
        out.append(a)
    return np.concatenate(out)
