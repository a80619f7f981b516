"""Curated episodes for training: a LeRobot v3 export with `meta/atomvla_subtasks.jsonl`, or a
store and its sources (each episode's latest accepted decomposition), read the same way."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from atomvla.errors import UserError
from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError, StoreError
from atomvla.schemas import EpisodeMeta, Status, Subtask

SUBTASKS_FILE = Path("meta") / "atomvla_subtasks.jsonl"


class DatasetError(UserError, ValueError):
    """A dataset that cannot be trained on; the message names the file, the episode and the problem."""


@dataclass(frozen=True)
class TrainEpisode:
    """One demonstration with its subtasks; arrays and frames load lazily from its source."""

    meta: EpisodeMeta
    subtasks: tuple[Subtask, ...]

    @cached_property
    def episode(self) -> Episode:
        return Episode(self.meta)

    def array(self, key: str) -> np.ndarray:
        """(n_frames, d) float32 array `key` (e.g. `action`)."""
        arrays = self.episode.arrays
        if key not in arrays:
            raise DatasetError(
                f"{self.meta.source}: episode {self.meta.episode_id} has no {key!r} feature "
                f"(has {', '.join(sorted(arrays)) or 'none'})"
            )
        return np.asarray(arrays[key], dtype=np.float32).reshape(self.meta.n_frames, -1)

    def subtask_at(self, t: int) -> int:
        """Index of the subtask holding frame t."""
        for i, s in enumerate(self.subtasks):
            if s.start_frame <= t < s.end_frame:
                return i
        raise IndexError(f"episode {self.meta.episode_id}: frame {t} is outside [0, {self.meta.n_frames})")

    @property
    def boundaries(self) -> list[int]:
        return [s.start_frame for s in self.subtasks[1:]]


def dataset_ref(dataset: str | Path) -> str:
    """How a checkpoint records its dataset: an absolute path if it is local, else the Hub id."""
    path = Path(dataset).expanduser()
    return str(path.resolve()) if path.exists() else str(dataset)


def run_dataset(dataset: str | Path | None, prior: dict) -> str:
    """The dataset a run trains on, as its checkpoint records it: the one given, else the resumed run's
    (`prior`, its trainer state)."""
    if not (dataset or prior.get("dataset")):
        raise DatasetError("no dataset: pass --dataset (an export folder, a Hub repo id, or a store file)")
    return dataset_ref(dataset or prior["dataset"])


def open_dataset(dataset: str | Path, status: str = "accepted") -> list[TrainEpisode]:
    """The episodes of `dataset`: a store file (`*.sqlite`), a curated export folder, or a Hub id."""
    path = Path(dataset).expanduser()
    if path.is_file() and path.suffix in (".jsonl", ".json", ".parquet"):
        # `atom-curate export`'s default is a JSONL file: the subtasks alone, no frames or actions to train on.
        raise DatasetError(f"{path}: an exported file holds the subtasks but no frames or actions; train on "
                           "an `atom-curate export --to lerobot DIR` folder or on the store file (.sqlite)")
    if path.is_file():
        return _from_store(path, status)
    from atomvla.curate.sources.base import resolve

    try:
        root = resolve(str(dataset))
    except SourceError as exc:
        raise DatasetError(str(exc)) from exc
    return _from_export(root)


def _from_export(root: Path) -> list[TrainEpisode]:
    from atomvla.curate.interchange_io import read_jsonl
    from atomvla.curate.sources.lerobot_v3 import LeRobotV3Reader

    if not LeRobotV3Reader.detect(root):
        raise DatasetError(f"{root}: not a LeRobot v3.0 dataset (no meta/info.json with codebase_version v3.0)")
    subtasks_file = root / SUBTASKS_FILE
    if not subtasks_file.is_file():
        raise DatasetError(
            f"{subtasks_file}: no subtasks in this dataset; export a curated one with "
            "`atom-curate export --to lerobot DIR`"
        )
    try:
        lines, problems = read_jsonl(subtasks_file)
        metas = list(LeRobotV3Reader(root, str(root)).scan())
    except SourceError as exc:
        raise DatasetError(str(exc)) from exc
    if problems:
        raise DatasetError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    by_index = {line.record.episode_index: line for line in lines}
    episodes = []
    for meta in metas:
        if isinstance(meta, SourceError):
            raise DatasetError(str(meta))
        line = by_index.get(meta.episode_index)
        if line is None:
            raise DatasetError(f"{subtasks_file}: no subtasks for episode {meta.episode_index}")
        if line.record.n_frames != meta.n_frames:
            raise DatasetError(
                f"{subtasks_file}:{line.lineno}: episode {meta.episode_index} has {line.record.n_frames} frames "
                f"in the subtasks file, {meta.n_frames} in the data"
            )
        # The curated id (`<source dataset>/<index>`) names the episode in reports, as in the store.
        meta = meta.model_copy(update={"episode_id": line.record.episode_id or meta.episode_id})
        episodes.append(TrainEpisode(meta, tuple(line.record.subtasks)))
    if not episodes:
        raise DatasetError(f"{root}: no episodes")
    return episodes


def _from_store(path: Path, status: str) -> list[TrainEpisode]:
    from atomvla.curate.store import Store

    try:
        store = Store(path, create=False)
    except StoreError as exc:
        raise DatasetError(str(exc)) from exc
    try:
        latest = store.latest_all(status=None if status == "any" else Status(status))
        episodes = [
            TrainEpisode(m, latest[m.episode_id].subtasks)
            for m in store.episodes()
            if m.episode_id in latest and latest[m.episode_id].subtasks
        ]
    finally:
        store.close()
    if not episodes:
        raise DatasetError(
            f"{path}: no subtasks: no episode's latest decomposition is {status} "
            "(review them with atom-review, or import some with atom-curate import-annotations"
            + ("; data.status=any trains on every episode's latest one)" if status == "accepted" else ")")
        )
    return episodes


def split_episodes(episodes: list[TrainEpisode], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, held-out ids): a seeded shuffle of the episode ids, at least one of each when possible."""
    ids = sorted(e.meta.episode_id for e in episodes)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0 and len(ids) > 1:
        n_val = min(max(n_val, 1), len(ids) - 1)
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in set(val)], val
