"""The export registry: each format is a small class that writes store records to a path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from atomvla.errors import UserError
from atomvla.registry import Registry
from atomvla.schemas import Decomposition, EpisodeMeta, Provenance, Status

EXPORTERS: Registry[type[Exporter]] = Registry(
    "export format", plugins=[f"atomvla.curate.exports.{m}" for m in ("jsonl", "lerobot", "parquet")]
)
Progress = Callable[[], None]


def register_exporter(cls: type[Exporter]) -> type[Exporter]:
    return EXPORTERS.register(cls)


class ExportError(UserError):
    """The selection cannot be exported (nothing selected, mixed frame rates, ...); says why in one line."""


class Exporter(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    # Which episodes `export` takes when no --status is given: datasets for training take the
    # accepted ones; the interchange file takes every episode's latest revision.
    default_status: ClassVar[Status | None] = None
    # Folder exports (datasets) refuse an empty selection; a file export may be empty.
    is_folder: ClassVar[bool] = False

    @abstractmethod
    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path,
              proposals: Mapping[str, Sequence[Provenance]] | None = None, progress: Progress | None = None,
              overwrite: bool = False) -> None:
        """Write every (episode, latest decomposition) pair to `out`, atomically (an existing `out`
        is refused, or replaced once the new one is complete with `overwrite`: `atomvla.output`);
        `proposals` (episode id -> backend provenances from the store's history) goes into the
        provenance records; `progress()`, where given, is called after each episode of a long export."""


def get_exporter(name: str, **options) -> Exporter:
    """The exporter registered as `name`, built with its `options` (see each exporter's __init__)."""
    return EXPORTERS[name](**options)
