"""A folder of videos, one per episode, with optional same-stem arrays and instructions.

Arrays: `<stem>.npz` or `<stem>.parquet` with per-frame arrays named like LeRobot (`action`,
`observation.state`, ...). Instruction, first found: `tasks.json` / `instructions.json` mapping
stem -> instruction, `<stem>.txt`, a single `task.txt` for every video. Every video runs at the
folder's one frame rate (the rate most of them share).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from atomvla.curate.errors import SourceError
from atomvla.curate.sources.base import Reader, register
from atomvla.curate.sources.lerobot_meta import BOOKKEEPING, INFO, column_arrays
from atomvla.curate.sources.naming import dataset_name, folder_rate, natural_key, numbered_names
from atomvla.curate.sources.video_probe import VideoProbe, probe_video
from atomvla.schemas import CameraRef, EpisodeMeta

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")
_ARRAY_SUFFIXES = (".npz", ".parquet")
_INSTRUCTION_FILES = ("tasks.json", "instructions.json")
_CAMERA = "observation.image"  # LeRobot's key for a dataset's only camera


@register
class VideoFolderReader(Reader):
    name = "video_folder"

    @classmethod
    def detect(cls, root: Path) -> bool:
        if not root.is_dir() or (root / INFO).exists():
            return False
        return any(p.suffix.lower() in _VIDEO_SUFFIXES for p in root.iterdir())

    def scan(self) -> Iterator[EpisodeMeta | SourceError]:
        dataset = dataset_name(self.root, self.source)
        instructions = self._instructions()
        videos = sorted(
            (p for p in self.root.iterdir() if p.suffix.lower() in _VIDEO_SUFFIXES), key=lambda p: natural_key(p.name)
        )
        probes = [_probe(video, index) for index, video in enumerate(videos)]
        # One dataset has one frame rate (a LeRobot export, training); a video at another rate is a bad episode.
        rate = folder_rate(p.fps for p in probes if isinstance(p, VideoProbe))
        for index, (video, probe) in enumerate(zip(videos, probes)):
            try:
                if isinstance(probe, SourceError):
                    raise probe
                if probe.fps != rate:
                    raise SourceError(
                        video,
                        f"video runs at {probe.fps:g} fps, most of the folder's videos at {rate:g} fps: one dataset has "
                        f"one frame rate (re-encode it at {rate:g} fps, or import it from a folder of its own)",
                        index,
                    )
                yield self._meta(video, index, dataset, instructions, probe)
            except SourceError as exc:
                yield exc

    def load_arrays(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        if "arrays" not in meta.locator:
            return {}
        return _read_arrays(Path(str(meta.locator["arrays"])), meta.episode_index)

    def _instructions(self) -> dict[str, str]:
        """stem -> instruction from the first mapping file present."""
        for name in _INSTRUCTION_FILES:
            path = self.root / name
            if path.is_file():
                try:
                    mapping = json.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise SourceError(path, f"not valid JSON: {exc}") from exc
                if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                    raise SourceError(path, "must map each video's stem to its instruction string")
                return mapping
        return {}

    def _task(self, video: Path, index: int, instructions: dict[str, str]) -> str:
        task = instructions.get(video.stem)
        for path in (video.with_suffix(".txt"), self.root / "task.txt"):
            if task is None and path.is_file():
                task = path.read_text()
        if not task or not task.strip():
            where = f"{' / '.join(_INSTRUCTION_FILES)}, {video.stem}.txt or task.txt"
            raise SourceError(video, f"no instruction found (looked in {where})", index)
        return task.strip()

    def _meta(
        self, video: Path, index: int, dataset: str, instructions: dict[str, str], probe: VideoProbe
    ) -> EpisodeMeta:
        task = self._task(video, index, instructions)
        arrays_file = next((p for p in map(video.with_suffix, _ARRAY_SUFFIXES) if p.is_file()), None)
        arrays = _read_arrays(arrays_file, index) if arrays_file else {}
        for key, array in arrays.items():
            if len(array) != probe.n_frames:
                raise SourceError(
                    arrays_file, f"'{key}' has {len(array)} rows, the video has {probe.n_frames} frames", index
                )
        return self.episode_meta(
            dataset,
            index,
            fps=probe.fps,
            n_frames=probe.n_frames,
            task=task,
            cameras=(
                CameraRef(
                    key=_CAMERA,
                    kind="video",
                    path=str(video),
                    height=probe.height,
                    width=probe.width,
                    codec=probe.codec,
                ),
            ),
            feature_names={key: numbered_names(key, array.shape[1]) for key, array in arrays.items()},
            locator={"arrays": str(arrays_file)} if arrays_file else {},
        )


def _probe(video: Path, index: int) -> VideoProbe | SourceError:
    """The video's probe, or why it cannot be an episode."""
    try:
        probe = probe_video(video, index)
    except SourceError as exc:
        return exc
    if probe.n_frames <= 0:
        return SourceError(video, "video has zero frames", index)
    if probe.fps <= 0:
        return SourceError(video, "video has no frame rate", index)
    return probe


def _read_arrays(path: Path, episode: int) -> dict[str, np.ndarray]:
    """Every per-frame numeric array of an `.npz` or `.parquet` file, each (n_frames, d) float32."""
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                raw = {k: npz[k] for k in npz.files}
            bad = [k for k, a in raw.items() if not np.issubdtype(a.dtype, np.number) or a.ndim == 0]
            if bad:
                raise SourceError(path, f"not per-frame numeric arrays: {', '.join(bad)}", episode)
            return {k: a.reshape(len(a), -1).astype(np.float32) for k, a in raw.items()}
        table = pq.read_table(path)
        return column_arrays(table, [c for c in table.column_names if c not in BOOKKEEPING])
    except (OSError, ValueError) as exc:
        raise SourceError(path, f"cannot read arrays: {exc}", episode) from exc
