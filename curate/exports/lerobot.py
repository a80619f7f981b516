"""`export --to lerobot`: the selected episodes as a LeRobot v3.0 dataset carrying their subtasks.

Subtasks are written three ways, for three kinds of reader:
- LeRobot's per-frame language columns (`lerobot/datasets/language.py`): every frame's
  `language_persistent` lists the episode's subtask rows (`role="assistant"`, `style="subtask"`,
  `timestamp` = the subtask's first frame time), which `active_at(t, style=subtask)` resolves;
  `language_events` is empty;
- the older per-frame `subtask_index` (int64) with `meta/subtasks.parquet` (subtask text as the
  index, `subtask_index` column), as LeRobot's first subtask support read them;
- the interchange JSON Lines (DESIGN.md) at `meta/atomvla_subtasks.jsonl` with skills, authors,
  revisions and provenance; its `episode_index` is the exported dataset's.

Video from a LeRobot v3.0 source is not re-encoded: a source file whose every frame is exported is
linked (or copied) whole; from other files only the selected episodes' packets are copied, each
episode starting on a keyframe as LeRobot writes them. Where an episode cannot be cut so (it starts
mid-GOP), and for other sources, the frames are decoded and encoded once.

LeRobot stores an integer fps, frame timestamps i/fps, and matches decoded video frames to them
within 0.1 ms. Footage at an NTSC-family rate (29.97 = 30000/1001, 23.976, 59.94) is conformed
to the nearest integer rate, as video editors conform 23.976 to 24: the same frames, video and
timestamps written at the integer rate (played 0.1% faster); subtask boundaries are frames and do
not move. The source rate is kept in each camera's `info` (`video.source_fps`), which LeRobot
carries along; an unknown top-level key of `meta/info.json` it ignores with a warning at every load.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomvla.curate.episode import Episode
from atomvla.curate.exports.base import ExportError, Exporter, Progress, register_exporter
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, VideoClip, write_lerobot_v3
from atomvla.curate.exports.records import Proposals, episode_subtask_index, interchange_lines
from atomvla.curate.sources import open_source
from atomvla.curate.sources.lerobot_meta import INFO
from atomvla.curate.video.clip import cuttable
from atomvla.curate.video.frames import VideoFrames
from atomvla.schemas import Decomposition, EpisodeMeta, Status

log = logging.getLogger(__name__)

SUBTASKS_PARQUET = Path("meta") / "subtasks.parquet"
INTERCHANGE_JSONL = Path("meta") / "atomvla_subtasks.jsonl"
_STATS_FRAMES = 100  # frames decoded per episode and camera for image statistics (like LeRobot)
# NTSC-family rates are 1000/1001 of an integer (0.1% off); twice that leaves room for a container
# that rounds the rate (29.97 rather than 30000/1001). Farther off, conforming would visibly change speed.
_CONFORM_TOLERANCE = 0.002
_NAMED_EPISODES = 5  # episodes an error message names before it counts the rest


def language_rows(dec: Decomposition, fps: float) -> list[dict[str, Any]]:
    """The episode's persistent `subtask` rows, one per subtask, stamped with its first frame's time."""
    return [
        {"role": "assistant", "content": s.instruction, "style": "subtask",
         "timestamp": float(np.float32(s.start_frame / fps)), "camera": None, "tool_calls": None}
        for s in dec.subtasks
    ]


@register_exporter
class LeRobotExporter(Exporter):
    name = "lerobot"
    description = "LeRobot v3.0 dataset with subtask language columns, subtask_index and the interchange JSONL"
    default_status = Status.accepted
    is_folder = True

    def __init__(self, language: bool = True):
        # LeRobot before 0.6 rejects a dataset whose info.json declares the language columns
        # ("language" is no dtype it knows): language=False leaves them out for those readers.
        self.language = language

    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path,
              proposals: Proposals | None = None, progress: Progress | None = None, overwrite: bool = False) -> None:
        rate = _frame_rate(records)
        fps = rate.export
        source_info = _lerobot_infos(records)
        cuts = _cuts(records) if source_info is not None and _same_video_features(records, source_info) else None
        copy_video = cuts is not None
        vocabulary: dict[str, int] = {}
        first = records[0][0]

        def recordings() -> Iterator[EpisodeRecording]:
            for meta, dec in records:
                yield _recording(meta, dec, fps, vocabulary, source_info if copy_video else None, self.language,
                                 cuts or set())
                if progress is not None:
                    progress()

        def finish(root: Path) -> None:
            frame = pd.DataFrame({"subtask_index": list(vocabulary.values())},
                                 index=pd.Index(list(vocabulary), name="subtask"))
            frame.to_parquet(root / SUBTASKS_PARQUET)
            # The interchange lines describe the exported episodes: at the export's rate, like info.json.
            exported = [(meta.model_copy(update={"fps": fps}), dec) for meta, dec in records]
            (root / INTERCHANGE_JSONL).write_text("".join(line + "\n" for line in interchange_lines(exported, proposals)))

        robot_type = "unknown"
        if source_info is not None:
            robot_type = source_info[first.source].get("robot_type") or robot_type
        write_lerobot_v3(out, recordings(), fps=fps, feature_names=first.feature_names, robot_type=robot_type,
                         source_fps=rate.source if rate.conformed else None, finish=finish, overwrite=overwrite)


@dataclass(frozen=True)
class FrameRate:
    """The episodes' rate and the integer rate the export plays the same frames at."""

    source: float
    export: int

    @property
    def conformed(self) -> bool:
        return self.source != self.export

    def drift_s(self, n_frames: int) -> float:
        """How much earlier (> 0) or later an episode of `n_frames` ends at the export's rate."""
        return n_frames / self.source - n_frames / self.export


