"""Write episodes as a LeRobot v3.0 dataset, in the layout LeRobot itself writes.

Data parquets and per-camera MP4s hold many episodes each (episodes concatenated in one stream)
and roll over to the next file at LeRobot's size limits (100 MB of data / 200 MB of video by
default) by LeRobot's own rules; plus `meta/info.json`, `meta/stats.json`, `meta/tasks.parquet`
and `meta/episodes/`. A camera is either encoded here once from frames, or given as clips of
already-encoded files (a LeRobot v3.0 source), never re-encoded: a file whose every frame is
exported is hard-linked or copied whole, the episode's `from_timestamp` / `to_timestamp` pointing
into it; from any other file only the exported episodes' packets are copied (`video.clip.PacketCopy`). Optional extra per-frame
integer columns (`subtask_index`) and LeRobot's language columns are written next to the data.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atomvla.output import new_folder
from atomvla.curate.video.clip import PacketCopy
from atomvla.curate.video.frames import VideoFrames

log = logging.getLogger(__name__)

Codec = Literal["av1", "h264"]

# Encoders tried in order per codec; LeRobot's default AV1 encoder is SVT-AV1.
_ENCODERS: dict[str, tuple[str, ...]] = {"av1": ("libsvtav1", "libaom-av1"), "h264": ("libx264",)}
_CRF = 30  # LeRobot's default quality
_PIX_FMT = "yuv420p"
_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_STATS_FRAMES = 100  # image stats come from at most this many frames per episode, like LeRobot
_STATS_SIDE = 150  # ... downsampled to about this many pixels per side
_CHUNKS_SIZE = 1000
_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
_FIRST_FILE = {"chunk_index": 0, "file_index": 0}
_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_DATA_FILES_MB = 100  # LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB
_VIDEO_FILES_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB
# LeRobot's language columns (lerobot/datasets/language.py): persistent rows (subtask, plan, ...)
# are repeated on every frame of the episode; event rows sit on the frame they fire at.
LANGUAGE_PERSISTENT = "language_persistent"
LANGUAGE_EVENTS = "language_events"


def _language_row_type(with_timestamp: bool) -> pa.StructType:
    # `tool_calls` is list<json> in LeRobot; Arrow's json type is a string underneath, and pyarrow
    # cannot build the extension type from Python lists, so it is stored as list<string>.
    fields = [pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()), pa.field("style", pa.string())]
    if with_timestamp:
        fields.append(pa.field("timestamp", pa.float32(), nullable=False))
    return pa.struct([*fields, pa.field("camera", pa.string()), pa.field("tool_calls", pa.list_(pa.string()))])


def _language_hf_feature(with_timestamp: bool) -> dict[str, Any]:
    """The `datasets` feature LeRobot declares for a language column (`language_*_column_feature`)."""
    string = {"dtype": "string", "_type": "Value"}
    row: dict[str, Any] = {"role": string, "content": string, "style": string}
    if with_timestamp:
        row["timestamp"] = {"dtype": "float32", "_type": "Value"}
    row |= {"camera": string, "tool_calls": {"feature": {"_type": "Json"}, "_type": "List"}}
    return {"feature": row, "_type": "List"}


@dataclass(frozen=True)
class VideoClip:
    """One camera of one episode, already encoded: seconds [from_timestamp, to_timestamp) of `path`.

    `feature` is the camera's `meta/info.json` entry in the source (shape, codec, pix_fmt);
    `stats_frames` a sample of the episode's frames, (k, H, W, 3) uint8, for the image statistics.
    `cut`, where given, are the episode's frames in `path` (`video.clip.cuttable`): only their
    packets are copied, because the file holds frames that are not exported; else the whole file is.
    """

    path: Path
    from_timestamp: float
    to_timestamp: float
    feature: Mapping[str, Any]
    stats_frames: np.ndarray
    cut: VideoFrames | None = None


@dataclass(frozen=True)
class EpisodeRecording:
    """One episode to write: camera key -> (n, H, W, 3) uint8 frames to encode, or -> a clip to copy;
    array key -> (n, d) values; extra per-frame int64 columns, (n,); persistent language rows
    (dicts with LeRobot's row fields), the same on every frame."""

    task: str
    frames: Mapping[str, np.ndarray]
    arrays: Mapping[str, np.ndarray]
    clips: Mapping[str, VideoClip] = field(default_factory=dict)
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    language: Sequence[Mapping[str, Any]] | None = None


def write_lerobot_v3(
    out_dir: Path,
    episodes: Iterable[EpisodeRecording],
    *,
    fps: int,
    feature_names: Mapping[str, Sequence[str]],
    robot_type: str = "unknown",
    source_fps: float | None = None,
    codec: Codec = "av1",
    keyframe_interval: int = 2,
    data_files_size_in_mb: float = _DATA_FILES_MB,
    video_files_size_in_mb: float = _VIDEO_FILES_MB,
    finish: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `episodes` to `out_dir` (which must not exist, unless `overwrite`) and return it.

    `source_fps`, where given, is the rate the frames were recorded at, conformed to `fps` (the same
    frames played at `fps`); each encoded camera's `info` records it as `video.source_fps`.

    Everything is written to a temporary folder next to `out_dir` and renamed at the end, so a
    crash never leaves a half-written dataset (`atomvla.output.new_folder`). Episodes are consumed one at a time. `finish(root)`
    may add files (more metadata) to the temporary folder before the rename.
    """
    with new_folder(Path(out_dir), overwrite) as tmp:
        _write(tmp, episodes, fps, source_fps, feature_names, robot_type, codec, keyframe_interval,
               _Limits(data_files_size_in_mb, video_files_size_in_mb))
        if finish is not None:
            finish(tmp)
    return Path(out_dir)


@dataclass(frozen=True)
class _Limits:
    data_mb: float
    video_mb: float


def _next_file(index: dict[str, int]) -> dict[str, int]:
    """LeRobot's `update_chunk_file_indices`: the next file, in the next chunk after chunks_size files."""
    if index["file_index"] == _CHUNKS_SIZE - 1:
        return {"chunk_index": index["chunk_index"] + 1, "file_index": 0}
    return {"chunk_index": index["chunk_index"], "file_index": index["file_index"] + 1}


def _write(
    root: Path,
    episodes: Iterable[EpisodeRecording],
    fps: int,
    source_fps: float | None,
    feature_names: Mapping[str, Sequence[str]],
    robot_type: str,
    codec: Codec,
    keyframe_interval: int,
    limits: _Limits,
) -> None:
    tasks: dict[str, int] = {}
    episode_rows: list[dict[str, Any]] = []
    episode_stats: list[dict[str, dict[str, Any]]] = []
    layout: _Layout | None = None
    data: _DataFiles | None = None
    videos: dict[str, _EncodedVideos | _CopiedVideos] = {}
    n_total = 0
    try:
        for ep_index, ep in enumerate(episodes):
            if layout is None:
                layout = _Layout.of(ep, feature_names)
                data = _DataFiles(root, layout.hf_features(), limits.data_mb)
                videos = {key: _EncodedVideos(root, key, shape, fps, codec, keyframe_interval, limits.video_mb)
                          for key, shape in layout.cameras.items()}
                videos |= {key: _CopiedVideos(root, key, fps, limits.video_mb) for key in layout.clips}
            n = layout.check(ep, ep_index, fps)
            task_index = tasks.setdefault(ep.task, len(tasks))
            row: dict[str, Any] = {"episode_index": ep_index, "tasks": [ep.task], "length": n}
            columns = _frame_columns(ep, n, fps, ep_index, n_total, task_index)
            row |= {f"data/{k}": v for k, v in data.add(_data_table(columns, ep.language, n)).items()}
            row |= {"dataset_from_index": n_total, "dataset_to_index": n_total + n}
            for key, video in videos.items():
                source = ep.frames[key] if key in layout.cameras else ep.clips[key]
                row |= {f"videos/{key}/{k}": v for k, v in video.add(source).items()}
            stats = {key: _image_stats(ep.frames[key]) for key in layout.cameras}
            stats |= {key: _image_stats(ep.clips[key].stats_frames) for key in layout.clips}
            stats |= {key: _array_stats(values) for key, values in columns.items()}
            for feature, feature_stats in stats.items():
                row |= {f"stats/{feature}/{name}": value for name, value in feature_stats.items()}
            row |= {f"meta/episodes/{k}": v for k, v in _FIRST_FILE.items()}
            episode_rows.append(row)
            episode_stats.append(stats)
            n_total += n
            log.debug("episode %d: %d frames, task %r", ep_index, n, ep.task)
    finally:
        for video in videos.values():
            video.close()
    if layout is None or data is None:
        raise ValueError(f"{root}: no episodes to write")
    data.close()

    meta = root / "meta"
    _write_parquet(pa.Table.from_pylist(episode_rows), meta / "episodes" / "chunk-000" / "file-000.parquet")
    tasks_df = pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks))
    tasks_df.to_parquet(meta / "tasks.parquet")
    (meta / "stats.json").write_text(json.dumps(_aggregate(episode_stats), indent=4))
    info = {
        "codebase_version": "v3.0",
        "robot_type": robot_type,
        "total_episodes": len(episode_rows),
        "total_frames": n_total,
        "total_tasks": len(tasks),
        "chunks_size": _CHUNKS_SIZE,
        "data_files_size_in_mb": limits.data_mb,
        "video_files_size_in_mb": limits.video_mb,
        "fps": fps,
        "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": _DATA_PATH,
        "video_path": _VIDEO_PATH if videos else None,
        "features": layout.info_features(fps, source_fps, codec),
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))


