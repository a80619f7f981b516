"""What the two LeRobot readers share: `meta/info.json`, feature names, reading array columns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from atomvla.curate.errors import SourceError
from atomvla.curate.sources.naming import numbered_names

INFO = Path("meta") / "info.json"
READER_OF_VERSION = {"v2.0": "lerobot_v21", "v2.1": "lerobot_v21", "v3.0": "lerobot_v3"}
# Per-frame bookkeeping columns LeRobot writes next to the real signals.
# subtask_index is a curated export's label column, not a signal.
BOOKKEEPING = {"timestamp", "frame_index", "episode_index", "index", "task_index", "subtask_index"}
_NUMERIC = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


def codebase_version(root: Path) -> str | None:
    """The dataset's LeRobot version; None if `root` is no LeRobot dataset; SourceError if unsupported."""
    path = root / INFO
    if not path.is_file():
        return None
    version = _load_json(path).get("codebase_version")
    if version not in READER_OF_VERSION:
        supported = ", ".join(READER_OF_VERSION)
        raise SourceError(path, f"unsupported LeRobot codebase_version {version!r} (supported: {supported})")
    return version


@dataclass(frozen=True)
class LeRobotInfo:
    path: Path
    fps: float
    data_path: str
    video_path: str | None
    chunks_size: int
    features: dict[str, dict[str, Any]]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def array_keys(self) -> list[str]:
        """Per-frame numeric signals (`action`, `observation.state`, ...), not bookkeeping columns."""
        return [k for k, f in self.features.items() if f.get("dtype") in _NUMERIC and k not in BOOKKEEPING]

    @property
    def feature_names(self) -> dict[str, list[str]]:
        return {k: _dim_names(k, self.features[k]) for k in self.array_keys}


def read_info(root: Path, versions: set[str]) -> LeRobotInfo:
    """`meta/info.json`, checked to be one of `versions` and to carry the keys a reader needs."""
    path = root / INFO
    version = codebase_version(root)
    if version not in versions:
        raise SourceError(path, f"codebase_version is {version!r}; this reader reads {', '.join(sorted(versions))}")
    info = _load_json(path)
    missing = [k for k in ("fps", "data_path", "features") if k not in info]
    if missing:
        raise SourceError(path, f"missing keys: {', '.join(missing)}")
    return LeRobotInfo(
        path=path,
        fps=float(info["fps"]),
        data_path=info["data_path"],
        video_path=info.get("video_path"),
        chunks_size=int(info.get("chunks_size", 1000)),
        features=info["features"],
    )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(path, f"not valid JSON: {exc}") from exc


def _dim_names(key: str, feature: dict[str, Any]) -> list[str]:
    shape = feature.get("shape") or [1]
    dim = int(np.prod(shape))
    names = feature.get("names")
    # v2.x datasets often wrap the list in a dict, e.g. {"motors": [...]}.
    if isinstance(names, dict):
        names = [n for group in names.values() for n in (group if isinstance(group, list) else [group])]
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return numbered_names(key, dim)


def missing_columns(schema: pa.Schema, required: list[str]) -> list[str]:
    return [c for c in required if c not in schema.names]


def column_arrays(table: pa.Table, keys: list[str]) -> dict[str, np.ndarray]:
    """Each column as an (n_frames, d) float32 array; list columns give d > 1, scalars d = 1."""
    out = {}
    for key in keys:
        column = table.column(key).combine_chunks()
        values = column.flatten() if _is_list(column.type) else column
        out[key] = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(table), -1)
    return out


def _is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)


def check_entry(index_file: Path, index: int, length: int, tasks: list[str]) -> None:
    """The checks every LeRobot episode-index entry must pass, whatever the version."""
    if length <= 0:
        raise SourceError(index_file, "episode has zero frames", index)
    if not tasks:
        raise SourceError(index_file, "episode has no task", index)
