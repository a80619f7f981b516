"""Where each frame of a video file is: its presentation time and the keyframe it decodes from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from atomvla.curate.errors import SourceError


@dataclass(frozen=True)
class VideoIndex:
    """The frames of one video stream in presentation order ("file index" = position here).

    Built by demuxing (no decoding), so it costs milliseconds even for long files, and it sees
    what is really in the file: a truncated video simply has fewer frames.
    """

    path: str
    time_base: Fraction
    pts: np.ndarray  # (n,) int64, sorted
    keyframes: np.ndarray  # (n_key,) int64, file indices of keyframes, sorted

    @classmethod
    def build(cls, container: av.container.InputContainer, path: str | Path) -> VideoIndex:
        stream = container.streams.video[0]
        pts: list[int] = []
        is_key: list[bool] = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:  # the flush packet has neither
                    pts.append(packet.pts)
                    is_key.append(packet.is_keyframe)
        except av.FFmpegError as exc:
            raise SourceError(path, f"video is unreadable after {len(pts)} frames: {exc}") from exc
        container.seek(0, stream=stream)
        if not pts:
            raise SourceError(path, "video stream has no frames")
        order = np.argsort(pts, kind="stable")
        sorted_pts = np.asarray(pts, dtype=np.int64)[order]
        keyframes = np.flatnonzero(np.asarray(is_key)[order]).astype(np.int64)
        if keyframes.size == 0 or keyframes[0] != 0:
            # A stream must start decodable; without a leading keyframe frame 0 has no reference.
            raise SourceError(path, "video stream does not start with a keyframe")
        return cls(path=str(path), time_base=stream.time_base, pts=sorted_pts, keyframes=keyframes)

    def __len__(self) -> int:
        return len(self.pts)

    @cached_property
    def times_s(self) -> np.ndarray:
        """(n,) float64 presentation time of each frame, in seconds."""
        return self.pts.astype(np.float64) * float(self.time_base)

    @cached_property
    def index_of_pts(self) -> dict[int, int]:
        """pts -> file index, for the frames a decoder hands back."""
        return {int(p): i for i, p in enumerate(self.pts)}

    def keyframe_before(self, index: int) -> int:
        """File index of the keyframe that `index` decodes from."""
        return int(self.keyframes[np.searchsorted(self.keyframes, index, side="right") - 1])

    def locate(self, times_s: np.ndarray, tolerance_s: float) -> np.ndarray:
        """File index of the frame nearest each time; -1 where none lies within `tolerance_s`."""
        frame_times = self.times_s
        last = len(frame_times) - 1
        right = np.searchsorted(frame_times, times_s).clip(0, last)
        left = (right - 1).clip(0, last)
        nearest = np.where(
            np.abs(frame_times[left] - times_s) <= np.abs(frame_times[right] - times_s), left, right
        )
        return np.where(np.abs(frame_times[nearest] - times_s) <= tolerance_s, nearest, -1)

    def time_of(self, index: int) -> float:
        return float(self.pts[index] * self.time_base)