def _frame_rate(records: Sequence[tuple[EpisodeMeta, Decomposition]]) -> FrameRate:
    """The export's rate: the episodes' one rate, conformed to the nearest integer where it is an
    NTSC-type rate (logged once); ExportError for several rates or one far from any integer."""
    rates = sorted({m.fps for m, _ in records})
    if len(rates) != 1:
        raise ExportError(f"the selected episodes have different frame rates ({', '.join(f'{r:g}' for r in rates)}); "
                          "export each rate separately (--dataset-name)")
    rate = FrameRate(rates[0], max(1, round(rates[0])))
    if abs(rate.source / rate.export - 1) > _CONFORM_TOLERANCE:
        ids = [m.episode_id for m, _ in records]
        more = len(ids) - _NAMED_EPISODES
        named = ", ".join(ids[:_NAMED_EPISODES]) + (f" and {more} more" if more > 0 else "")
        raise ExportError(
            f"LeRobot stores an integer fps; episodes {named} run at {rate.source:g} fps, more than "
            f"{_CONFORM_TOLERANCE:.1%} from {rate.export} fps, so playing them at it would change their speed: "
            "export them with --to parquet (which keeps any rate), or resample the source to an integer rate "
            "(video and arrays alike) and import it again"
        )
    if rate.conformed:
        longest = max((m for m, _ in records), key=lambda m: m.n_frames)
        drift = rate.drift_s(longest.n_frames)
        log.info("%.5g fps conformed to %d fps (LeRobot stores an integer fps): the same frames played %.2g%% %s; "
                 "the longest episode, %s (%d frames) ends %.3f s %s", rate.source, rate.export,
                 abs(rate.export / rate.source - 1) * 100, "faster" if drift > 0 else "slower",
                 longest.episode_id, longest.n_frames, abs(drift), "earlier" if drift > 0 else "later")
    return rate


def _lerobot_infos(records: Sequence[tuple[EpisodeMeta, Decomposition]]) -> dict[str, dict[str, Any]] | None:
    """Each source's `meta/info.json` when every episode comes from a LeRobot v3.0 folder, else None."""
    if any(m.source_format != "lerobot_v3" for m, _ in records):
        return None
    return {source: json.loads((open_source(source, "lerobot_v3").root / INFO).read_text())
            for source in {m.source for m, _ in records}}


def _same_video_features(records: Sequence[tuple[EpisodeMeta, Decomposition]], infos: dict[str, dict[str, Any]]) -> bool:
    """True if every source describes each camera the same way, so copied files fit one info.json."""
    keys = {tuple(c.key for c in m.cameras) for m, _ in records}
    if len(keys) != 1:
        return False
    features = {json.dumps({k: info["features"].get(k) for k in next(iter(keys))}, sort_keys=True) for info in infos.values()}
    return len(features) == 1


def _cuts(records: Sequence[tuple[EpisodeMeta, Decomposition]]) -> set[tuple[str, str]] | None:
    """The (episode id, camera) clips to cut out of their file, because the file holds frames that
    are not exported (the others' files are taken whole); None if one of them cannot be cut without
    re-encoding (it does not start on a keyframe), so every frame is to be encoded instead."""
    by_file: dict[str, list[tuple[str, str, VideoFrames]]] = defaultdict(list)
    for meta, _ in records:
        episode = Episode(meta)
        for cam in meta.cameras:
            by_file[cam.path].append((meta.episode_id, cam.key, episode.frames(cam.key)))
    cuts = set()
    for path, clips in by_file.items():
        if sum(len(frames) for *_, frames in clips) == len(clips[0][2].index):
            continue  # every frame of the file is exported: linked whole
        for episode_id, key, frames in clips:
            if not cuttable(frames):
                log.info("%s: episode %s does not start on a keyframe; the export re-encodes the video", path, episode_id)
                return None
            cuts.add((episode_id, key))
    return cuts


def _recording(
    meta: EpisodeMeta, dec: Decomposition, fps: int, vocabulary: dict[str, int],
    source_info: dict[str, dict[str, Any]] | None, language: bool, cuts: set[tuple[str, str]],
) -> EpisodeRecording:
    """The episode as written at the export's `fps` (its frames' timestamps and the subtask rows')."""
    episode = Episode(meta)
    arrays = dict(episode.arrays)
    frames: dict[str, np.ndarray] = {}
    clips: dict[str, VideoClip] = {}
    for cam in meta.cameras:
        if source_info is not None:
            cam_frames = episode.frames(cam.key)
            _, sample = cam_frames.sample(_STATS_FRAMES)
            clips[cam.key] = VideoClip(
                path=Path(cam.path),
                from_timestamp=cam.from_timestamp,
                to_timestamp=cam.from_timestamp + meta.n_frames / meta.fps,
                feature=source_info[meta.source]["features"][cam.key],
                stats_frames=sample,
                cut=cam_frames if (meta.episode_id, cam.key) in cuts else None,
            )
        else:
            frames[cam.key] = np.stack(list(episode.frames(cam.key)))
    return EpisodeRecording(
        task=meta.task,
        frames=frames,
        arrays=arrays,
        clips=clips,
        columns={"subtask_index": episode_subtask_index(dec, vocabulary)},
        language=language_rows(dec, fps) if language else None,
    )