@dataclass(frozen=True)
class _Layout:
    """Cameras, arrays, extra columns and their shapes, fixed by the first episode; later ones must match."""

    cameras: Mapping[str, tuple[int, int, int]]  # key -> (H, W, 3), encoded here
    clips: Mapping[str, Mapping[str, Any]]  # key -> the source's info.json feature, copied
    arrays: Mapping[str, tuple[int, np.dtype]]  # key -> (d, dtype)
    columns: tuple[str, ...]  # extra int64 per-frame columns
    language: bool
    names: Mapping[str, Sequence[str]]

    @classmethod
    def of(cls, ep: EpisodeRecording, feature_names: Mapping[str, Sequence[str]]) -> _Layout:
        for key, values in {**ep.frames, **ep.arrays}.items():
            if values.ndim != (4 if key in ep.frames else 2):
                raise ValueError(f"episode 0 ({ep.task!r}): {key!r} has shape {values.shape}, expected "
                                 + ("(n, H, W, 3)" if key in ep.frames else "(n, d)"))
        arrays = {k: (v.shape[1], v.dtype) for k, v in ep.arrays.items()}
        for key, (d, _) in arrays.items():
            names = feature_names.get(key)
            if names is not None and len(names) != d:
                raise ValueError(f"feature_names[{key!r}] has {len(names)} names for {d} dimensions")
        return cls(
            cameras={k: tuple(v.shape[1:]) for k, v in ep.frames.items()},
            clips={k: clip.feature for k, clip in ep.clips.items()},
            arrays=arrays,
            columns=tuple(ep.columns),
            language=ep.language is not None,
            names=feature_names,
        )

    def check(self, ep: EpisodeRecording, ep_index: int, fps: int) -> int:
        """The episode's frame count, after checking it matches the layout."""
        where = f"episode {ep_index} ({ep.task!r})"
        if (set(ep.frames), set(ep.clips), set(ep.arrays), set(ep.columns), ep.language is not None) != (
            set(self.cameras), set(self.clips), set(self.arrays), set(self.columns), self.language
        ):
            raise ValueError(
                f"{where}: has cameras {sorted(ep.frames)}, clips {sorted(ep.clips)}, arrays {sorted(ep.arrays)}, "
                f"columns {sorted(ep.columns)}, language {ep.language is not None}; expected "
                f"{sorted(self.cameras)}, {sorted(self.clips)}, {sorted(self.arrays)}, {sorted(self.columns)}, "
                f"{self.language} like episode 0"
            )
        lengths = {k: len(v) for k, v in {**ep.frames, **ep.arrays, **ep.columns}.items()}
        if not lengths:
            raise ValueError(f"{where}: no frames, arrays or columns give the episode's length")
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"{where}: streams have different or zero lengths: {lengths}")
        n = next(iter(lengths.values()))
        for key, frames in ep.frames.items():
            if frames.dtype != np.uint8 or tuple(frames.shape[1:]) != self.cameras[key]:
                raise ValueError(
                    f"{where}: camera {key!r} is {frames.dtype} {frames.shape}, "
                    f"expected uint8 (n, {', '.join(map(str, self.cameras[key]))})"
                )
        for key, clip in ep.clips.items():
            if dict(clip.feature) != dict(self.clips[key]):
                raise ValueError(f"{where}: camera {key!r} video is {clip.feature}, episode 0's is {self.clips[key]}")
            if abs((clip.to_timestamp - clip.from_timestamp) * fps - n) > 0.5:
                raise ValueError(
                    f"{where}: camera {key!r} clip spans {clip.to_timestamp - clip.from_timestamp:.3f} s "
                    f"of {clip.path}, the episode has {n} frames at {fps} fps"
                )
        for key, values in ep.arrays.items():
            d, dtype = self.arrays[key]
            if values.ndim != 2 or values.shape[1] != d or values.dtype != dtype:
                raise ValueError(f"{where}: array {key!r} is {values.dtype} {values.shape}, expected {dtype} (n, {d})")
        for key, values in ep.columns.items():
            if values.ndim != 1 or values.dtype != np.int64:
                raise ValueError(f"{where}: column {key!r} is {values.dtype} {values.shape}, expected int64 (n,)")
        return n

    def info_features(self, fps: int, source_fps: float | None, codec: Codec) -> dict[str, Any]:
        # LeRobot keeps unknown keys of a camera's `info` (it merges its own over them), so the
        # source rate goes there; copied clips are not conformed (LeRobot sources have integer rates).
        source = {} if source_fps is None else {"video.source_fps": source_fps}
        features: dict[str, Any] = {}
        for key, (h, w, c) in self.cameras.items():
            features[key] = {
                "dtype": "video",
                "shape": [h, w, c],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": codec,
                    "video.pix_fmt": _PIX_FMT,
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": c,
                    "has_audio": False,
                    **source,
                },
            }
        features |= {key: dict(feature) for key, feature in self.clips.items()}
        for key, (d, dtype) in self.arrays.items():
            names = self.names.get(key)
            features[key] = {"dtype": str(dtype), "shape": [d], "names": list(names) if names else None}
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in (*_INDEX_COLUMNS[1:], *self.columns):
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        if self.language:  # lerobot.datasets.language.language_feature_info()
            features |= {key: {"dtype": "language", "shape": [1], "names": None}
                         for key in (LANGUAGE_PERSISTENT, LANGUAGE_EVENTS)}
        return features

    def hf_features(self) -> dict[str, Any]:
        """The `datasets` feature description LeRobot stores in the data parquet's metadata."""
        features: dict[str, Any] = {
            key: {"feature": {"dtype": str(dtype), "_type": "Value"}, "length": d, "_type": "List"}
            for key, (d, dtype) in self.arrays.items()
        }
        features["timestamp"] = {"dtype": "float32", "_type": "Value"}
        features |= {key: {"dtype": "int64", "_type": "Value"} for key in (*_INDEX_COLUMNS[1:], *self.columns)}
        if self.language:
            features[LANGUAGE_PERSISTENT] = _language_hf_feature(with_timestamp=True)
            features[LANGUAGE_EVENTS] = _language_hf_feature(with_timestamp=False)
        return {"info": {"features": features}}


