"""A local HTTP server speaking the Hub endpoints `huggingface_hub` uses to publish a dataset
without Xet: repo create, refs, YAML validation, preupload, the LFS batch API with basic PUT
transfers, the NDJSON commit, tag create/delete. It keeps repos in memory and can fail requests on
demand, so tests drive the REAL client through failures and resumption. Not covered: the Xet
transfer path (tests set HF_HUB_DISABLE_XET), multipart LFS, pull requests, branches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_token_for_tests_0123456789abcdef"
_LFS_SUFFIXES = (".parquet", ".mp4", ".png")


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content of the head commit
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> object
    commits: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # name -> commit oid

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    # "create" / "commit": fail that many of the next such requests (an interrupted push, a refusal)
    fail_next: dict[str, int] = field(default_factory=dict)
    fail_status: int = 400  # what those failures answer: 400, or the Hub's 401/403/404/409/413/422/429/5xx
    # let this many LFS PUTs through, then fail the next one (with fail_status) and let the rest through
    lfs_puts_before_failure: int | None = None
    url: str = ""

    def count(self, method: str, pattern: str) -> int:
        return sum(m == method and re.search(pattern, p) is not None for m, p in self.requests)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # -- plumbing ------------------------------------------------------------------------

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("authorization") == f"Bearer {TOKEN}":
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo

    def _dispatch(self, method: str) -> None:
        self.hub.requests.append((method, self.path))
        path = self.path.split("?")[0]
        for pattern, handler in _ROUTES:
            m = re.fullmatch(pattern, path)
            if m and handler.__name__.startswith(method.lower()):
                return handler(self, *m.groups())
        self._send(404, {"error": f"no route {method} {path}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _fail(self, kind: str) -> bool:
        if self.hub.fail_next.get(kind, 0) > 0:
            self.hub.fail_next[kind] -= 1
            self._body()
            status = self.hub.fail_status
            # The real Hub names a missing repo in a header; huggingface_hub reads it to pick its exception.
            self._send(status, {"error": f"injected {kind} failure"},
                       {"X-Error-Code": "RepoNotFound"} if status == 404 else None)
            return True
        return False

    # -- endpoints -------------------------------------------------------------------------

    def post_create(self) -> None:
        if not self._authorised() or self._fail("create"):
            return
        body = json.loads(self._body())
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.hub.url}/datasets/{repo_id}"
        if repo_id in self.hub.repos:
            return self._send(409, {"error": "You already created this dataset repo", "url": url})
        self.hub.repos[repo_id] = Repo(private=body.get("visibility") == "private" or bool(body.get("private")))
        self._send(200, {"url": url, "name": repo_id})

    def post_validate_yaml(self) -> None:
        self._body()
        self._send(200, {"errors": [], "warnings": []})

    def get_refs(self, repo_id: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        self._send(200, {
            "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head}],
            "converts": [],
            "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo.tags.items()],
        })

    def post_preupload(self, repo_id: str, _revision: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        files = []
        for f in json.loads(self._body())["files"]:
            lfs = f["path"].endswith(_LFS_SUFFIXES) or f["size"] > 10_000
            old = repo.files.get(f["path"])
            oid = None
            if old is not None:  # what the client compares with its local oid to skip unchanged files
                oid = hashlib.sha256(old).hexdigest() if lfs else _git_sha1(old)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send(200, {"files": files})

    def post_lfs_batch(self, repo_id: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        body = json.loads(self._body())
        objects = []
        for o in body["objects"]:
            entry: dict[str, Any] = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in repo.lfs:  # objects the server holds need no upload: this is the resume
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs/{repo_id}/{o['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def put_lfs_object(self, repo_id: str, oid: str) -> None:
        data = self._body()
        if self.hub.lfs_puts_before_failure is not None:
            if self.hub.lfs_puts_before_failure == 0:
                self.hub.lfs_puts_before_failure = None
                return self._send(self.hub.fail_status, {"error": "injected upload failure"})
            self.hub.lfs_puts_before_failure -= 1
        if hashlib.sha256(data).hexdigest() != oid:
            return self._send(400, {"error": "sha256 mismatch"})
        self.hub.repos[repo_id].lfs[oid] = data
        self._send(200)

    def post_commit(self, repo_id: str, revision: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None or self._fail("commit"):
            return
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        files = dict(repo.files)
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in repo.lfs:
                    return self._send(400, {"error": f"LFS object {value['oid']} of {value['path']} was never uploaded"})
                files[value["path"]] = repo.lfs[value["oid"]]
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
        oid = hashlib.sha1(json.dumps(sorted((p, hashlib.sha1(c).hexdigest()) for p, c in files.items())).encode()
                           + str(len(repo.commits)).encode()).hexdigest()
        repo.files = files
        repo.commits.append({"oid": oid, "summary": lines[0]["value"]["summary"], "revision": revision})
        self._send(200, {"commitUrl": f"{self.hub.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                         "success": True})

    def get_revision(self, repo_id: str, _revision: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        self._send(200, {"id": repo_id, "sha": repo.head, "private": repo.private})

    def post_tag(self, repo_id: str, revision: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        tag = json.loads(self._body())["tag"]
        if tag in repo.tags:
            return self._send(409, {"error": f"Tag {tag} already exists"})
        commit = revision if any(c["oid"] == revision for c in repo.commits) else repo.head
        repo.tags[tag] = commit
        self._send(200, {})

    def delete_tag(self, repo_id: str, tag: str) -> None:
        if not self._authorised() or (repo := self._repo(repo_id)) is None:
            return
        if repo.tags.pop(tag, None) is None:
            return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
        self._send(200, {})


_REPO = r"([\w.-]+/[\w.-]+)"
_ROUTES = [
    (r"/api/repos/create", _Handler.post_create),
    (r"/api/validate-yaml", _Handler.post_validate_yaml),
    (rf"/api/datasets/{_REPO}/refs", _Handler.get_refs),
    (rf"/api/datasets/{_REPO}/preupload/([^/]+)", _Handler.post_preupload),
    (rf"/datasets/{_REPO}\.git/info/lfs/objects/batch", _Handler.post_lfs_batch),
    (rf"/lfs/{_REPO}/([0-9a-f]{{64}})", _Handler.put_lfs_object),
    (rf"/api/datasets/{_REPO}/commit/([^/]+)", _Handler.post_commit),
    (rf"/api/datasets/{_REPO}/revision/([^/]+)", _Handler.get_revision),
    (rf"/api/datasets/{_REPO}/tag/([^/]+)", _Handler.post_tag),
    (rf"/api/datasets/{_REPO}/tag/([^/]+)", _Handler.delete_tag),
]


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def serve() -> tuple[FakeHub, ThreadingHTTPServer]:
    """Start a fake Hub on 127.0.0.1 at a free port; stop it with `server.shutdown()`."""
    hub = FakeHub()
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub, server
