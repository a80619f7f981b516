"""An episode's MP4 (H.264 through PyAV): the cameras side by side, twice their size, under a banner
that names the subtask the policy announced for the chunk being executed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw, ImageFont

BANNER = 24  # pixels above the frame for the caption
SCALE = 2  # 128-pixel cameras are too small to watch


class EpisodeVideo:
    """Written to `path` + `.part` and renamed on `close()`, so a file named `path` is complete."""

    def __init__(self, path: Path, fps: int):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._part = self.path.with_name(self.path.name + ".part")
        self._container = av.open(str(self._part), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "23", "preset": "veryfast"}
        self._font = ImageFont.load_default(size=13)
        self._started = False

    def add(self, cameras: list[UInt8[np.ndarray, "h w 3"]], caption: str) -> None:
        import av

        frame = np.concatenate(cameras, axis=1).repeat(SCALE, 0).repeat(SCALE, 1)
        h, w = frame.shape[:2]
        h, w = h + h % 2, w + w % 2  # yuv420p needs even sides
        canvas = Image.new("RGB", (w, h + BANNER))
        canvas.paste(Image.fromarray(frame), (0, BANNER))
        ImageDraw.Draw(canvas).text((4, 4), caption, fill=(255, 255, 255), font=self._font)
        if not self._started:
            self._stream.width, self._stream.height = canvas.size
            self._started = True
        for packet in self._stream.encode(av.VideoFrame.from_image(canvas)):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._part.rename(self.path)

    def discard(self) -> None:
        self._container.close()
        self._part.unlink(missing_ok=True)
