"""decord decoding of one video file: batched reads in C++ (its bundled FFmpeg has no AV1)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from atomvla.curate.errors import SourceError
from atomvla.curate.video.index import VideoIndex

log = logging.getLogger(__name__)


class DecordDecoder:
    def __init__(self, reader, index: VideoIndex):
        self._reader = reader
        self.index = index
        self.lock = threading.Lock()  # a VideoReader keeps a decode position: one call at a time

    @classmethod
    def probe(cls, index: VideoIndex) -> DecordDecoder | None:
        """A decoder if decord can read this file frame for frame like PyAV does, else None."""
        try:
            import decord
        except ImportError:
            return None
        try:
            reader = decord.VideoReader(index.path, num_threads=0)
            starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
        except decord.DECORDError as exc:
            log.debug("decord cannot read %s, PyAV decodes it: %s", index.path, str(exc).splitlines()[0])
            return None
        # decord numbers frames from its own index: use it only if that index is the same frames.
        if len(starts) != len(index) or not np.allclose(starts, index.times_s, rtol=1e-6, atol=1e-3):
            log.debug("decord's frame index of %s differs from PyAV's, PyAV decodes it", index.path)
            return None
        return cls(reader, index)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """(k, H, W, 3) uint8 RGB frames at file `indices`, any order."""
        import decord

        try:
            with self.lock:
                return self._reader.get_batch(list(indices)).asnumpy()
        except decord.DECORDError as exc:
            raise SourceError(self.index.path, f"decord failed to decode: {str(exc).splitlines()[0]}") from exc
