"""`--episodes` selections: a comma list of episode ids, episode indices and index ranges (`0-5,7`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from atomvla.errors import UserError
from atomvla.schemas import EpisodeMeta

_RANGE = re.compile(r"^(\d+)-(\d+)$")


class SelectionError(UserError, ValueError):
    """A selection item that is malformed or selects no episode."""


def select(episodes: Sequence[EpisodeMeta], selection: str | None) -> list[EpisodeMeta]:
    """The episodes `selection` names, in store order; all of them when it is None.

    An integer is an `episode_index` (in every dataset of the store), `a-b` an inclusive range of
    them, anything else an `episode_id`. Every item must select at least one episode.
    """
    if selection is None:
        return list(episodes)
    wanted: set[str] = set()
    for item in (part.strip() for part in selection.split(",")):
        if not item:
            raise SelectionError(f"--episodes {selection!r}: empty item")
        if item.isdigit():
            lo = hi = int(item)
        elif (m := _RANGE.match(item)) is not None:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise SelectionError(f"--episodes: range {item!r} is backwards (write {hi}-{lo})")
        else:
            if not any(e.episode_id == item for e in episodes):
                raise SelectionError(f"--episodes: no episode {item!r} in the store")
            wanted.add(item)
            continue
        hits = {e.episode_id for e in episodes if lo <= e.episode_index <= hi}
        if not hits:
            raise SelectionError(f"--episodes: {item!r} selects no episode (indices in the store: {_span(episodes)})")
        wanted |= hits
    return [e for e in episodes if e.episode_id in wanted]


def _span(episodes: Sequence[EpisodeMeta]) -> str:
    if not episodes:
        return "none"
    idx = [e.episode_index for e in episodes]
    return f"{min(idx)}-{max(idx)}"
