"""One episode of one camera as a standalone MP4, for tools that play a file (Label Studio, a browser).

LeRobot v3 packs many episodes into one MP4. An episode that starts on a keyframe (LeRobot's
writer starts every episode on one) is cut by copying its packets: no decoding, no quality loss,
milliseconds per episode. Anything else (an episode starting mid-GOP, frames in HDF5) is encoded
once to H.264, which every browser plays.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from atomvla.curate.errors import SourceError
from atomvla.curate.video import open_frames
from atomvla.curate.video.frames import EpisodeFrames, VideoFrames
from atomvla.curate.video.index import VideoIndex
from atomvla.schemas import CameraRef

ENCODE_CRF = "18"  # visually lossless: the clip is looked at, not trained on


def write_clip(ref: CameraRef, n_frames: int, fps: float, out: Path, episode: str | None = None) -> Literal["copy", "encode"]:
    """Write the episode's frames of camera `ref` to the MP4 `out` (complete or absent: written to
    a temporary name, then renamed). Returns how: "copy" (packets copied) or "encode"."""
    frames = open_frames(ref, n_frames, fps, episode)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if isinstance(frames, VideoFrames) and _copyable(frames):
            how = "copy"
            _copy_packets(frames, tmp)
        else:
            how = "encode"
            _encode(frames, fps, tmp)
        _check_frame_count(tmp, n_frames, episode)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def _copyable(frames: VideoFrames) -> bool:
    """The episode's frames are consecutive in the file and the first is a keyframe."""
    files = frames.file_indices
    first = int(files[0])
    return bool(np.array_equal(files, np.arange(first, first + len(files)))) and first in set(frames.index.keyframes.tolist())


def _copy_packets(frames: VideoFrames, out: Path) -> None:
    index: VideoIndex = frames.index
    first = int(frames.file_indices[0])
    wanted = {int(p) for p in index.pts[first : first + len(frames)]}
    offset = int(index.pts[first])  # the clip starts at time 0
    with av.open(index.path) as src, av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream, opaque=True)  # copy the codec, no encoder needed
        src.seek(offset, stream=in_stream, backward=True)
        for packet in src.demux(in_stream):
            if packet.pts is None or packet.pts not in wanted:
                continue
            wanted.discard(packet.pts)
            packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
            packet.stream = out_stream
            dst.mux(packet)
            if not wanted:
                break
    if wanted:
        raise SourceError(index.path, f"{len(wanted)} frame(s) of the episode are missing from the file", frames.episode)


def _encode(frames: EpisodeFrames, fps: float, out: Path) -> None:
    height, width = frames.get(0).shape[:2]
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        stream = dst.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        # yuv420p needs even sizes: an odd last row or column is dropped.
        stream.width, stream.height, stream.pix_fmt = width // 2 * 2, height // 2 * 2, "yuv420p"
        stream.options = {"crf": ENCODE_CRF, "preset": "veryfast"}
        for rgb in frames:
            img = np.ascontiguousarray(rgb[: stream.height, : stream.width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def _check_frame_count(path: Path, n_frames: int, episode: str | None) -> None:
    with av.open(str(path)) as container:
        found = len(VideoIndex.build(container, path))
    if found != n_frames:
        raise SourceError(path, f"clip has {found} frames, the episode {n_frames}", episode)
