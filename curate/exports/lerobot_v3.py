"""Write episodes as a LeRobot v3.0 dataset, in the layout LeRobot itself writes.

One data parquet, one episodes parquet and one MP4 per camera (all episodes concatenated in one
stream), plus `meta/info.json`, `meta/stats.json` and `meta/tasks.parquet`. Files never roll over
to a second chunk: LeRobot does so at 100 MB of data / 200 MB of video per file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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


@dataclass(frozen=True)
class EpisodeRecording:
    """One episode to write: camera key -> (n, H, W, 3) uint8 frames, array key -> (n, d) values."""

    task: str
    frames: Mapping[str, np.ndarray]
    arrays: Mapping[str, np.ndarray]


def write_lerobot_v3(
    out_dir: Path,
    episodes: Iterable[EpisodeRecording],
    *,
    fps: int,
    feature_names: Mapping[str, Sequence[str]],
    robot_type: str = "unknown",
    codec: Codec = "av1",
    keyframe_interval: int = 2,
) -> Path:
    """Write `episodes` to `out_dir` (which must not exist) and return it.

    Everything is written to a temporary folder next to `out_dir` and renamed at the end, so a
    crash never leaves a half-written dataset. Episodes are consumed one at a time.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists; remove it or choose another folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the dataset's mode
    try:
        _write(tmp, episodes, fps, feature_names, robot_type, codec, keyframe_interval)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write(
    root: Path,
    episodes: Iterable[EpisodeRecording],
    fps: int,
    feature_names: Mapping[str, Sequence[str]],
    robot_type: str,
    codec: Codec,
    keyframe_interval: int,
) -> None:
    tasks: dict[str, int] = {}
    data_parts: list[pa.Table] = []
    episode_rows: list[dict[str, Any]] = []
    episode_stats: list[dict[str, dict[str, Any]]] = []
    layout: _Layout | None = None
    videos: dict[str, _VideoWriter] = {}
    n_total = 0
    try:
        for ep_index, ep in enumerate(episodes):
            if layout is None:
                layout = _Layout.of(ep, feature_names)
                videos = {
                    key: _VideoWriter(root / _VIDEO_PATH.format(video_key=key, **_FIRST_FILE), shape, fps, codec, keyframe_interval)
                    for key, shape in layout.cameras.items()
                }
            n = layout.check(ep, ep_index)
            task_index = tasks.setdefault(ep.task, len(tasks))
            row: dict[str, Any] = {"episode_index": ep_index, "tasks": [ep.task], "length": n}
            row |= {f"data/{k}": v for k, v in _FIRST_FILE.items()}
            row |= {"dataset_from_index": n_total, "dataset_to_index": n_total + n}
            for key, video in videos.items():
                row |= {f"videos/{key}/{k}": v for k, v in _FIRST_FILE.items()}
                row[f"videos/{key}/from_timestamp"] = video.n_frames / fps
                video.add(ep.frames[key])
                row[f"videos/{key}/to_timestamp"] = video.n_frames / fps
            columns = _frame_columns(ep, n, fps, ep_index, n_total, task_index)
            stats = {key: _image_stats(ep.frames[key]) for key in layout.cameras}
            stats |= {key: _array_stats(values) for key, values in columns.items()}
            for feature, feature_stats in stats.items():
                row |= {f"stats/{feature}/{name}": value for name, value in feature_stats.items()}
            row |= {f"meta/episodes/{k}": v for k, v in _FIRST_FILE.items()}
            episode_rows.append(row)
            episode_stats.append(stats)
            data_parts.append(_data_table(columns))
            n_total += n
            log.debug("episode %d: %d frames, task %r", ep_index, n, ep.task)
    finally:
        for video in videos.values():
            video.close()
    if layout is None:
        raise ValueError(f"{root}: no episodes to write")

    meta = root / "meta"
    _write_parquet(pa.concat_tables(data_parts), root / _DATA_PATH.format(**_FIRST_FILE), layout.hf_features())
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
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": _DATA_PATH,
        "video_path": _VIDEO_PATH if layout.cameras else None,
        "features": layout.info_features(fps, codec),
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))


@dataclass(frozen=True)
class _Layout:
    """Cameras, arrays and their shapes, fixed by the first episode; later ones must match."""

    cameras: Mapping[str, tuple[int, int, int]]  # key -> (H, W, 3)
    arrays: Mapping[str, tuple[int, np.dtype]]  # key -> (d, dtype)
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
        return cls({k: tuple(v.shape[1:]) for k, v in ep.frames.items()}, arrays, feature_names)

    def check(self, ep: EpisodeRecording, ep_index: int) -> int:
        """The episode's frame count, after checking it matches the layout."""
        where = f"episode {ep_index} ({ep.task!r})"
        if set(ep.frames) != set(self.cameras) or set(ep.arrays) != set(self.arrays):
            raise ValueError(
                f"{where}: has cameras {sorted(ep.frames)} and arrays {sorted(ep.arrays)}, "
                f"expected {sorted(self.cameras)} and {sorted(self.arrays)} like episode 0"
            )
        lengths = {k: len(v) for k, v in {**ep.frames, **ep.arrays}.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"{where}: streams have different or zero lengths: {lengths}")
        for key, frames in ep.frames.items():
            if frames.dtype != np.uint8 or tuple(frames.shape[1:]) != self.cameras[key]:
                raise ValueError(
                    f"{where}: camera {key!r} is {frames.dtype} {frames.shape}, "
                    f"expected uint8 (n, {', '.join(map(str, self.cameras[key]))})"
                )
        for key, values in ep.arrays.items():
            d, dtype = self.arrays[key]
            if values.ndim != 2 or values.shape[1] != d or values.dtype != dtype:
                raise ValueError(f"{where}: array {key!r} is {values.dtype} {values.shape}, expected {dtype} (n, {d})")
        return next(iter(lengths.values()))

    def info_features(self, fps: int, codec: Codec) -> dict[str, Any]:
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
                },
            }
        for key, (d, dtype) in self.arrays.items():
            names = self.names.get(key)
            features[key] = {"dtype": str(dtype), "shape": [d], "names": list(names) if names else None}
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in _INDEX_COLUMNS[1:]:
            features[key] = {"dtype": "int64", "shape": [1], "names": None}
        return features

    def hf_features(self) -> dict[str, Any]:
        """The `datasets` feature description LeRobot stores in the data parquet's metadata."""
        features: dict[str, Any] = {
            key: {"feature": {"dtype": str(dtype), "_type": "Value"}, "length": d, "_type": "List"}
            for key, (d, dtype) in self.arrays.items()
        }
        features["timestamp"] = {"dtype": "float32", "_type": "Value"}
        features |= {key: {"dtype": "int64", "_type": "Value"} for key in _INDEX_COLUMNS[1:]}
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
    }


def _data_table(columns: Mapping[str, np.ndarray]) -> pa.Table:
    arrays = {}
    for key, values in columns.items():
        if values.ndim == 2:
            arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[key] = pa.array(values)
    return pa.table(arrays)


def _write_parquet(table: pa.Table, path: Path, hf_features: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if hf_features is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps(hf_features)})
    pq.write_table(table, path)


class _VideoWriter:
    """One camera's MP4: every episode's frames appended to a single stream."""

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

    def add(self, frames: np.ndarray) -> None:
        """Append (n, H, W, 3) uint8 frames."""
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.n_frames
            self._container.mux(self._stream.encode(frame))
            self.n_frames += 1

    def close(self) -> None:
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
