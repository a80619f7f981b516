"""Frozen V-JEPA 2 latents of every frame, encoded once and cached per episode on disk.

A cache folder holds `manifest.json` (the encoder and preprocessing it was built with, and their
hash: the cache key) and one safetensors file per episode. Each episode file also records the
key and a fingerprint of the frames it was encoded from (episode id, length, camera, video file
size and mtime). Opening a folder built with another encoder or preprocessing, or reading an
episode whose source changed since it was encoded, raises `LatentCacheError`: a cache is never
used silently for data it does not describe.

Each frame is encoded on its own, repeated to fill one tubelet (as V-JEPA 2-AC does), giving
(patches, hidden) latents per frame. Training reads them through `LatentCache.open`: a memory map
of the file's tensor, opened per read and copying only the frames asked for, so a process's memory
stays bounded whatever the size of the cache (ViT-L latents are ~1 MiB a frame in fp32).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from safetensors.torch import load_file, save_file
from torch import Tensor

from atomvla.errors import UserError
from atomvla.schemas import EpisodeMeta

FORMAT_VERSION = 1
DEFAULT_ENCODER = "facebook/vjepa2-vitl-fpc64-256"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# VJEPA2VideoProcessor resizes the short side to crop * 256 / 224, then centre-crops.
RESIZE_RATIO = 256 / 224


class LatentCacheError(UserError):
    """A latent cache cannot be used for this encoder or these episodes."""


@dataclass(frozen=True)
class EncoderSpec:
    """Which frozen encoder, and how frames are prepared for it: together they key the cache.

    `name` is a Hub id or local path of a V-JEPA 2 checkpoint; with `random_init` the encoder is
    built from `config` (VJEPA2Config fields) with weights drawn from `seed` instead (tests, CPU).
    """

    name: str = DEFAULT_ENCODER
    random_init: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    camera: str | None = None  # first camera when None
    storage_dtype: str = "float16"
    batch_frames: int = 32

    def model_config(self) -> dict[str, Any]:
        from transformers import VJEPA2Config

        if self.random_init:
            return VJEPA2Config(**dict(self.config)).to_dict()
        try:
            return VJEPA2Config.from_pretrained(self.name, **dict(self.config)).to_dict()
        except OSError as exc:  # not a folder, not in the Hub cache while offline, no such repo
            raise LatentCacheError(f"{self.name}: cannot load the V-JEPA 2 encoder's config ({exc})") from exc

    def preprocessing(self, model_config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "crop_size": int(model_config["crop_size"]),
            "resize": f"bilinear-antialias short side x{RESIZE_RATIO:.6f}, centre crop",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "tubelet": f"frame repeated x{int(model_config['tubelet_size'])}",
            "camera": self.camera,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that changes the latents; its hash is the cache key."""
        cfg = self.model_config()
        ignored = {"transformers_version", "_commit_hash", "dtype", "torch_dtype", "id2label", "label2id"}
        cfg = {k: v for k, v in cfg.items() if k not in ignored}
        identity = {
            "format_version": FORMAT_VERSION,
            "encoder": self.name,
            "weights": f"random seed {self.seed}" if self.random_init else "pretrained",
            "model_config": cfg,
            "preprocessing": self.preprocessing(cfg),
            "storage_dtype": self.storage_dtype,
        }
        return json.loads(json.dumps(identity, sort_keys=True))  # as a manifest reads back: lists, str keys

    def key(self) -> str:
        return identity_key(self.identity())


