"""LeRobot v2.0 / v2.1: one parquet and one MP4 per episode, indexed by `meta/episodes.jsonl`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atomvla.curate.errors import SourceError
from atomvla.curate.sources.base import Reader, register
from atomvla.curate.sources.lerobot_meta import (
    LeRobotInfo,
    check_entry,
    codebase_version,
    column_arrays,
    missing_columns,
    read_info,
)
from atomvla.curate.sources.naming import dataset_name
from atomvla.curate.sources.video_probe import probe_video, video_camera
from atomvla.schemas import EpisodeMeta

_EPISODES = Path("meta") / "episodes.jsonl"
_EPISODE_KEYS = ("episode_index", "tasks", "length")


@register
class LeRobotV21Reader(Reader):
    name = "lerobot_v21"
    versions: ClassVar[set[str]] = {"v2.0", "v2.1"}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return codebase_version(root) in cls.versions

    def scan(self) -> Iterator[EpisodeMeta | SourceError]:
        info = read_info(self.root, self.versions)
        dataset = dataset_name(self.root, self.source)
        for entry in self._episode_entries():
            try:
                yield self._meta(entry, info, dataset)
            except SourceError as exc:
                yield exc

    def load_arrays(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        table = pq.read_table(str(meta.locator["data_file"]), columns=list(meta.feature_names))
        return column_arrays(table, list(meta.feature_names))

    def _episode_entries(self) -> list[dict[str, Any]]:
        path = self.root / _EPISODES
        if not path.is_file():
            raise SourceError(path, "episode index is missing")
        entries = []
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(path, f"line {line_no} is not valid JSON: {exc}") from exc
            missing = [k for k in _EPISODE_KEYS if k not in entry]
            if missing:
                raise SourceError(path, f"line {line_no} lacks {', '.join(missing)}")
            entries.append(entry)
        return entries

    def _meta(self, entry: dict[str, Any], info: LeRobotInfo, dataset: str) -> EpisodeMeta:
        index, length = int(entry["episode_index"]), int(entry["length"])
        check_entry(self.root / _EPISODES, index, length, entry["tasks"])
        chunk = index // info.chunks_size
        data_file = self.root / info.data_path.format(episode_chunk=chunk, episode_index=index)
        if not data_file.is_file():
            raise SourceError(data_file, "data file is missing", index)
        try:
            parquet = pq.read_metadata(data_file)  # the footer only: row count and schema
        except pa.ArrowException as exc:  # damaged or not parquet at all
            raise SourceError(data_file, f"cannot be read as parquet ({exc})", index) from exc
        missing = missing_columns(parquet.schema.to_arrow_schema(), info.array_keys)
        if missing:
            raise SourceError(data_file, f"missing required columns: {', '.join(missing)}", index)
        if parquet.num_rows != length:
            raise SourceError(data_file, f"has {parquet.num_rows} rows, the episode index says {length}", index)
        cameras = []
        for key in info.video_keys:
            video = self.root / info.video_path.format(episode_chunk=chunk, video_key=key, episode_index=index)
            cameras.append(video_camera(key, video, probe_video(video, index), 0.0, length, info.fps, index))
        return self.episode_meta(
            dataset,
            index,
            fps=info.fps,
            n_frames=length,
            task="; ".join(entry["tasks"]),
            cameras=tuple(cameras),
            feature_names=info.feature_names,
            locator={"data_file": str(data_file)},
        )
