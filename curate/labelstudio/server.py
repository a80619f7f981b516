"""The Label Studio server, through `label_studio_sdk` 2.x: connection checks and the few calls
the round trip needs. Every failure is a `LabelStudioError` with a one-line message; the token
(from `LABEL_STUDIO_API_KEY` only) never appears in one."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from atomvla.errors import UserError

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0
IMPORT_BATCH = 500  # tasks per import request


class LabelStudioError(UserError):
    """The server cannot be used for the round trip; the message says why in one line."""


@dataclass(frozen=True)
class Annotation:
    task_id: int
    annotation_id: int
    episode_id: str
    author: str
    updated_at: str
    result: list[dict[str, Any]]


class Server:
    def __init__(self, url: str):
        """Check that `url` answers and accepts the token before anything is created or written."""
        self.url = url.rstrip("/")
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise LabelStudioError(f"set {TOKEN_ENV} to a Label Studio access token (Account & Settings > Access Token)")
        try:
            httpx.get(f"{self.url}/health", timeout=CONNECT_TIMEOUT_S).raise_for_status()
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"{self.url}: Label Studio does not answer ({type(exc).__name__}: {exc})") from None
        self._client = LabelStudio(base_url=self.url, api_key=token, timeout=REQUEST_TIMEOUT_S)
        self.user = self._call("check the token", lambda: self._client.users.whoami())

    def _call(self, what: str, fn):
        try:
            return fn()
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise LabelStudioError(f"{self.url}: the token in {TOKEN_ENV} was refused (HTTP {exc.status_code})") from None
            raise LabelStudioError(f"{self.url}: cannot {what}: HTTP {exc.status_code} {_short(exc.body)}") from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"{self.url}: cannot {what}: {type(exc).__name__}: {exc}") from None

    def project_id(self, title: str) -> int | None:
        """The id of the project titled exactly `title`, None if there is none."""
        found = [p.id for p in self._call("list projects", lambda: list(self._client.projects.list(title=title)))
                 if p.title == title]
        if len(found) > 1:
            raise LabelStudioError(f"{self.url}: {len(found)} projects are titled {title!r}; rename all but one")
        return found[0] if found else None

    def create_project(self, title: str, label_config: str, description: str) -> int:
        project = self._call("create the project", lambda: self._client.projects.create(
            title=title, label_config=label_config, description=description))
        return project.id

    def delete_project(self, project_id: int) -> None:
        self._call("delete the project", lambda: self._client.projects.delete(project_id))

    def add_local_storage(self, project_id: int, folder: Path, title: str) -> None:
        """Serve the files under `folder` (inside the server's LOCAL_FILES_DOCUMENT_ROOT) to the project."""
        self._call("add the local-files storage", lambda: self._client.import_storage.local.create(
            project=project_id, path=str(folder), title=title, use_blob_urls=False))

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = list(tasks[start : start + IMPORT_BATCH])
            self._call("import the tasks", lambda: self._client.projects.import_tasks(project_id, request=batch))

    def annotations(self, project_id: int) -> Iterator[Annotation]:
        """Every submitted (not skipped) annotation of the project, oldest first per task."""
        users = {u.id: u.email or u.username for u in self._call("list users", lambda: self._client.users.list())}
        tasks = self._call("list the tasks", lambda: list(self._client.tasks.list(project=project_id, fields="all")))
        for task in tasks:
            for ann in sorted(task.annotations or [], key=lambda a: _get(a, "id")):
                if _get(ann, "was_cancelled"):
                    continue
                yield Annotation(
                    task_id=task.id,
                    annotation_id=_get(ann, "id"),
                    episode_id=str((task.data or {}).get("episode_id", "")),
                    author=users.get(_get(ann, "completed_by"), f"label-studio-user-{_get(ann, 'completed_by')}"),
                    updated_at=str(_get(ann, "updated_at") or _get(ann, "created_at") or ""),
                    result=list(_get(ann, "result") or []),
                )


def _get(obj: Any, key: str) -> Any:
    """A field of an SDK model or of a plain dict (annotations come back as either)."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _short(body: Any) -> str:
    text = " ".join(str(body).split())
    return text if len(text) <= 200 else text[:200] + "..."
