"""`uvd`: subtasks from frame embeddings alone (Universal Visual Decomposer, Zhang et al. 2023).

Frames sampled from the episode are embedded by a vision encoder. Walking back from the goal (the
last frame), the distance of each earlier frame's embedding to the current subgoal grows the
further back one goes, as long as those frames work towards that subgoal; where the smoothed
distance stops growing (UVD: a local maximum; here also where it flattens, `plateau`: the approach
to the subgoal starts there) is a cut, and its frame is the next subgoal. Cuts closer than
`min_interval_s` to the subgoal or to the start are passed over. The walk stops when no cut is left.

The instruction's plan (`annotate.instructions`) fixes how many subtasks there are (setting
`count`) and names them; the embeddings fix where. The encoder is any transformers vision model
(by Hub id or local path, through AutoImageProcessor / AutoModel), or `pixels`: downsampled,
normalised pixels, which need no weights.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Literal, Protocol

import numpy as np
from jaxtyping import Float, Int, UInt8
from pydantic import Field

from atomvla.annotate.backends.base import Backend, BackendConfig, BackendError, SetupError, register
from atomvla.annotate.instructions import Step, plan
from atomvla.curate.episode import Episode
from atomvla.schemas import DEFAULT_MIN_FRAMES, MAX_SUBTASKS, MIN_SUBTASKS, EpisodeMeta, Subtask

log = logging.getLogger(__name__)

PIXELS = "pixels"
BATCH = 32  # frames per encoder forward pass
# A cut needs the distance to have risen this share of its range first: a pause just before a
# subgoal (the distance flat at its minimum) is part of reaching it, not a new subtask.
RISEN = 0.5


class UVDConfig(BackendConfig):
    encoder: str = Field(
        PIXELS, description="`pixels` (no weights) or a transformers vision model: Hub id or local folder"
    )
    camera: str | None = Field(None, description="camera to embed (default: the episode's first)")
    max_frames: int = Field(128, ge=8, description="frames embedded per episode, spread evenly over it")
    pixel_size: int = Field(16, ge=2, description="pixels encoder: side of the downsampled frame")
    smooth_s: float = Field(0.125, gt=0, description="std of the Gaussian kernel that smooths the distance curve")
    min_interval_s: float = Field(0.9, gt=0, description="shortest subtask the walk cuts (UVD: 18 frames at 20 fps)")
    plateau: float = Field(
        0.3, ge=0, description="cut where the distance rises slower than this times its mean rate (0: UVD's local maximum)"
    )
    count: Literal["plan", "embedding"] = Field(
        "plan", description="plan: as many subtasks as the instruction implies; embedding: as many as the walk finds"
    )


class FrameEncoder(Protocol):
    def __call__(self, frames: UInt8[np.ndarray, "k h w 3"]) -> Float[np.ndarray, "k d"]: ...


class PixelEncoder:
    """Each frame shrunk to `size`x`size` (box filter), standardised per frame (lighting drops
    out), scaled so that distances do not grow with the number of pixels."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, frames: UInt8[np.ndarray, "k h w 3"]) -> Float[np.ndarray, "k d"]:
        from PIL import Image

        small = np.stack(
            [np.asarray(Image.fromarray(f).resize((self.size, self.size), Image.Resampling.BOX)) for f in frames]
        ).reshape(len(frames), -1).astype(np.float64)
        small -= small.mean(axis=1, keepdims=True)
        small /= small.std(axis=1, keepdims=True) + 1e-6
        return small / np.sqrt(small.shape[1])


