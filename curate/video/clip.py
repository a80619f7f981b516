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
        if cuttable(frames):
            how = "copy"
            with PacketCopy(tmp, frames.index.path) as copy:
                copy.append(frames, fps)
        else:
            how = "encode"
            _encode(frames, fps, tmp)
        _check_frame_count(tmp, n_frames, episode)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return how


def cuttable(frames: EpisodeFrames) -> bool:
    """The episode's frames are in a video file, consecutive there, and the first is a keyframe:
    its packets can be copied out without decoding."""
    if not isinstance(frames, VideoFrames):
        return False
    files = frames.file_indices
    first = int(files[0])
    return bool(np.array_equal(files, np.arange(first, first + len(files)))) and first in set(frames.index.keyframes.tolist())


class PacketCopy:
    """An MP4 that episodes are appended to by copying their packets (no decoding, no quality
    loss): episode after episode, each starting where the previous one ended.

    The output stream copies the codec parameters of `template` (a video file); `accepts` says
    whether another file's packets fit it (same codec, size, time base and codec headers)."""

    def __init__(self, out: Path, template: str):
        self.path = Path(out)
        with av.open(template) as src:
            self._template = _stream_signature(src.streams.video[0])
            self._time_base = src.streams.video[0].time_base
            self._dst = av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"})
            self._out = self._dst.add_stream_from_template(src.streams.video[0], opaque=True)  # no encoder needed
        self._cursor = 0  # pts where the next episode starts, in the time base
        self.n_frames = 0
        self.n_bytes = 0

    def accepts(self, path: str) -> bool:
        with av.open(path) as src:
            return _stream_signature(src.streams.video[0]) == self._template

    def append(self, frames: VideoFrames, fps: float) -> float:
        """Copy the packets of the episode's frames (`cuttable`) to the end; returns the time, in
        seconds, at which its first frame is in this file."""
        index: VideoIndex = frames.index
        first = int(frames.file_indices[0])
        wanted = {int(p) for p in index.pts[first : first + len(frames)]}
        shift = self._cursor - int(index.pts[first])
        with av.open(index.path) as src:
            stream = src.streams.video[0]
            src.seek(int(index.pts[first]), stream=stream, backward=True)
            for packet in src.demux(stream):
                if packet.pts is None or packet.pts not in wanted:
                    continue
                wanted.discard(packet.pts)
                packet.pts += shift
                if packet.dts is not None:
                    packet.dts += shift
                packet.stream = self._out
                self.n_bytes += packet.size
                self._dst.mux(packet)
                if not wanted:
                    break
        if wanted:
            raise SourceError(index.path, f"{len(wanted)} frame(s) of the episode are missing from the file", frames.episode)
        start = self._cursor
        # The next episode starts one episode length later, on the time base's grid, so every
        # episode's frames sit at start + i / fps (what LeRobot's from_timestamp arithmetic expects).
        self._cursor += round(Fraction(len(frames)) / Fraction(fps).limit_denominator(1001) / self._time_base)
        self.n_frames += len(frames)
        return float(start * self._time_base)

    def close(self) -> None:
        self._dst.close()

    def __enter__(self) -> PacketCopy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stream_signature(stream: av.video.stream.VideoStream) -> tuple:
    ctx = stream.codec_context
    return (ctx.name, ctx.width, ctx.height, ctx.pix_fmt, stream.time_base, bytes(ctx.extradata or b""))


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
