"""What every dataset export derives from (episode, decomposition) pairs: subtask indices per frame
and the interchange lines with full provenance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from atomvla.schemas import Decomposition, EpisodeMeta, InterchangeRecord, Provenance

# episode_id -> the backend proposals made for the episode (what made its subtasks, whoever
# accepted them), from the store's history.
Proposals = Mapping[str, Sequence[Provenance]]


def proposals_of(history: Iterable[Decomposition]) -> list[Provenance]:
    """The provenance of each backend's latest proposal in an episode's history."""
    latest: dict[str, Provenance] = {}
    for dec in history:
        if dec.provenance is not None and dec.provenance.backend == dec.author:
            latest[dec.author] = dec.provenance
    return list(latest.values())


def episode_subtask_index(dec: Decomposition, vocabulary: dict[str, int]) -> np.ndarray:
    """(n_frames,) int64: each frame's subtask as an index into `vocabulary` (instruction -> index),
    which grows with instructions not seen before."""
    out = np.empty(dec.n_frames, dtype=np.int64)
    for s in dec.subtasks:
        out[s.start_frame : s.end_frame] = vocabulary.setdefault(s.instruction, len(vocabulary))
    return out


def reviewed_by_person(dec: Decomposition) -> bool:
    """A revision a person authored: not written by the backend named in its provenance."""
    return dec.provenance is None or dec.author != dec.provenance.backend


def interchange_lines(records: Sequence[tuple[EpisodeMeta, Decomposition]], proposals: Proposals | None = None) -> list[str]:
    """One interchange JSON line per record; `episode_index` is the record's position (the exported
    dataset's episode index), `source_*` say where the episode came from, `proposals` which
    backends proposed subtasks for it (model, prompt version, cost)."""
    lines = []
    for i, (meta, dec) in enumerate(records):
        extra = {
            "source": meta.source,
            "source_format": meta.source_format,
            "source_episode_index": meta.episode_index,
            "created_at": dec.created_at.isoformat(),
            "reviewed_by_person": reviewed_by_person(dec),
        }
        if dec.provenance is not None:
            extra["provenance"] = dec.provenance.model_dump(exclude_none=True)
        if dec.note:
            extra["note"] = dec.note
        if proposals and proposals.get(dec.episode_id):
            extra["proposals"] = [p.model_dump(exclude_none=True) for p in proposals[dec.episode_id]]
        base = InterchangeRecord.from_decomposition(dec, i, meta.task, meta.fps)
        lines.append(InterchangeRecord(**base.model_dump(), **extra).model_dump_json(exclude_none=True))
    return lines
