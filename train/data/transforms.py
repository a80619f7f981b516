"""One chain of data transforms, run the same way by the training dataset and by `load_policy` (openpi's
structure): the inputs chain turns a repacked `Sample` (from a dataset frame or a robot's observation)
into what the model's processor tokenises, and the outputs chain turns the model's action chunk back
into the robot's units.

inputs:  delta actions -> normalise (statistics stored in the checkpoint) -> pad state/action dims ->
         resize (with pad) -> [training: camera dropout, image augmentation] -> the model's processor
outputs: unpad -> unnormalise -> absolute actions

Random transforms draw from a generator the caller seeds per sample and epoch, so a resumed run sees the
same augmentations as the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8

from atomvla.train.config import DataConfig
from atomvla.train.data.normalize import Stats

if TYPE_CHECKING:  # samples.py builds its dataset with this chain
    from atomvla.train.data.samples import Sample


class Transform(Protocol):
    def __call__(self, s: Sample, generator: torch.Generator | None) -> Sample: ...


@dataclass(frozen=True)
class DeltaActions:
    """Actions of `dims` relative to the current state of the same dims (the outputs chain adds it back)."""

    dims: tuple[int, ...]

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        actions = s.actions.copy()
        actions[:, self.dims] -= s.state[list(self.dims)]
        return dataclasses.replace(s, actions=actions)


@dataclass(frozen=True)
class Normalize:
    stats: Stats

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        return dataclasses.replace(s, state=self.stats.state.normalize(s.state).astype(np.float32),
                                   actions=self.stats.action.normalize(s.actions).astype(np.float32))


@dataclass(frozen=True)
class PadDims:
    """Zero-pad state and actions to fixed widths, so robots with different layouts share one model."""

    state_dim: int
    action_dim: int

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        return dataclasses.replace(s, state=_pad(s.state, self.state_dim), actions=_pad(s.actions, self.action_dim))


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])]) if width > x.shape[-1] else x


@dataclass(frozen=True)
class ResizeImages:
    """Every camera to `size`²: scaled to fit and padded with black (`pad`, openpi's resize_with_pad),
    or stretched."""

    size: int
    pad: bool

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        return dataclasses.replace(s, images=resize_images(s.images, self.size, self.pad))


def resize_images(images: UInt8[np.ndarray, "cam h w 3"], size: int, pad: bool) -> UInt8[np.ndarray, "cam s s 3"]:
    cam, h, w, _ = images.shape
    if (h, w) == (size, size):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    th, tw = (size, size)
    if pad:
        scale = size / max(h, w)
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    x = F.interpolate(x, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    out = torch.zeros(cam, 3, size, size)
    top, left = (size - th) // 2, (size - tw) // 2
    out[:, :, top : top + th, left : left + tw] = x
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class DropCameras:
    """Training only: each camera masked out (black, `image_mask` False) with probability `p`; one stays."""

    p: float

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        keep = torch.rand(len(s.images), generator=generator) >= self.p
        if not keep.any():
            keep[torch.randint(len(s.images), (1,), generator=generator)] = True
        return mask_cameras(s, keep.numpy() & s.image_mask)


def mask_cameras(s: Sample, visible: np.ndarray) -> Sample:
    images = s.images.copy()
    images[~visible] = 0
    return dataclasses.replace(s, images=images, image_mask=visible.astype(bool))


@dataclass(frozen=True)
class AugmentImages:
    """Training only, openpi's augmentation in torch: a random 95% crop with a rotation of up to ±5°,
    then brightness (±30%), contrast (±40%) and saturation (±50%) jitter."""

    crop: float = 0.95
    degrees: float = 5.0
    brightness: float = 0.3
    contrast: float = 0.4
    saturation: float = 0.5

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        return dataclasses.replace(s, images=self.augment(s.images, generator))

    def augment(self, images: UInt8[np.ndarray, "cam h w 3"], g: torch.Generator | None) -> UInt8[np.ndarray, "cam h w 3"]:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        n = x.shape[0]
        u = lambda: torch.rand(n, generator=g) * 2 - 1  # noqa: E731  uniform in [-1, 1] per camera
        angle = u() * math.radians(self.degrees)
        shift = (1 - self.crop) * torch.stack([u(), u()], -1)  # the crop window's centre, in [-1, 1] units
        cos, sin = angle.cos() * self.crop, angle.sin() * self.crop
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], -1), torch.stack([sin, cos, shift[:, 1]], -1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = x * (1 + self.brightness * u())[:, None, None, None]
        gray = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        x = gray.mean((2, 3), keepdim=True) + (x - gray.mean((2, 3), keepdim=True)) * (1 + self.contrast * u())[:, None, None, None]
        gray = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        x = gray + (x - gray) * (1 + self.saturation * u())[:, None, None, None]
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class Chain:
    """Transforms run in order; the per-sample generator is shared by the random ones."""

    transforms: tuple[Transform, ...]

    def __call__(self, s: Sample, generator: torch.Generator | None = None) -> Sample:
        for t in self.transforms:
            s = t(s, generator)
        return s


def input_chain(config: DataConfig, stats: Stats, train: bool = False) -> Chain:
    """The inputs chain of a dataset or policy with `config` and `stats`; `train` adds the random transforms."""
    steps: list[Transform] = []
    if config.delta_action_dims:
        steps.append(DeltaActions(config.delta_action_dims))
    steps += [Normalize(stats), PadDims(config.max_state_dim, config.max_action_dim),
              ResizeImages(config.image_size, config.resize == "pad")]
    if train and config.camera_dropout > 0:
        steps.append(DropCameras(config.camera_dropout))
    if train and config.augment:
        steps.append(AugmentImages())
    return Chain(tuple(steps))


@dataclass(frozen=True)
class ActionOutputs:
    """The outputs chain: the model's (normalised, padded, maybe relative) chunks back to the robot's actions.
    Works on numpy arrays and on torch tensors alike (GRPO scores chunks on the device)."""

    stats: Stats
    delta_action_dims: tuple[int, ...]

    @classmethod
    def of(cls, config: DataConfig, stats: Stats) -> ActionOutputs:
        return cls(stats, config.delta_action_dims)

    def __call__(self, actions: Float[np.ndarray, "b h A"], state: Float[np.ndarray, "b S"]) -> Float[np.ndarray, "b h a"]:
        """`actions` as the model samples them; `state` the raw (un-normalised, unpadded) state they start from."""
        a, s = self.stats.action, self.stats.state
        actions = actions[..., : len(a.names)] * _like(actions, a.std) + _like(actions, a.mean)
        if self.delta_action_dims:
            dims = list(self.delta_action_dims)
            actions[..., dims] += state[..., None, dims]
        return actions


def _like(x, values: Sequence[float]):
    return torch.tensor(values, dtype=x.dtype, device=x.device) if torch.is_tensor(x) else np.asarray(values, np.float32)
