"""`export --to parquet`: a plain dataset that `datasets.load_dataset(DIR)` loads.

Two configs, named in the README card's YAML: `frames` (the default: one row per frame with the
episode's arrays and the frame's subtask, instruction and skill) and `episodes` (one row per
episode with its subtasks and provenance, the interchange record). Frames are not included;
the `source` column says where the video lives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atomvla.curate.episode import Episode
from atomvla.curate.exports.base import ExportError, Exporter, Progress, register_exporter
from atomvla.output import new_folder
from atomvla.curate.exports.records import Proposals, episode_subtask_index, interchange_lines
from atomvla.schemas import Decomposition, EpisodeMeta, Status

FRAMES = "data/frames/train-00000-of-00001.parquet"
EPISODES = "data/episodes/train-00000-of-00001.parquet"

CARD = """---
configs:
- config_name: frames
  default: true
  data_files:
  - split: train
    path: data/frames/*.parquet
- config_name: episodes
  data_files:
  - split: train
    path: data/episodes/*.parquet
tags:
- atomvla
- robotics
- subtasks
---
# Subtask annotations ({n_episodes} episodes, {n_frames} frames)

Exported by `atom-curate export --to parquet`.

- `frames` (default config): one row per frame: `episode_index`, `frame_index`, `timestamp`,
  `task`, `subtask_index`, `subtask` (instruction), `skill`, and the per-frame arrays
  ({arrays}).
- `episodes`: one row per episode: its subtasks (`start_frame` inclusive, `end_frame`
  exclusive, `instruction`, `skill`), status, author, revision, `provenance` and the backend
  `proposals` behind it (JSON).

```python
from datasets import load_dataset
frames = load_dataset("path/to/this/folder", split="train")
episodes = load_dataset("path/to/this/folder", "episodes", split="train")
```
"""


@register_exporter
class ParquetExporter(Exporter):
    name = "parquet"
    description = "plain parquet dataset (frames and episodes configs) with a README card for `datasets`"
    default_status = Status.accepted
    is_folder = True

    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path,
              proposals: Proposals | None = None, progress: Progress | None = None, overwrite: bool = False) -> None:
        _check_same_arrays(records)
        vocabulary: dict[str, int] = {}
        frames = []
        for i, (meta, dec) in enumerate(records):
            frames.append(_frame_table(i, meta, dec, vocabulary))
            if progress is not None:
                progress()
        episodes = [json.loads(line) for line in interchange_lines(records, proposals)]
        for ep in episodes:  # free-form records, kept as JSON text so every row has one schema
            ep["provenance"] = json.dumps(ep.get("provenance", {}))
            ep["proposals"] = json.dumps(ep.get("proposals", []))
        columns = ["episode_index", "episode_id", "task", "n_frames", "fps", "subtasks", "status", "author",
                   "revision", "source", "source_episode_index", "reviewed_by_person", "provenance", "proposals"]
        episode_table = pa.Table.from_pylist([{c: ep.get(c) for c in columns} for ep in episodes])
        arrays = ", ".join(sorted(records[0][0].feature_names)) or "none"
        with new_folder(out, overwrite) as tmp:
            for rel, table in ((FRAMES, pa.concat_tables(frames, promote_options="none")), (EPISODES, episode_table)):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, tmp / rel)
            (tmp / "README.md").write_text(CARD.format(
                n_episodes=len(records), n_frames=sum(m.n_frames for m, _ in records), arrays=arrays))


def _check_same_arrays(records: Sequence[tuple[EpisodeMeta, Decomposition]]) -> None:
    """One frames table has one set of array columns: refuse episodes whose arrays differ, before any is read."""

    def arrays(meta: EpisodeMeta) -> str:
        return ", ".join(f"{k} ({len(v)})" for k, v in sorted(meta.feature_names.items())) or "no arrays"

    first = records[0][0]
    other = next((m for m, _ in records if arrays(m) != arrays(first)), None)
    if other is not None:
        raise ExportError(
            f"the selected episodes have different arrays: episode {first.episode_id} has {arrays(first)}, "
            f"episode {other.episode_id} has {arrays(other)}; export each dataset separately (--dataset-name)"
        )


def _frame_table(index: int, meta: EpisodeMeta, dec: Decomposition, vocabulary: dict[str, int]) -> pa.Table:
    n = meta.n_frames
    subtask_index = episode_subtask_index(dec, vocabulary)
    which = np.repeat(np.arange(len(dec.subtasks)), [s.n_frames for s in dec.subtasks])
    frame_index = np.arange(n, dtype=np.int64)
    columns: dict[str, pa.Array] = {
        "episode_index": pa.array(np.full(n, index, dtype=np.int64)),
        "episode_id": pa.array([meta.episode_id] * n),
        "frame_index": pa.array(frame_index),
        "timestamp": pa.array((frame_index / meta.fps).astype(np.float32)),
        "task": pa.array([meta.task] * n),
        "subtask_index": pa.array(subtask_index),
        "subtask": pa.array([dec.subtasks[k].instruction for k in which]),
        "skill": pa.array([dec.subtasks[k].skill for k in which]),
    }
    for key, values in sorted(Episode(meta).arrays.items()):
        columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return pa.table(columns)
