"""LeRobot v3.0: many episodes per data parquet and per MP4, indexed by `meta/episodes/*.parquet`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

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
from atomvla.curate.sources.video_probe import VideoProbe, probe_video, video_camera
from atomvla.schemas import EpisodeMeta

T = TypeVar("T")
_EPISODE_COLUMNS = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index"]
_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp")


@register
class LeRobotV3Reader(Reader):
    name = "lerobot_v3"
    versions: ClassVar[set[str]] = {"v3.0"}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return codebase_version(root) in cls.versions

    def scan(self) -> Iterator[EpisodeMeta | SourceError]:
        info = read_info(self.root, self.versions)
        dataset = dataset_name(self.root, self.source)
        # Each data file and video is checked once, however many episodes it holds.
        data_rows: dict[Path, dict[int, tuple[int, int]] | SourceError] = {}
        videos: dict[Path, VideoProbe | SourceError] = {}
        for file, row in self._episode_rows(info):
            try:
                yield self._meta(row, file, info, dataset, data_rows, videos)
            except SourceError as exc:
                yield exc

    def load_arrays(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        loc = meta.locator
        table = _read_rows(Path(str(loc["data_file"])), list(meta.feature_names), int(loc["row_start"]), meta.n_frames)
        return column_arrays(table, list(meta.feature_names))

    def _episode_rows(self, info: LeRobotInfo) -> Iterator[tuple[Path, dict[str, Any]]]:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise SourceError(self.root / "meta" / "episodes", "no episode index files (chunk-*/file-*.parquet)")
        video_columns = [f"videos/{key}/{c}" for key in info.video_keys for c in _VIDEO_COLUMNS]
        columns = _EPISODE_COLUMNS + video_columns
        for file in files:
            try:
                missing = missing_columns(pq.read_schema(file), columns)
                if missing:
                    raise SourceError(file, f"missing required columns: {', '.join(missing)}")
                rows = pq.read_table(file, columns=columns).to_pylist()
            except pa.ArrowException as exc:  # damaged or not parquet at all
                raise SourceError(file, f"cannot be read as parquet ({exc})") from exc
            for row in rows:
                yield file, row

    def _meta(
        self,
        row: dict[str, Any],
        episodes_file: Path,
        info: LeRobotInfo,
        dataset: str,
        data_rows: dict[Path, dict[int, tuple[int, int]] | SourceError],
        videos: dict[Path, VideoProbe | SourceError],
    ) -> EpisodeMeta:
        index, length = int(row["episode_index"]), int(row["length"])
        check_entry(episodes_file, index, length, row["tasks"])
        data_file = self.root / info.data_path.format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        rows = _once(data_rows, data_file, lambda p: _episode_row_ranges(p, info), index)
        row_start, n_rows = rows.get(index, (0, 0))
        if n_rows != length:
            raise SourceError(data_file, f"has {n_rows} rows for the episode, the episode index says {length}", index)
        cameras = []
        for key in info.video_keys:
            video = self.root / info.video_path.format(
                video_key=key,
                chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"],
            )
            probe = _once(videos, video, probe_video, index)
            start = float(row[f"videos/{key}/from_timestamp"])
            cameras.append(video_camera(key, video, probe, start, length, info.fps, index))
        return self.episode_meta(
            dataset,
            index,
            fps=info.fps,
            n_frames=length,
            task="; ".join(row["tasks"]),
            cameras=tuple(cameras),
            feature_names=info.feature_names,
            locator={"data_file": str(data_file), "row_start": row_start},
        )


def _once(cache: dict[Path, T | SourceError], path: Path, check: Callable[[Path], T], episode: int) -> T:
    """`check(path)`, computed once per file; its SourceError is re-raised naming `episode`."""
    if path not in cache:
        try:
            cache[path] = check(path)
        except SourceError as exc:
            cache[path] = exc
    result = cache[path]
    if isinstance(result, SourceError):
        raise SourceError(result.file, result.problem, episode)
    return result


def _episode_row_ranges(data_file: Path, info: LeRobotInfo) -> dict[int, tuple[int, int]]:
    """episode_index -> (first row, row count) in one data file; reads only `episode_index`."""
    if not data_file.is_file():
        raise SourceError(data_file, "data file is missing")
    try:
        missing = missing_columns(pq.read_schema(data_file), ["episode_index", *info.array_keys])
        if missing:
            raise SourceError(data_file, f"missing required columns: {', '.join(missing)}")
        episodes = pq.read_table(data_file, columns=["episode_index"]).column(0).to_numpy()
    except pa.ArrowException as exc:  # damaged or not parquet at all
        raise SourceError(data_file, f"cannot be read as parquet ({exc})") from exc
    values, starts, counts = np.unique(episodes, return_index=True, return_counts=True)
    return {int(v): (int(s), int(c)) for v, s, c in zip(values, starts, counts)}


def _read_rows(path: Path, columns: list[str], start: int, n: int) -> pa.Table:
    """Rows [start, start + n) of `columns`, decoding only the row groups that hold them."""
    parquet = pq.ParquetFile(path)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    offsets = np.cumsum([0, *sizes])
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    stop = int(np.searchsorted(offsets, start + n, side="left"))
    table = parquet.read_row_groups(list(range(first, stop)), columns=columns)
    return table.slice(start - int(offsets[first]), n)