def _frame_columns(
    ep: EpisodeRecording, n: int, fps: int, ep_index: int, first_index: int, task_index: int
) -> dict[str, np.ndarray]:
    frame_index = np.arange(n, dtype=np.int64)
    return {
        **ep.arrays,
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(n, ep_index, dtype=np.int64),
        "index": frame_index + first_index,
        "task_index": np.full(n, task_index, dtype=np.int64),
        **ep.columns,
    }


def _data_table(columns: Mapping[str, np.ndarray], language: Sequence[Mapping[str, Any]] | None, n: int) -> pa.Table:
    arrays = {}
    for key, values in columns.items():
        if values.ndim == 2:
            arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[key] = pa.array(values)
    if language is not None:
        rows = [{k: row.get(k) for k in ("role", "content", "style", "timestamp", "camera", "tool_calls")}
                for row in language]
        arrays[LANGUAGE_PERSISTENT] = pa.array([rows] * n, type=pa.list_(_language_row_type(True)))
        arrays[LANGUAGE_EVENTS] = pa.array([[]] * n, type=pa.list_(_language_row_type(False)))
    return pa.table(arrays)


def _write_parquet(table: pa.Table, path: Path, hf_features: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if hf_features is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps(hf_features)})
    pq.write_table(table, path)


