"""The export registry: each format is a small class that writes store records to a path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from atomvla.schemas import Decomposition, EpisodeMeta

EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    EXPORTERS[cls.name] = cls
    return cls


class Exporter(ABC):
    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path) -> None:
        """Write every (episode, latest decomposition) pair to `out`, atomically."""


def get_exporter(name: str) -> Exporter:
    from atomvla.curate.exports import jsonl  # noqa: F401  (registers the built-in exporters)

    if name not in EXPORTERS:
        raise KeyError(f"unknown export format {name!r} (known: {', '.join(sorted(EXPORTERS))})")
    return EXPORTERS[name]()
