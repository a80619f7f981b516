"""Frame access for every area: one camera of one episode as `EpisodeFrames`.

PyAV decodes everything (AV1, H.264, ...): single frames, batches and iteration (decord, the
measured alternative for batches, is off: `DECORD_FOR_BATCHES`). Open decoders and decoded frames are cached process-wide, so a UI that
scrubs or a backend that samples never reopens a file; after a jump, the GOP behind the frame is
decoded into the cache in the background, so backward scrub steps are memory hits
(`pyav_decoder.PyAVDecoder`). `clip.write_clip` cuts one episode out as its own MP4.
"""

from __future__ import annotations

from atomvla.curate.errors import SourceError
from atomvla.curate.video.frames import EpisodeFrames, HDF5Frames, VideoFrames
from atomvla.curate.video.pool import CacheInfo, DecoderPool
from atomvla.schemas import CameraRef

# Defaults measured by benchmarks/video_access.py (figures in benchmarks/README.md).
# Batches (get_many, sample: 16 frames spread over 300 of a long-GOP H.264 file, fresh decoders):
# PyAV's forward pass beat decord's get_batch in 3 of 3 runs of 2026-12-06, both reading the same
# frame sets in turn: 5.5-6.0x vs 5.0-5.5x faster than naive seeks in wall time, 6.4-6.6x vs
# 5.3-5.5x in CPU time (p50 240-267 ms vs 284-301 ms), as in the quiet run before (5.0x vs 4.7x);
# decord's earlier lead (5.3-6.1x vs 4.4-4.9x) did not hold up, and it reads no AV1. So PyAV serves
# batches too. Single frames stay on PyAV, whose frame cache serves scrubbing (decord re-decodes
# the GOP on every backward step); iteration stays on PyAV (decord's frames/s 0.5-1.1x PyAV's).
DECORD_FOR_BATCHES = False
# Decoded frames (YUV) kept for scrubbing: a 250-frame GOP of 480x360 takes 65 MB, so 256 MiB holds
# the GOPs around the current position at that size (the benchmark sweeps this).
FRAME_CACHE_BYTES = 256 << 20
MAX_OPEN_DECODERS = 16

_pool = DecoderPool(MAX_OPEN_DECODERS, FRAME_CACHE_BYTES)


def open_frames(ref: CameraRef, n_frames: int, fps: float, episode: str | None = None) -> EpisodeFrames:
    """The frames of camera `ref` for an episode of `n_frames` at `fps`; `episode` labels errors.

    Raises `SourceError` (naming file and episode) if the file is missing, unreadable, or holds
    fewer frames than the episode needs.
    """
    if ref.kind == "hdf5":
        return HDF5Frames(ref, n_frames, episode, _pool)
    return VideoFrames(ref, n_frames, fps, episode, _pool, use_decord=DECORD_FOR_BATCHES)


def configure_cache(max_open_decoders: int = MAX_OPEN_DECODERS, frame_cache_bytes: int = FRAME_CACHE_BYTES) -> None:
    """Replace the process-wide caches (e.g. a smaller frame budget on a small machine)."""
    global _pool
    _pool = DecoderPool(max_open_decoders, frame_cache_bytes)


def wait_background() -> None:
    """Return once the frames being decoded ahead in the background are in the cache."""
    _pool.wait_background()


def cache_info() -> CacheInfo:
    """Counters of the process-wide caches: how many files were opened, reused, frames hit..."""
    return _pool.info()


__all__ = ["CacheInfo", "EpisodeFrames", "SourceError", "cache_info", "configure_cache", "open_frames", "wait_background"]