class _DataFiles:
    """The data parquets: episodes are appended to the current file until the next one would take it
    past the size limit (LeRobot's rule, on the uncompressed size); then a new file starts."""

    def __init__(self, root: Path, hf_features: dict[str, Any], limit_mb: float):
        self._root, self._hf_features, self._limit = root, hf_features, limit_mb * 1024**2
        self._index = dict(_FIRST_FILE)
        self._parts: list[pa.Table] = []
        self._bytes = 0

    def add(self, table: pa.Table) -> dict[str, int]:
        """Append one episode's rows; returns the chunk and file index they went to."""
        if self._parts and self._bytes + table.nbytes >= self._limit:
            self._flush()
            self._index = _next_file(self._index)
        self._parts.append(table)
        self._bytes += table.nbytes
        return dict(self._index)

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        _write_parquet(pa.concat_tables(self._parts), self._root / _DATA_PATH.format(**self._index), self._hf_features)
        self._parts, self._bytes = [], 0


class _EncodedVideos:
    """One camera's MP4s encoded from frames: episodes appended to the current file, a new file
    when the next episode (estimated from the bytes per frame so far) would pass the size limit."""

    def __init__(self, root: Path, key: str, shape: tuple[int, int, int], fps: int, codec: Codec,
                 keyframe_interval: int, limit_mb: float):
        self._root, self._key, self._shape, self._fps = root, key, shape, fps
        self._codec, self._keyframe_interval, self._limit = codec, keyframe_interval, limit_mb * 1024**2
        self._index = dict(_FIRST_FILE)
        self._writer = self._open()

    def _open(self) -> _VideoWriter:
        path = self._root / _VIDEO_PATH.format(video_key=self._key, **self._index)
        return _VideoWriter(path, self._shape, self._fps, self._codec, self._keyframe_interval)

    def add(self, frames: np.ndarray) -> dict[str, Any]:
        w = self._writer
        if w.n_frames and w.n_bytes + w.n_bytes / w.n_frames * len(frames) >= self._limit:
            w.close()
            self._index = _next_file(self._index)
            self._writer = w = self._open()
        start = w.n_frames / self._fps
        w.add(frames)
        return {**self._index, "from_timestamp": start, "to_timestamp": w.n_frames / self._fps}

    def close(self) -> None:
        self._writer.close()


