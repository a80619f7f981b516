"""A byte-bounded LRU of decoded frames, shared by every open decoder.

Scrubbing backwards through a long GOP would otherwise decode the GOP from its keyframe at every
step; keeping the frames decoded on the way serves those steps from memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

import av


def frame_nbytes(frame: av.VideoFrame) -> int:
    return sum(plane.buffer_size for plane in frame.planes)


class FrameCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._frames: OrderedDict[Hashable, tuple[av.VideoFrame, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> av.VideoFrame | None:
        with self._lock:
            entry = self._frames.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._frames.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, frame: av.VideoFrame) -> None:
        size = frame_nbytes(frame)
        with self._lock:
            old = self._frames.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._frames[key] = (frame, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes and self._frames:
                self.nbytes -= self._frames.popitem(last=False)[1][1]
