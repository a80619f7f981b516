"""Reading interchange / ground-truth JSON Lines files and matching their lines to stored episodes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from atomvla.curate.dataset_names import unknown_dataset
from atomvla.curate.errors import SourceError
from atomvla.errors import UserError
from atomvla.schemas import EpisodeMeta, InterchangeRecord


@dataclass(frozen=True)
class Line:
    lineno: int
    record: InterchangeRecord


def _why(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors()
    )


def read_jsonl(path: Path) -> tuple[list[Line], list[str]]:
    """The well-formed lines of `path`, and one problem per bad line (`FILE:LINE: ...`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from exc
    lines: list[Line] = []
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            lines.append(Line(lineno, InterchangeRecord.model_validate(json.loads(raw))))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{lineno}: not valid JSON ({exc.msg})")
        except ValidationError as exc:
            problems.append(f"{path}:{lineno}: {_why(exc)}")
    return lines, problems


def match_episodes(
    path: Path, lines: Sequence[Line], episodes: Sequence[EpisodeMeta], dataset: str | None = None
) -> tuple[list[tuple[Line, EpisodeMeta]], list[str]]:
    """Pair each line with its stored episode: by `episode_id` when the line has one, else by
    `episode_index` within `dataset` (needed only when the store holds several datasets).

    A `dataset` the store does not hold, or lines known by index only in a store of several
    datasets with none named, stop the whole file: one line says so, not one per line."""
    by_id = {m.episode_id: m for m in episodes}
    datasets = sorted({m.dataset for m in episodes})
    if lines and not datasets:
        raise UserError(f"{path}: the store holds no episodes; import the dataset first (`atom-curate import SOURCE`)")
    if dataset is not None and dataset not in datasets:
        raise UserError(unknown_dataset(dataset, datasets))
    if dataset is None and len(datasets) == 1:
        dataset = datasets[0]
    by_index_only = [line for line in lines if line.record.episode_id not in by_id]
    if dataset is None and by_index_only:  # several datasets, none named
        raise SourceError(path, f"{len(by_index_only)} line(s) match no episode_id of the store, and the store holds "
                                f"several datasets ({', '.join(datasets)}): name the one their episode_index counts in "
                                "with --dataset-name")
    by_index = {m.episode_index: m for m in episodes if m.dataset == dataset}
    matched: list[tuple[Line, EpisodeMeta]] = []
    problems: list[str] = []
    for line in lines:
        rec = line.record
        where = f"{path}:{line.lineno}: episode {rec.episode_id or rec.episode_index}"
        if rec.episode_id is not None and rec.episode_id in by_id:
            meta = by_id[rec.episode_id]
        elif rec.episode_index in by_index:
            meta = by_index[rec.episode_index]
        else:
            problems.append(f"{where}: no such episode in the store (dataset {dataset})")
            continue
        if meta.n_frames != rec.n_frames:
            problems.append(f"{where}: the file says {rec.n_frames} frames, the episode has {meta.n_frames}")
            continue
        matched.append((line, meta))
    return matched, problems