class _CopiedVideos:
    """One camera's MP4s taken from the source without re-encoding. A source file whose every
    frame is exported becomes one file of the export (hard-linked where the filesystem allows, else
    copied); the source writer already kept it under its size limit. Episodes cut from other files
    are appended, packets copied, to a file of their own, a new one past the size limit."""

    def __init__(self, root: Path, key: str, fps: int, limit_mb: float):
        self._root, self._key, self._fps, self._limit = root, key, fps, limit_mb * 1024**2
        self._files: dict[Path, dict[str, int]] = {}
        self._index: dict[str, int] | None = None
        self._cuts: PacketCopy | None = None
        self._cuts_index: dict[str, int] = {}

    def _next(self) -> tuple[dict[str, int], Path]:
        self._index = dict(_FIRST_FILE) if self._index is None else _next_file(self._index)
        dest = self._root / _VIDEO_PATH.format(video_key=self._key, **self._index)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self._index, dest

    def add(self, clip: VideoClip) -> dict[str, Any]:
        if clip.cut is not None:
            return self._add_cut(clip.cut)
        src = Path(clip.path).resolve()
        if src not in self._files:
            index, dest = self._next()
            try:
                os.link(src, dest)
            except OSError:  # another filesystem, or links not allowed
                shutil.copyfile(src, dest)
            self._files[src] = index
        return {**self._files[src], "from_timestamp": clip.from_timestamp, "to_timestamp": clip.to_timestamp}

    def _add_cut(self, frames: VideoFrames) -> dict[str, Any]:
        w = self._cuts
        if w is None or not w.accepts(frames.path) or (
            w.n_frames and w.n_bytes + w.n_bytes / w.n_frames * len(frames) >= self._limit
        ):
            if w is not None:
                w.close()
            self._cuts_index, dest = self._next()
            self._cuts = w = PacketCopy(dest, frames.path)
        start = w.append(frames, self._fps)
        return {**self._cuts_index, "from_timestamp": start, "to_timestamp": start + len(frames) / self._fps}

    def close(self) -> None:
        if self._cuts is not None:
            self._cuts.close()


