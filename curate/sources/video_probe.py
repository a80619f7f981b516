"""Cheap checks on a video file at scan time: container metadata only, no decoding."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import av

from atomvla.curate.errors import SourceError
from atomvla.schemas import CameraRef

# MP4 family: a truncated download keeps a leading `moov` box intact, so PyAV opens the file and
# reports the full duration; only the top-level box sizes reveal the missing bytes.
_MP4_SUFFIXES = {".mp4", ".m4v", ".mov"}
# Boxes an MP4 or QuickTime file can start with: text or another format named .mp4 starts otherwise.
_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"sidx", b"pdin"}


@dataclass(frozen=True)
class VideoProbe:
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    codec: str


def probe_video(path: Path, episode: int | None = None) -> VideoProbe:
    """Duration, rate and size of the first video stream; SourceError if the file is unusable."""
    if not path.is_file():
        raise SourceError(path, "video file is missing", episode)
    if path.suffix.lower() in _MP4_SUFFIXES:
        problem = _mp4_truncation(path)
        if problem:
            raise SourceError(path, problem, episode)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError(path, "file has no video stream", episode)
            stream = container.streams.video[0]
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            else:  # Matroska/WebM keep the duration on the container only
                duration = (container.duration or 0) / av.time_base
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            n_frames = stream.frames or round(duration * fps)
            if path.suffix.lower() not in _MP4_SUFFIXES:
                n_frames = _counted_frames(container, path, n_frames, duration, fps, episode)
            return VideoProbe(
                duration, fps, n_frames, stream.width, stream.height, stream.codec_context.codec.canonical_name
            )
    except av.FFmpegError as exc:
        raise SourceError(path, f"video cannot be opened (truncated or corrupt?): {exc}", episode) from exc


def _counted_frames(
    container: av.container.InputContainer, path: Path, announced: int, duration_s: float, fps: float, episode: int | None
) -> int:
    """The frames a non-MP4 file holds, counted from its packets (demuxed; only the first frame is decoded).

    Matroska, WebM and AVI announce a duration or frame count in a header written before the
    frames, so a cut-off file still announces them all; its packets say what is really there.
    Containers without such a header (GIF) accept any bytes: a first frame that decodes says it is a video.
    """
    stream = container.streams.video[0]
    held, decoded = 0, False
    for packet in container.demux(stream):
        if packet.size:
            held += 1
            decoded = decoded or bool(stream.decode(packet))
    decoded = decoded or bool(stream.decode(None))  # the decoder's delay: flush what it holds
    if held < announced - 1:  # a frame of slack: durations are rounded to the container's time base
        raise SourceError(
            path,
            f"file is truncated: its header announces {announced} frames ({duration_s:.3f} s at {fps:g} fps), "
            f"it holds {held}",
            episode,
        )
    if not decoded:
        raise SourceError(path, "not a video: no frame decodes", episode)
    return held


def _mp4_truncation(path: Path) -> str | None:
    """A problem message if a top-level MP4 box runs past the end of the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            head = f.read(8)
            box_size, box_type = struct.unpack(">I4s", head)
            if not all(0x20 <= b < 0x7F for b in box_type):  # top-level box types are ASCII: ftyp, moov, mdat...
                return f"not an MP4 file (no MP4 box at byte {offset})"
            if offset == 0 and box_type not in _FIRST_BOXES:
                return f"not an MP4 file (it starts with {head.decode('latin-1')!r}, not an MP4 box such as 'ftyp')"
            if box_size == 1:  # 64-bit size follows the type
                box_size = struct.unpack(">Q", f.read(8))[0]
            elif box_size == 0:  # box runs to the end of the file
                return None
            if box_size < 8:
                return f"not a valid MP4 file (bad box size {box_size} at byte {offset})"
            if offset + box_size > size:
                name = box_type.decode("latin-1")
                return (
                    f"file is truncated: its '{name}' box ends at byte {offset + box_size}, the file has {size} bytes"
                )
            offset += box_size
    return None


def coverage_problem(probe: VideoProbe, from_s: float, n_frames: int, fps: float) -> str | None:
    """A problem message if the video ends before the episode's last frame."""
    needed = from_s + n_frames / fps
    # Half a frame of slack: container durations are rounded to their time base.
    if probe.duration_s + 0.5 / fps < needed:
        return (
            f"video is shorter than the episode: it ends at {probe.duration_s:.3f} s, "
            f"the episode's {n_frames} frames need {from_s:.3f}-{needed:.3f} s"
        )
    return None


def video_camera(
    key: str, video: Path, probe: VideoProbe, from_s: float, n_frames: int, fps: float, episode: int
) -> CameraRef:
    """The camera `key` of an episode whose frames start `from_s` into `video`, if it covers them."""
    problem = coverage_problem(probe, from_s, n_frames, fps)
    if problem:
        raise SourceError(video, problem, episode)
    return CameraRef(
        key=key, kind="video", path=str(video), from_timestamp=from_s,
        height=probe.height, width=probe.width, codec=probe.codec,
    )