def identity_key(identity: Mapping[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FrameEncoder:
    """The frozen encoder plus its preprocessing: uint8 frames in, per-frame patch latents out."""

    def __init__(self, spec: EncoderSpec, device: str | torch.device = "cpu"):
        from transformers import VJEPA2Config, VJEPA2Model

        self.spec = spec
        self.device = torch.device(device)
        if spec.random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                model = VJEPA2Model(VJEPA2Config(**dict(spec.config)))
        else:
            model = VJEPA2Model.from_pretrained(spec.name, **dict(spec.config))
        self.model = model.eval().requires_grad_(False).to(self.device)
        cfg = self.model.config
        self.crop = int(cfg.crop_size)
        self.tubelet = int(cfg.tubelet_size)
        self.n_patches = (self.crop // int(cfg.patch_size)) ** 2
        self.hidden = int(cfg.hidden_size)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: UInt8[np.ndarray, "k h w 3"]) -> Float[Tensor, "k 3 crop crop"]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        short = round(self.crop * RESIZE_RATIO)
        size = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        x = x[..., top : top + self.crop, left : left + self.crop]
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def encode(self, frames: UInt8[np.ndarray, "k h w 3"]) -> Float[Tensor, "k patches hidden"]:
        x = self.preprocess(frames)
        clips = x.unsqueeze(1).expand(-1, self.tubelet, -1, -1, -1)  # (k, tubelet, 3, crop, crop)
        dtype = next(self.model.parameters()).dtype
        return self.model.get_vision_features(clips.to(dtype)).float()


def _safe_name(episode_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", episode_id) + "-" + hashlib.sha1(episode_id.encode()).hexdigest()[:8]


def _camera(meta: EpisodeMeta, camera: str | None):
    cams = {c.key: c for c in meta.cameras}
    if not cams:
        raise LatentCacheError(f"{meta.source}: episode {meta.episode_id}: has no camera to encode")
    if camera is None:
        return next(iter(cams.values()))
    if camera not in cams:
        raise LatentCacheError(f"{meta.source}: episode {meta.episode_id}: no camera {camera!r} (has {', '.join(cams)})")
    return cams[camera]


def fingerprint(meta: EpisodeMeta, camera: str | None) -> dict[str, str]:
    """What the frames of an episode were read from; a change means its latents are stale."""
    ref = _camera(meta, camera)
    try:
        st = os.stat(ref.path)
        file_sig = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        file_sig = "missing"
    return {
        "episode_id": meta.episode_id,
        "n_frames": str(meta.n_frames),
        "camera": ref.key,
        "path": str(Path(ref.path).resolve()),
        "from_timestamp": f"{ref.from_timestamp:.6f}",
        "file": file_sig,
    }


class LatentCache:
    """Per-episode latents in `root`, for the encoder and preprocessing of `spec`."""

    def __init__(self, root: str | Path, spec: EncoderSpec):
        self.root = Path(root)
        self.spec = spec
        self.identity = spec.identity()
        self.key = identity_key(self.identity)
        self._encoder: FrameEncoder | None = None
        self._check_manifest()

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def _check_manifest(self) -> None:
        if not self.manifest_path.exists():
            return
        try:
            found = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LatentCacheError(f"{self.manifest_path}: unreadable latent cache manifest ({exc})") from exc
        if found.get("key") != self.key:
            diff = _describe_difference(found.get("identity", {}), self.identity)
            raise LatentCacheError(
                f"{self.root}: latent cache was built with another encoder or preprocessing "
                f"(cache key {found.get('key')}, wanted {self.key}: {diff}); use another --latents folder or delete it"
            )

    def _write_manifest(self) -> None:
        if self.manifest_path.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(self.manifest_path, json.dumps({"key": self.key, "identity": self.identity}, indent=2))

    def path(self, meta: EpisodeMeta) -> Path:
        return self.root / "episodes" / f"{_safe_name(meta.episode_id)}.safetensors"

    def encoder(self, device: str | torch.device = "cpu") -> FrameEncoder:
        if self._encoder is None:
            self._encoder = FrameEncoder(self.spec, device)
        return self._encoder

    def missing(self, episodes: Sequence[EpisodeMeta]) -> list[EpisodeMeta]:
        """Episodes with no cached latents yet; raises if a cached one is stale or foreign."""
        todo = []
        for meta in episodes:
            if self.path(meta).exists():
                self._check_episode(meta)
            else:
                todo.append(meta)
        return todo

    def build(
        self,
        episodes: Sequence[EpisodeMeta],
        device: str | torch.device = "cpu",
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Encode every episode not yet cached; returns the number of frames encoded."""
        from atomvla.curate.episode import Episode

        todo = self.missing(episodes)
        self._write_manifest()
        encoder = self.encoder(device) if todo else None
        n = 0
        for meta in todo:
            frames = Episode(meta).frames(_camera(meta, self.spec.camera).key)
            parts = []
            for start in range(0, meta.n_frames, self.spec.batch_frames):
                idx = list(range(start, min(start + self.spec.batch_frames, meta.n_frames)))
                parts.append(encoder.encode(frames.get_many(idx)).to(getattr(torch, self.spec.storage_dtype)).cpu())
                if progress:
                    progress(len(idx))
            self._save(meta, torch.cat(parts))
            n += meta.n_frames
        return n

    def _save(self, meta: EpisodeMeta, latents: Tensor) -> None:
        path = self.path(meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several ranks may encode the same episode: last rename wins
        save_file({"latents": latents.contiguous()}, str(tmp), metadata={"key": self.key, **fingerprint(meta, self.spec.camera)})
        os.replace(tmp, path)

    def _check_episode(self, meta: EpisodeMeta) -> dict[str, str]:
        from safetensors import safe_open

        path = self.path(meta)
        with safe_open(str(path), framework="pt") as f:
            stored = f.metadata() or {}
        if stored.get("key") != self.key:
            raise LatentCacheError(f"{path}: episode {meta.episode_id}: latents encoded with another encoder (key {stored.get('key')}, wanted {self.key})")
        now = fingerprint(meta, self.spec.camera)
        changed = [f"{k} {stored.get(k)!r} -> {v!r}" for k, v in now.items() if stored.get(k) != v]
        if changed:
            raise LatentCacheError(
                f"{path}: episode {meta.episode_id}: cached latents are stale ({'; '.join(changed)}); delete the file or the cache folder to re-encode"
            )
        return stored

    def load(self, meta: EpisodeMeta) -> Float[Tensor, "frames patches hidden"]:
        """The episode's latents, all in memory (float32); raises if absent, stale or foreign."""
        self.open(meta)
        return load_file(str(self.path(meta)))["latents"].float()

    def open(self, meta: EpisodeMeta) -> MappedLatents:
        """The episode's latents left on disk, read frame by frame; raises if absent, stale or foreign."""
        self._check_manifest()
        path = self.path(meta)
        if not path.exists():
            raise LatentCacheError(f"{path}: episode {meta.episode_id}: no cached latents (run the latent cache build first)")
        self._check_episode(meta)
        mapped = MappedLatents.of(path)
        if mapped.shape[0] != meta.n_frames:
            raise LatentCacheError(f"{path}: episode {meta.episode_id}: {mapped.shape[0]} latent frames for {meta.n_frames} frames")
        return mapped


# safetensors dtype names -> (numpy dtype of the stored bits, torch dtype they are)
_DTYPES = {"F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16), "BF16": (np.uint16, torch.bfloat16)}


@dataclass(frozen=True)
class MappedLatents:
    """One episode's cached latents, left on disk: indexing reads those frames (as float32) through a
    memory map of the safetensors file that is closed again after the read."""

    path: Path
    offset: int  # of the tensor's bytes in the file
    shape: tuple[int, ...]  # (frames, patches, hidden)
    dtype: str  # safetensors dtype name

    @classmethod
    def of(cls, path: Path, name: str = "latents") -> MappedLatents:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        entry = header[name]
        if entry["dtype"] not in _DTYPES:
            raise LatentCacheError(f"{path}: latents stored as {entry['dtype']}, not one of {', '.join(_DTYPES)}")
        return cls(Path(path), 8 + n + entry["data_offsets"][0], tuple(entry["shape"]), entry["dtype"])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> Float[Tensor, "..."]:
        if torch.is_tensor(index):
            index = index.numpy()
        np_dtype, torch_dtype = _DTYPES[self.dtype]
        mapped = np.memmap(self.path, dtype=np_dtype, mode="r", offset=self.offset, shape=self.shape)
        rows = np.array(mapped[index])  # a copy: the map is released when `mapped` goes
        del mapped
        return torch.from_numpy(rows).view(torch_dtype).float()


def build_with_progress(cache: LatentCache, episodes: Sequence[EpisodeMeta], device: str | torch.device = "cpu") -> int:
    """`cache.build` with a progress bar over the frames still to encode (none shown if all are cached)."""
    from rich.progress import Progress

    todo = cache.missing(episodes)
    if not todo:
        return 0
    with Progress(transient=True) as bar:
        task = bar.add_task(f"encoding frames ({cache.spec.name})", total=sum(m.n_frames for m in todo))
        return cache.build(todo, device=device, progress=lambda n: bar.advance(task, n))


def _describe_difference(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    diffs = []
    for k in sorted(set(found) | set(wanted)):
        a, b = found.get(k), wanted.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += [f"{k}.{s}: {a.get(s)!r} != {b.get(s)!r}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            diffs.append(f"{k}: {a!r} != {b!r}")
    return "; ".join(diffs[:3]) or "identities differ"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = [
    "DEFAULT_ENCODER", "EncoderSpec", "FrameEncoder", "LatentCache", "LatentCacheError", "MappedLatents", "build_with_progress",
    "fingerprint",
]