class _VideoWriter:
    """One MP4: frames appended to a single stream."""

    def __init__(self, path: Path, shape: tuple[int, int, int], fps: int, codec: Codec, keyframe_interval: int):
        encoder = next((e for e in _ENCODERS[codec] if e in av.codecs_available), None)
        if encoder is None:
            raise RuntimeError(f"PyAV's FFmpeg has no {codec} encoder (tried {', '.join(_ENCODERS[codec])})")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 otherwise prints its configuration banner
        self._container = av.open(str(path), "w")
        options = {"g": str(keyframe_interval), "crf": str(_CRF)}
        self._stream = self._container.add_stream(encoder, rate=Fraction(fps), options=options)
        self._stream.height, self._stream.width = shape[0], shape[1]
        self._stream.pix_fmt = _PIX_FMT
        self.n_frames = 0
        self.n_bytes = 0
        self._closed = False

    def add(self, frames: np.ndarray) -> None:
        """Append (n, H, W, 3) uint8 frames."""
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.n_frames
            packets = self._stream.encode(frame)
            self.n_bytes += sum(p.size for p in packets)
            self._container.mux(packets)
            self.n_frames += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.mux(self._stream.encode(None))
            self._container.close()


def _array_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension stats of (n,) or (n, d) values, as LeRobot stores them (lists of length d)."""
    x = values.reshape(len(values), -1)
    stats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0, dtype=np.float64),
        "std": x.std(axis=0, dtype=np.float64),
        "count": np.array([len(x)], dtype=np.int64),
    }
    for q in _QUANTILES:
        stats[f"q{round(q * 100):02d}"] = np.quantile(x, q, axis=0)
    return {k: v.tolist() for k, v in stats.items()}


def _image_stats(frames: np.ndarray) -> dict[str, Any]:
    """Per-channel stats of (n, H, W, 3) uint8 frames in [0, 1], shaped (3, 1, 1) like LeRobot's."""
    picked = frames[np.linspace(0, len(frames) - 1, min(len(frames), _STATS_FRAMES)).round().astype(int)]
    step = max(1, max(frames.shape[1:3]) // _STATS_SIDE)
    pixels = picked[:, ::step, ::step].reshape(-1, frames.shape[-1]) / 255.0
    # count is the number of frames, not pixels
    return {k: [len(picked)] if k == "count" else [[[v]] for v in values] for k, values in _array_stats(pixels).items()}


def _aggregate(per_episode: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, list]]:
    """Dataset stats from episode stats the way LeRobot combines them: exact min, max, mean and
    std; quantiles as the count-weighted mean of the episodes' quantiles."""
    out: dict[str, dict[str, list]] = {}
    for feature in per_episode[0]:
        eps = [{name: np.asarray(v) for name, v in ep[feature].items()} for ep in per_episode]
        counts = np.array([ep["count"][0] for ep in eps], dtype=np.float64)
        w = (counts / counts.sum()).reshape(-1, *[1] * eps[0]["mean"].ndim)
        means = np.stack([ep["mean"] for ep in eps])
        mean = (w * means).sum(axis=0)
        var = (w * (np.stack([ep["std"] for ep in eps]) ** 2 + (means - mean) ** 2)).sum(axis=0)
        agg = {
            "min": np.min([ep["min"] for ep in eps], axis=0),
            "max": np.max([ep["max"] for ep in eps], axis=0),
            "mean": mean,
            "std": np.sqrt(var),
            "count": np.array([int(counts.sum())]),
        }
        for name in (k for k in eps[0] if k.startswith("q")):
            agg[name] = (w * np.stack([ep[name] for ep in eps])).sum(axis=0)
        out[feature] = {k: v.tolist() for k, v in agg.items()}
    return out
