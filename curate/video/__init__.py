"""Frame access for every area: one camera of one episode as `EpisodeFrames`.

PyAV decodes everything (AV1, H.264, ...); decord, where it can read the file (probed once per
file), serves batches. Open decoders and decoded frames are cached process-wide, so a UI that
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
# Batches (get_many, sample) on long-GOP H.264: decord's get_batch beat a PyAV forward pass in
# every run (5.3-6.1x vs 4.4-4.9x faster than naive seeks) and decodes outside the GIL. Single
# frames stay on PyAV, whose frame cache serves scrubbing (decord re-decodes the GOP on every
# backward step); iteration stays on PyAV (decord's frames/s was 0.5-1.1x PyAV's).
DECORD_FOR_BATCHES = True
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
