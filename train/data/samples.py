"""Samples for SFT: per frame t, the cameras at t, the task and the subtask active at t, the state,
and the action chunk t..t+H-1 (padded past the episode end, with a mask saying which steps are real).

`ChunkDataset.raw` repacks a dataset frame into a `Sample` (the dataset's keys to the policy's); the
inputs chain of `atomvla.train.data.transforms` (normalise, pad, resize, augment), the same one
`load_policy` runs on an observation, makes it what the model's processor tokenises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8

from atomvla.train.config import DataConfig
from atomvla.train.data.episodes import DatasetError, TrainEpisode
from atomvla.train.data.normalize import Stats
from atomvla.train.data.transforms import input_chain


@dataclass
class Sample:
    """One repacked, normalised sample, before the model transforms."""

    images: UInt8[np.ndarray, "cam h w 3"]
    state: Float[np.ndarray, " s"]
    actions: Float[np.ndarray, "horizon a"]
    action_mask: Bool[np.ndarray, " horizon"]
    task: str
    subtask: str  # the subtask instruction active at t
    skill: str
    episode_id: str
    frame: int
    subtask_index: int
    boundary_distance: int  # frames from t to the nearest subtask boundary (large if none)
    image_mask: Bool[np.ndarray, " cam"] | None = None  # False: a missing (black) camera; None: all present

    def __post_init__(self):
        if self.image_mask is None:
            self.image_mask = np.ones(len(self.images), bool)


def cameras_of(episodes: Sequence[TrainEpisode], wanted: Sequence[str]) -> tuple[str, ...]:
    """The cameras every sample shows: `wanted`, or the first episode's; every episode must have them."""
    cams = tuple(wanted) or tuple(c.key for c in episodes[0].meta.cameras)
    if not cams:
        raise DatasetError(f"{episodes[0].meta.source}: the dataset has no camera")
    for e in episodes:
        have = {c.key for c in e.meta.cameras}
        missing = [c for c in cams if c not in have]
        if missing:
            raise DatasetError(
                f"{e.meta.source}: episode {e.meta.episode_id} has no camera {missing[0]!r} (has {', '.join(sorted(have))})"
            )
    return cams


class ChunkDataset(torch.utils.data.Dataset):
    """Every frame of every episode as a sample: repacked, through the inputs chain (`train`: with its
    random transforms), then `transform` (the model's processor).

    An index past `len` is the same sample drawn in a later epoch (`ChunkSampler` numbers its draws so):
    the random transforms are seeded by the draw, so each epoch augments differently and a resumed run
    augments as the uninterrupted one did."""

    def __init__(
        self,
        episodes: Sequence[TrainEpisode],
        config: DataConfig,
        stats: Stats,
        cameras: Sequence[str],
        transform: Callable[[Sample], Any] | None = None,
        train: bool = False,
        seed: int = 0,
    ):
        if not episodes:
            raise DatasetError("no episodes to train on")
        self.episodes = list(episodes)
        self.config = config
        self.stats = stats
        self.cameras = tuple(cameras)
        self.transform = transform
        self.chain = input_chain(config, stats, train)
        self.seed = seed
        for e in self.episodes:
            stats.check(e)
        # State and actions are small: load them once; frames are decoded per sample.
        self._state = [e.array(stats.state_key) for e in self.episodes]
        self._action = [e.array(stats.action_key) for e in self.episodes]
        lengths = np.array([e.meta.n_frames for e in self.episodes])
        self._starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(episode position, frame) of sample i."""
        ep = int(np.searchsorted(self._starts, i % len(self), side="right")) - 1
        return ep, i % len(self) - int(self._starts[ep])

    def raw(self, i: int) -> Sample:
        """Sample i repacked, in the dataset's units (before the inputs chain)."""
        ep, t = self.locate(i)
        e = self.episodes[ep]
        h, n = self.config.horizon, e.meta.n_frames
        actions = np.zeros((h, self._action[ep].shape[1]), np.float32)
        real = min(h, n - t)
        actions[:real] = self._action[ep][t : t + real]
        k = e.subtask_at(t)
        sub = e.subtasks[k]
        return Sample(
            images=np.stack([e.episode.frames(c).get(t) for c in self.cameras]),
            state=self._state[ep][t],
            actions=actions,
            action_mask=np.arange(h) < real,
            task=e.meta.task,
            subtask=sub.instruction,
            skill=sub.skill,
            episode_id=e.meta.episode_id,
            frame=t,
            subtask_index=k,
            boundary_distance=min((abs(t - b) for b in e.boundaries), default=n),
        )

    def sample(self, i: int) -> Sample:
        """Sample i (draw i // len of it) through the inputs chain."""
        s = self.raw(i)
        out = self.chain(s, torch.Generator().manual_seed(self.seed * 1_000_003 + i))
        out.actions[~s.action_mask] = 0  # the steps past the episode end stay zero (they carry no loss)
        return out

    def __getitem__(self, i: int) -> Any:
        s = self.sample(i)
        return self.transform(s) if self.transform else s


class ChunkSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of sample indices for one rank: a seeded permutation per epoch, each global batch
    split across ranks; starts at global step `start`, so a resumed run sees exactly the batches
    the interrupted one would have seen next."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        self.n, self.batch_size, self.seed, self.rank, self.world, self.start = n, batch_size, seed, rank, world, start
        self.steps_per_epoch = n // (batch_size * world)
        if self.steps_per_epoch == 0:
            raise DatasetError(f"{n} samples are fewer than one global batch ({batch_size} x {world} processes)")

    def __iter__(self):
        step = self.start
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            g = self.batch_size * self.world
            batch = perm[pos * g : (pos + 1) * g]
            # Numbered draws (epoch·n + index): `ChunkDataset` seeds a draw's augmentation from it.
            yield (batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size] + epoch * self.n).tolist()
            step += 1
