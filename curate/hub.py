"""`atom-curate push`: publish an export folder to the Hugging Face Hub.

Creates the dataset repo if missing, writes the dataset card (README.md) into the folder, uploads
the folder with `upload_folder` (large files go through LFS or Xet; files the Hub already holds
are not sent again, so re-running an interrupted push resumes it), and tags the commit: the
release tag (`--revision`), and for LeRobot exports also LeRobot's codebase-version tag, which
`LeRobotDataset` resolves when it downloads. The token comes from `hf auth login` or `HF_TOKEN`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import (HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                   RevisionNotFoundError)
from huggingface_hub.utils import httpx as http_client  # the HTTP library huggingface_hub itself uses

from atomvla.errors import UserError
from atomvla.curate.card import build_card, export_kind
from atomvla.output import write_text

log = logging.getLogger(__name__)

LEROBOT_VERSION_TAG = "v3.0"  # LeRobot's CODEBASE_VERSION of the exported layout
# How huggingface_hub's wrapper of a failed file upload names the file.
_UPLOADING = re.compile(r"Error while uploading '(.+)' to the Hub")

# Refusals that need more than "re-run to resume" (which any other status gets, e.g. 400 on an
# interrupted upload, 429, 5xx): what is wrong and what to do about it.
_REFUSAL_ADVICE = {
    401: "the Hub did not accept the token (HTTP 401): check HF_TOKEN, or log in again with `hf auth login`",
    403: "the token may not write to this repo (HTTP 403): check the repo id, that you may create or write "
         "repos under {namespace!r}, and that the token has write access",
    404: "the Hub has no such dataset repo, or not one this token can see (HTTP 404): check the repo id and "
         "your rights to it",
    # huggingface_hub's create_repo(exist_ok=True) absorbs the 409 of an existing repo: this one is a
    # commit or tag that met another one made at the same time.
    409: "the Hub refused the push as a conflict (HTTP 409): another commit or tag reached this repo at the "
         "same time (its branch moved); make sure no other push to it is running, then re-run",
    # The Hub's answer to a commit whose branch moved since the client read it ("A commit has happened
    # since"); huggingface_hub does not retry it. upload_folder adds and replaces files, deleting none.
    412: "the branch moved under this push (HTTP 412): someone else committed to this repo while it ran (another "
         "push, an edit on the Hub); look at what they committed, then re-run: the re-run commits this export on "
         "top of it (files the Hub already holds are not sent again; this export's files replace theirs at the "
         "same paths, their other files stay)",
    # A file is named only where huggingface_hub's upload error names it: a file's own upload on its LFS
    # path. Its Xet path (taken when hf_xet is installed) sends files in chunks to Xet storage, which
    # answers no upload with 413 (xet-core's CAS API) and whose errors reach us as hf_xet's own
    # exceptions, not HTTP errors; there a 413 comes from the Hub's API (preupload, commit), naming no file.
    413: "the Hub refused a request of the push as too large (HTTP 413): a commit carried too many files, or a "
         "file is over the Hub's size limit for one file (through Xet, huggingface_hub's path when hf_xet is "
         "installed, the refusal does not name it) and must be split into smaller files; re-running unchanged "
         "fails the same way",
    422: "the Hub could not process the request (HTTP 422): something it names is invalid, e.g. the repo id, the "
         "--revision tag's name or the dataset card's metadata; fix that and push again (re-running unchanged "
         "fails the same way)",
}
_FILE_TOO_LARGE = ("the Hub refused the upload of {file!r} as too large (HTTP 413): the file is over the Hub's size "
                   "limit for one file and must be split into smaller files; re-running unchanged fails the same way")


class PushError(UserError):
    """The push cannot start or did not complete; the message says why in one line."""


@dataclass(frozen=True)
class PushResult:
    repo_url: str
    commit: str
    tags: tuple[str, ...]


def default_tag() -> str:
    return datetime.now(timezone.utc).strftime("atomvla-%Y%m%d-%H%M%S")


def push(folder: Path, repo_id: str, *, private: bool = False, tag: str | None = None,
         license: str | None = None, endpoint: str | None = None) -> PushResult:
    """Publish `folder` (an `export --to lerobot|parquet` output) to dataset repo `repo_id`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PushError(f"{folder}: no such folder")
    try:
        kind = export_kind(folder)
    except ValueError as exc:
        raise PushError(str(exc)) from exc
    token = get_token()
    if not token:
        raise PushError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN; nothing was uploaded")
    api = HfApi(endpoint=endpoint, token=token)
    tag = tag or default_tag()
    try:
        _check_tag_is_free(api, repo_id, tag)
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        write_text(folder / "README.md", str(build_card(folder, repo_id, license)), overwrite=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                                   commit_message=f"Publish {tag} (atom-curate push)",
                                   ignore_patterns=[".cache/**"])
        tags = [tag]
        api.create_tag(repo_id, repo_type="dataset", tag=tag, revision=commit.oid,
                       tag_message=f"atom-curate push {tag}")
        if kind == "lerobot":
            # Like LeRobot's own push_to_hub: the version tag moves to the newest commit.
            with contextlib.suppress(RevisionNotFoundError):
                api.delete_tag(repo_id, repo_type="dataset", tag=LEROBOT_VERSION_TAG)
            api.create_tag(repo_id, repo_type="dataset", tag=LEROBOT_VERSION_TAG, revision=commit.oid)
            tags.append(LEROBOT_VERSION_TAG)
    except (HfHubHTTPError, http_client.TransportError, OSError, RuntimeError) as exc:
        # huggingface_hub wraps a failed file upload in a RuntimeError whose cause is the HTTP error
        # and whose message names the file.
        wrapped = isinstance(exc, RuntimeError) and exc.__cause__ is not None
        cause = exc.__cause__ if wrapped else exc
        if isinstance(cause, OfflineModeIsEnabled):  # raised before any request leaves the machine
            raise PushError(f"{repo_id}: push needs the network, and huggingface_hub's offline mode is on: run "
                            "this command with HF_HUB_OFFLINE unset or 0 (`HF_HUB_OFFLINE=0 atom-curate push "
                            "...`); nothing was uploaded") from exc
        if isinstance(cause, HfHubHTTPError):
            uploading = _UPLOADING.search(str(exc)) if wrapped else None
            raise _refusal(repo_id, cause, uploading[1] if uploading else None) from exc
        if isinstance(cause, (http_client.TransportError, OSError)):  # connection refused, DNS, timeouts
            raise PushError(f"{repo_id}: cannot reach the Hub at {api.endpoint} ({_one_line(cause)}); "
                            "re-run to resume") from exc
        raise
    return PushResult(str(url), commit.oid, tuple(tags))


def _check_tag_is_free(api: HfApi, repo_id: str, tag: str) -> None:
    try:
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return
    if any(t.name == tag for t in refs.tags):
        raise PushError(f"{repo_id}: tag {tag!r} already exists; choose another --revision; nothing was uploaded")


def _refusal(repo_id: str, error: HfHubHTTPError, file: str | None) -> PushError:
    """`file`: the file whose upload was refused, where the error names one."""
    status = error.response.status_code
    advice = _FILE_TOO_LARGE if status == 413 and file else _REFUSAL_ADVICE.get(status)
    if advice is None:
        return PushError(f"{repo_id}: the Hub refused the push ({_one_line(error)}); re-run to resume")
    said = f" (the Hub said: {_one_line(error.server_message)})" if error.server_message else ""
    return PushError(f"{repo_id}: {advice.format(namespace=repo_id.split('/')[0], file=file)}{said}")


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())[:300]