class TransformersEncoder:
    """A transformers vision model: its image features (`get_image_features`), else its pooled
    output, else the mean of its last hidden states. bf16 on a GPU, fp32 on a CPU."""

    def __init__(self, name: str):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.processor = AutoImageProcessor.from_pretrained(name)
        self.model = AutoModel.from_pretrained(name, dtype=self.dtype).to(self.device).eval()

    def __call__(self, frames: UInt8[np.ndarray, "k h w 3"]) -> Float[np.ndarray, "k d"]:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), BATCH):
                batch = self.processor(images=list(frames[start : start + BATCH]), return_tensors="pt")
                pixels = batch["pixel_values"].to(self.device, self.dtype)
                if hasattr(self.model, "get_image_features"):
                    features = self.model.get_image_features(pixel_values=pixels)
                else:
                    features = self.model(pixel_values=pixels)
                if not isinstance(features, torch.Tensor):
                    pooled = getattr(features, "pooler_output", None)
                    features = pooled if pooled is not None else features.last_hidden_state.mean(dim=1)
                out.append(features.float().flatten(1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


_LOADING = threading.Lock()  # the runner proposes in several threads: load once, not per thread


def load_encoder(name: str, pixel_size: int) -> FrameEncoder | Exception:
    """The encoder named in the settings, loaded once per process; one that cannot be loaded is
    returned as its error, also once (every episode then fails at once, the load is not retried)."""
    with _LOADING:
        return _load(name, pixel_size)


@lru_cache(maxsize=2)
def _load(name: str, pixel_size: int) -> FrameEncoder | Exception:
    if name == PIXELS:
        return PixelEncoder(pixel_size)
    try:
        return TransformersEncoder(name)
    except (OSError, ValueError) as exc:
        return exc


def smooth(values: Float[np.ndarray, "k"], at: Int[np.ndarray, "k"], sigma: float) -> Float[np.ndarray, "k"]:
    """Gaussian kernel regression (Nadaraya-Watson) of `values` observed at frames `at`."""
    d = (at[:, None] - at[None, :]) / sigma
    w = np.exp(-0.5 * d * d)
    return (w @ values) / w.sum(axis=1)


def walk_back(
    embeddings: Float[np.ndarray, "k d"], at: Int[np.ndarray, "k"], min_interval: int, sigma: float, plateau: float
) -> list[tuple[int, float]]:
    """UVD's cuts as (frame, salience), in frame order.

    Going back from the subgoal, the cut is the first frame at least `min_interval` from it (and
    from the start) where the smoothed distance stops rising: where its rise per frame falls to
    `plateau` times the curve's mean rise per frame or below (0: a local maximum, UVD's rule).
    Salience is the rise from the subgoal to the cut as a fraction of the curve's largest value:
    how much of the way to the subgoal the segment covers.
    """
    goal = len(embeddings) - 1
    cuts: list[tuple[int, float]] = []
    while True:
        frames = at[: goal + 1]
        distance = smooth(np.linalg.norm(embeddings[: goal + 1] - embeddings[goal], axis=1), frames, sigma)
        span = distance.max() - distance[-1]
        rise = (distance[:-1] - distance[1:]) / np.maximum(np.diff(frames), 1)  # per frame, going back
        flat = (
            (rise <= plateau * span / max(int(frames[-1] - frames[0]), 1))
            & (distance[:-1] - distance[-1] >= RISEN * span)
            & (frames[-1] - frames[:-1] >= min_interval)
            & (frames[:-1] >= min_interval)
        )
        found = np.flatnonzero(flat)
        if not found.size:
            break
        cut = int(found[-1])
        top = float(distance.max()) or 1.0
        cuts.append((int(at[cut]), float((distance[cut] - distance[-1]) / top)))
        goal = cut
    return cuts[::-1]


def fit_count(cuts: list[tuple[int, float]], k: int, n_frames: int, min_frames: int) -> list[tuple[int, float]]:
    """Exactly k - 1 cuts: the most salient ones kept; missing ones halve the longest subtask
    (salience 0). Fewer when the episode is too short to halve."""
    kept = sorted(sorted(cuts, key=lambda c: -c[1])[: k - 1])
    while len(kept) < k - 1:
        edges = [0, *(f for f, _ in kept), n_frames]
        start, end = max(zip(edges, edges[1:]), key=lambda se: se[1] - se[0])
        if end - start < 2 * min_frames:
            break
        kept = sorted([*kept, ((start + end) // 2, 0.0)])
    return kept


def name_segments(task: str, k: int) -> list[Step]:
    """Steps for k segments from the instruction's plan: in order when the counts agree; else the
    first steps, then the task itself for extra middle segments, and the plan's last step last."""
    steps = list(plan(task))[:MAX_SUBTASKS]
    if len(steps) == k:
        return steps
    if not steps:
        return [Step("other", task, None)] * k
    head = steps[: min(k - 1, len(steps) - 1)]
    return head + [Step("other", task, None)] * (k - 1 - len(head)) + [steps[-1]]


@register
class UVDBackend(Backend):
    """Universal Visual Decomposer over any vision encoder; named from the instruction."""

    name = "uvd"
    Config = UVDConfig

    @classmethod
    def can_handle(cls, meta: EpisodeMeta) -> bool:
        return bool(meta.cameras)

    def prepare(self) -> None:
        cfg: UVDConfig = self.config  # type: ignore[assignment]
        encoder = load_encoder(cfg.encoder, cfg.pixel_size)
        if isinstance(encoder, Exception):
            first = str(encoder).strip().splitlines()[0] if str(encoder).strip() else type(encoder).__name__
            raise SetupError(f"uvd: cannot load encoder {cfg.encoder!r} ({first}); `encoder=pixels` needs no weights")

    def segment(self, episode: Episode) -> tuple[list[Subtask], float]:
        meta = episode.meta
        cfg: UVDConfig = self.config  # type: ignore[assignment]
        if not meta.cameras:
            raise BackendError(self.name, meta, "no camera to embed")
        min_interval = max(DEFAULT_MIN_FRAMES, round(cfg.min_interval_s * meta.fps))
        if meta.n_frames < MIN_SUBTASKS * DEFAULT_MIN_FRAMES:
            raise BackendError(self.name, meta, f"{meta.n_frames} frames is too short for {MIN_SUBTASKS} subtasks")
        encoder = load_encoder(cfg.encoder, cfg.pixel_size)
        if isinstance(encoder, Exception):
            raise BackendError(self.name, meta, f"cannot load encoder {cfg.encoder!r} ({encoder}); `pixels` needs no weights")
        try:
            frames = episode.frames(cfg.camera)
        except (KeyError, ValueError) as exc:
            raise BackendError(self.name, meta, str(exc.args[0])) from exc
        at, images = frames.sample(cfg.max_frames)
        embeddings = encoder(images)
        cuts = walk_back(embeddings, np.asarray(at), min_interval, cfg.smooth_s * meta.fps, cfg.plateau)

        steps = list(plan(meta.task))
        wanted = len(steps) if cfg.count == "plan" and steps else len(cuts) + 1
        k = min(max(wanted, MIN_SUBTASKS), MAX_SUBTASKS)
        # Halving may go below the walk's interval, never below the contract's minimum.
        cuts = fit_count(cuts, k, meta.n_frames, DEFAULT_MIN_FRAMES)
        edges = [0, *(f for f, _ in cuts), meta.n_frames]
        named = name_segments(meta.task, len(edges) - 1)
        subtasks = [
            Subtask(start_frame=a, end_frame=b, instruction=s.instruction, skill=s.skill)
            for a, b, s in zip(edges, edges[1:], named)
        ]
        confidence = float(np.mean([s for _, s in cuts])) if cuts else 0.0
        log.debug("%s: uvd cuts %s", meta.episode_id, cuts)
        return subtasks, confidence
