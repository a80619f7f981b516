"""Names readers give things: the dataset part of episode ids, and per-dimension array names."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path


def dataset_name(root: Path, source: str) -> str:
    """The folder (or file stem) name of a local source; the repo id of a Hub source.

    `resolve` downloads Hub sources to a cache folder whose name is a commit hash, so the name
    must come from `source` there.
    """
    if Path(source).expanduser().exists():
        return root.stem if root.is_file() else root.name
    return source


def numbered_names(key: str, dim: int) -> list[str]:
    """`<last part of key>_<i>`: the fallback when a format carries no dimension names."""
    stem = key.rsplit(".", 1)[-1]
    return [f"{stem}_{i}" for i in range(dim)]


def natural_key(text: str) -> tuple[str | int, ...]:
    """Sort key putting `demo_2` before `demo_10` and `ep9.mp4` before `ep10.mp4`."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def folder_rate(rates: Iterable[float]) -> float | None:
    """The one frame rate of a folder's dataset: the rate most of its files share (a tie: the first
    file's); None for no files."""
    counted = Counter(rates).most_common(1)
    return counted[0][0] if counted else None
