"""Frames and signals of the store's episodes, as the browser gets them: windows of JPEG data URLs.

One `FrameServer` per app: it keeps each episode's `EpisodeFrames` open, so every request goes
through the frame layer's process-wide decoder and frame caches (curate/video), and it keeps the
JPEGs it encoded, so a window asked for twice is not encoded twice. Only episodes of the store are
reachable: a request names an episode id, never a path.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.store import Store
from atomvla.curate.video import EpisodeFrames

JPEG_QUALITY = 80
MAX_SIDE = 480  # frames larger than this are scaled down for the browser (the viewer is ~400 px wide)
JPEG_CACHE_BYTES = 96 << 20
OPEN_EPISODES = 32
_ENCODERS = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="jpeg")


class _LRU:
    """A byte- or count-bounded LRU, thread-safe."""

    def __init__(self, max_cost: int):
        self.max_cost = max_cost
        self._items: OrderedDict = OrderedDict()
        self._cost = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
            return None

    def put(self, key, value, cost: int = 1) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._cost -= old[1]
            self._items[key] = (value, cost)
            self._cost += cost
            while self._cost > self.max_cost and len(self._items) > 1:
                self._cost -= self._items.popitem(last=False)[1][1]


class FrameServer:
    def __init__(self, store: Store, max_side: int = MAX_SIDE, quality: int = JPEG_QUALITY):
        self.store = store
        self.max_side = max_side
        self.quality = quality
        self._frames = _LRU(OPEN_EPISODES)  # (episode_id, camera) -> EpisodeFrames
        self._jpegs = _LRU(JPEG_CACHE_BYTES)  # (episode_id, camera, frame) -> data URL
        self._signals = _LRU(OPEN_EPISODES)  # episode_id -> {name: (n,) array}

    def cameras(self, episode_id: str) -> list[str]:
        return [c.key for c in self.store.episode(episode_id).cameras]

    def window(self, episode_id: str, first: int, last: int) -> dict[str, list[str]]:
        """{camera: data URLs of frames first..last-1} (clipped to the episode)."""
        n_frames = self.store.episode(episode_id).n_frames
        at = self.frames_at(episode_id, range(max(0, first), min(n_frames, last)))
        return {cam: list(urls.values()) for cam, urls in at.items()}

    def frames_at(self, episode_id: str, indices) -> dict[str, dict[int, str]]:
        """{camera: {frame: data URL}} for the valid frame `indices` of the episode, in order."""
        meta = self.store.episode(episode_id)  # KeyError for anything not in the store
        wanted = sorted({int(i) for i in indices if 0 <= int(i) < meta.n_frames})
        out: dict[str, dict[int, str]] = {}
        for cam in meta.cameras:
            urls = {i: self._jpegs.get((episode_id, cam.key, i)) for i in wanted}
            missing = [i for i, u in urls.items() if u is None]
            if missing:
                # One read for all of them: sorted, so a decoder goes through the file once. PIL
                # encodes outside the GIL, so the JPEGs are made in parallel.
                rgbs = self._episode_frames(episode_id, cam.key).get_many(missing)
                for i, url in zip(missing, _ENCODERS.map(self._encode, rgbs)):
                    urls[i] = url
                    self._jpegs.put((episode_id, cam.key, i), url, len(url))
            out[cam.key] = urls  # type: ignore[assignment]
        return out

    def signals(self, episode_id: str) -> dict[str, np.ndarray]:
        """The curves that explain a boundary: {"gripper": (n,), "hand speed": (n,)}, those the episode has."""
        cached = self._signals.get(episode_id)
        if cached is None:
            cached = _signals(Episode(self.store.episode(episode_id)))
            self._signals.put(episode_id, cached)
        return cached

    def _episode_frames(self, episode_id: str, camera: str) -> EpisodeFrames:
        frames = self._frames.get((episode_id, camera))
        if frames is None:
            frames = Episode(self.store.episode(episode_id)).frames(camera)
            self._frames.put((episode_id, camera), frames)
        return frames

    def _encode(self, rgb: np.ndarray) -> str:
        image = Image.fromarray(rgb)
        if max(image.size) > self.max_side:
            image.thumbnail((self.max_side, self.max_side))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=self.quality)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _signals(episode: Episode) -> dict[str, np.ndarray]:
    from atomvla.annotate.kinematics import KinematicsError, extract

    try:
        kin = extract(episode.meta, episode.arrays)
    except (KinematicsError, SourceError, KeyError, ValueError, OSError):
        return {}  # curves are an aid: an episode without named arrays is still reviewable
    out = {"hand speed": kin.speed}
    if kin.gripper is not None:
        out = {"gripper": kin.gripper, **out}
    return out
