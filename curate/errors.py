"""Errors about input data: each names the file, the episode (when there is one) and the problem."""

from __future__ import annotations

from pathlib import Path

from atomvla.errors import UserError


class SourceError(UserError):
    """A source, or one episode of it, cannot be read."""

    def __init__(self, file: str | Path, problem: str, episode: int | str | None = None):
        self.file = str(file)
        self.problem = problem
        self.episode = episode
        where = self.file if episode is None else f"{self.file}: episode {episode}"
        super().__init__(f"{where}: {problem}")


class StoreError(UserError):
    """The store file is not usable (not an atomvla store, newer schema, ...)."""


class StaleRevisionError(StoreError):
    """An edit was based on a revision that is no longer the latest."""
