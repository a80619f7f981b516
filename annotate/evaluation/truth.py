"""Ground truth for evaluation: a JSON Lines file (interchange shape) matched to stored episodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from atomvla.errors import UserError
from atomvla.curate.errors import SourceError
from atomvla.curate.interchange_io import match_episodes, read_jsonl
from atomvla.schemas import EpisodeMeta, InterchangeRecord, check_subtasks


class TruthError(UserError, ValueError):
    """A truth file that cannot be used; one line per problem, each naming the file and line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        shown = self.problems[:20] + ([f"... and {len(self.problems) - 20} more"] if len(self.problems) > 20 else [])
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class TruthEpisode:
    meta: EpisodeMeta
    record: InterchangeRecord


def load_truth(path: Path, episodes: Sequence[EpisodeMeta], dataset: str | None = None) -> list[TruthEpisode]:
    """Every line of `path` with its stored episode. Any bad line, any truth episode missing from
    the store, or truth subtasks that break the contract make the whole file an error: scores over
    part of a truth set would read as scores over all of it."""
    try:
        lines, problems = read_jsonl(path)
    except SourceError as exc:  # missing or unreadable file
        raise TruthError([str(exc)]) from exc
    if not lines and not problems:
        problems.append(f"{path}: no records")
    matched, unmatched = match_episodes(path, lines, episodes, dataset)
    problems += unmatched
    out = []
    for line, meta in matched:
        broken = check_subtasks(line.record.subtasks, line.record.n_frames)
        if broken:
            problems.append(f"{path}:{line.lineno}: episode {meta.episode_id}: " + "; ".join(broken))
        else:
            out.append(TruthEpisode(meta, line.record))
    if problems:
        raise TruthError(problems)
    return out
