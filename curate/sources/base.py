"""The reader interface and the registry that picks a reader for a source."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from atomvla.curate.errors import SourceError
from atomvla.registry import Registry
from atomvla.schemas import EpisodeMeta

# Detection tries the readers in this order.
READERS: Registry[type[Reader]] = Registry(
    "source format",
    plugins=[f"atomvla.curate.sources.{m}" for m in ("hdf5", "lerobot_v3", "lerobot_v21", "video_folder")],
)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def register(cls: type[Reader]) -> type[Reader]:
    return READERS.register(cls)


class Reader(ABC):
    """Turns one source (a folder or file) into episodes.

    `scan` yields an `EpisodeMeta` per readable episode and a `SourceError` per bad one, so an
    import can report and skip bad episodes; problems with the whole source raise `SourceError`.
    """

    name: ClassVar[str]

    def __init__(self, root: Path, source: str):
        self.root = root
        self.source = source

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """True if `root` looks like this reader's format (cheap: look at names, not data)."""

    @abstractmethod
    def scan(self) -> Iterator[EpisodeMeta | SourceError]:
        """Every episode of the source, in order."""

    def episode_meta(self, dataset: str, index: int, **fields) -> EpisodeMeta:
        """An `EpisodeMeta` of this source, with the id and provenance fields every reader shares."""
        return EpisodeMeta(
            episode_id=f"{dataset}/{index}",
            dataset=dataset,
            episode_index=index,
            source=self.source,
            source_format=self.name,
            **fields,
        )

    @abstractmethod
    def load_arrays(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        """The episode's per-frame arrays (`action`, `observation.state`, ...), each (n_frames, d)."""


def resolve(source: str | Path) -> Path:
    """A local path, or a Hub dataset repo id downloaded to the local cache."""
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    if isinstance(source, str) and _HUB_ID.match(source):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id=source, repo_type="dataset"))
        except Exception as exc:  # offline, missing repo, auth: all reported the same way
            raise SourceError(source, f"not a local path, and the Hub download failed: {exc}") from exc
    raise SourceError(source, "no such file or folder")


def detect_format(root: Path) -> str:
    for name, cls in READERS.items():
        if cls.detect(root):
            return name
    known = ", ".join(READERS)
    raise SourceError(root, f"format not recognised (known formats: {known})")


@lru_cache(maxsize=32)
def open_source(source: str, format: str | None = None) -> Reader:
    """The reader for `source`; cached so lazily loaded episodes share one open reader.

    Episodes record a local source by its absolute path (a relative one would be read against
    whatever folder a later command runs in) and a Hub source by its repo id."""
    root = resolve(source)
    name = format or detect_format(root)
    if name not in READERS:
        raise SourceError(source, READERS.unknown(name))
    local = Path(source).expanduser().exists()
    return READERS[name](root, str(root) if local else source)
