"""PyAV decoding of one video file: random access with a decode cursor, and sequential streams."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from atomvla.curate.errors import SourceError
from atomvla.curate.video.frame_cache import FrameCache
from atomvla.curate.video.index import VideoIndex

log = logging.getLogger(__name__)

# Frames before a target kept for backward scrub steps (the review UI steps by 1 and 10).
KEEP_BEFORE = 16
# A request at most this far behind the previous one is a backward scrub step, not a jump.
SCRUB_REACH = 2 * KEEP_BEFORE
# Frames before the kept window decoded in full again after skipping non-reference frames: more
# than any B-frame reordering delay (H.264 allows 16), so every kept frame comes out.
SKIP_MARGIN = 32


def open_container(path: str | Path, frame_threads: bool) -> av.container.InputContainer:
    """`frame_threads`: several times the throughput for sequential decoding, but a pipeline of
    frames in flight that every seek must refill: random access measured faster without them
    (benchmarks/video_access.py)."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise SourceError(path, f"cannot open video (truncated or not a video?): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(path, "file has no video stream")
    if frame_threads:
        container.streams.video[0].thread_type = "AUTO"
    return container


class PyAVDecoder:
    """Random access into one file, keeping the decoder open between calls.

    A request continues decoding from where the last one stopped when the target lies ahead in the
    same GOP (forward scrubbing, sorted batches); otherwise it seeks to the target's keyframe. Only
    the last `KEEP_BEFORE` frames before a target go into the shared `FrameCache` on the way:
    holding every frame of a long GOP made a cold jump slower than a fresh decoder (each kept frame
    is a fresh buffer the decoder cannot recycle, and it evicts others). The rest of the GOP before
    a single-frame jump is decoded into the cache afterwards on the `background` thread, with its
    own container, for the backward scrub steps that usually follow; a backward step past the
    window before that is done keeps every frame from the keyframe itself. On the way to a target
    far into a GOP, frames no other frame references are not decoded at all (`_decode_to`).
    """

    def __init__(self, path: str | Path, frame_cache: FrameCache, cache_key: Hashable,
                 background: Executor | None = None):
        """`cache_key` identifies this version of the file in `frame_cache`; without `background`
        nothing is decoded ahead."""
        self.path = str(path)
        self._cache_key = cache_key
        self._container = open_container(path, frame_threads=False)
        self._stream = self._container.streams.video[0]
        self.index = VideoIndex.build(self._container, path)
        self._cache = frame_cache
        self._reformatter = VideoReformatter()
        self._frames: Iterator[av.VideoFrame] | None = None
        self._cursor = -1  # file index of the last frame `_frames` produced
        self._floor = 0  # keyframe of the last seek: frames before it are not decodable from it
        self._last = -1  # file index of the last frame requested, cached or not
        self.lock = threading.Lock()  # one request at a time: the cursor is shared state
        self._background = background
        self._fill_container: av.container.InputContainer | None = None  # the background thread's
        self._fill_generation = 0  # a newer jump makes an unfinished fill stop

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """(k, H, W, 3) uint8 RGB frames at file `indices`, any order."""
        wanted = sorted(set(indices))
        with self.lock:
            # Decoding ahead serves scrubbing (one frame at a time); batches move on elsewhere.
            decoded = {i: self._frame(i, fill_behind=len(wanted) == 1) for i in wanted}
            rgb = {i: self._to_rgb(f) for i, f in decoded.items()}
        return np.stack([rgb[i] for i in indices])

    def _frame(self, target: int, fill_behind: bool) -> av.VideoFrame:
        scrubbing_back = 0 < self._last - target <= SCRUB_REACH
        self._last = target
        cached = self._cache.get((self._cache_key, target))
        if cached is not None:
            return cached
        keyframe = self.index.keyframe_before(target)
        jump = self._frames is None or not keyframe <= self._cursor < target
        if jump:
            self._seek(keyframe)
        keep_from = keyframe if scrubbing_back else target - KEEP_BEFORE
        frame = self._decode_to(target, keep_from, skip_before=keep_from - SKIP_MARGIN)
        if frame is None and self._frames is not None:  # a skipped frame was needed after all
            self._seek(keyframe)
            frame = self._decode_to(target, keep_from, skip_before=-1)
        if frame is None:
            self._frames = None
            raise SourceError(
                self.path, f"frame at {self.index.time_of(target):.3f}s could not be decoded (file truncated?)"
            )
        if jump and fill_behind and keep_from > keyframe and self._background is not None:
            self._fill_generation += 1
            self._background.submit(self._fill, keyframe, keep_from, self._fill_generation)
        return frame

    def _decode_to(self, target: int, keep_from: int, skip_before: int) -> av.VideoFrame | None:
        """Decode on from the cursor to `target`, caching frames from `keep_from` on; None if the
        stream ended or passed the target without it. Until a frame at `skip_before` or later
        comes out, non-reference frames (most B-frames) are not decoded: no one keeps them, and
        they are a third or more of a long H.264 GOP."""
        context = self._stream.codec_context
        # Frames come out in order from here; the skipped ones are those still in flight when a frame
        # at `skip_before` or later comes out, so skipping starts only if that frame lies ahead.
        skipping = skip_before > max(self._cursor + 1, self._floor)
        context.skip_frame = "NONREF" if skipping else "DEFAULT"
        try:
            for frame in self._frames:
                i = self.index.index_of_pts.get(frame.pts, -1)
                if i < self._floor:  # leading frames of an open GOP reference the previous GOP
                    continue
                if skipping and i >= skip_before:
                    context.skip_frame = "DEFAULT"
                    skipping = False
                self._cursor = i
                if i >= keep_from:
                    self._cache.put((self._cache_key, i), frame)
                if i >= target:
                    return frame if i == target else None
        except av.FFmpegError as exc:
            self._frames = None
            raise SourceError(self.path, f"decoding failed near {self.index.time_of(target):.3f}s: {exc}") from exc
        finally:
            context.skip_frame = "DEFAULT"
        self._frames = None  # the stream ended
        return None

    def _fill(self, start: int, stop: int, generation: int) -> None:
        """Decode file frames [start, stop) into the cache (on the background thread)."""
        try:
            if self._fill_container is None:
                self._fill_container = open_container(self.path, frame_threads=False)
            stream = self._fill_container.streams.video[0]
            self._fill_container.seek(int(self.index.pts[start]), stream=stream, backward=True)
            for frame in self._fill_container.decode(stream):
                if generation != self._fill_generation:
                    return  # the user jumped elsewhere: these frames are no longer the likely next ones
                i = self.index.index_of_pts.get(frame.pts, -1)
                if i >= stop:
                    return
                if i >= start:
                    self._cache.put((self._cache_key, i), frame)
        except (av.FFmpegError, SourceError) as exc:  # the foreground reports it if it meets it
            log.debug("decoding ahead in %s stopped: %s", self.path, exc)

    def _seek(self, keyframe: int) -> None:
        self._container.seek(int(self.index.pts[keyframe]), stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._floor = keyframe
        self._cursor = -1

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # One reusable reformatter keeps its swscale context: `frame.to_ndarray` builds a new one
        # per frame, which halves sequential throughput.
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


def iter_rgb(index: VideoIndex, wanted: np.ndarray) -> Iterator[np.ndarray]:
    """(H, W, 3) RGB frames at the non-decreasing file indices `wanted` (k,), in one decoding pass.

    Opens its own container: a long iteration must not hold the shared decoder's lock nor flush
    the frame cache that scrubbing relies on.
    """
    container = open_container(index.path, frame_threads=True)
    stream = container.streams.video[0]
    reformatter = VideoReformatter()
    k = 0
    try:
        container.seek(int(index.pts[index.keyframe_before(int(wanted[0]))]), stream=stream, backward=True)
        for frame in container.decode(stream):
            i = index.index_of_pts.get(frame.pts, -1)
            if i < wanted[k]:
                continue
            if i > wanted[k]:
                break
            rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
            while k < len(wanted) and wanted[k] == i:
                yield rgb
                k += 1
            if k == len(wanted):
                return
    except av.FFmpegError as exc:
        raise SourceError(index.path, f"decoding failed near {index.time_of(int(wanted[k])):.3f}s: {exc}") from exc
    finally:
        container.close()
    raise SourceError(
        index.path, f"frame at {index.time_of(int(wanted[k])):.3f}s could not be decoded (file truncated?)"
    )
