"""A content-addressed cache of model answers on disk, so a re-run never pays twice.

The key hashes the prompt version and the whole request body, the model and settings included,
with each frame named by a digest of its pixels and how it was encoded rather than by its JPEG
bytes: the same frames asked the same way find the same answer, whichever JPEG encoder build made
the bytes. An entry holds the answer text, its token counts and what it cost, never a credential.
The answers of a decomposition that failed are dropped (by the backend), so asking again asks anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def encode_body(body: dict) -> bytes:
    """The request body as sent: compact JSON, encoded once for both the key and the request."""
    return json.dumps(body, separators=(",", ":")).encode()


class Keyed(str):
    """A string sent in a request that the cache key names by `key_id` instead of its text (a
    frame's JPEG data URL by its pixels: JPEG bytes differ between encoder builds)."""

    key_id: str

    def __new__(cls, text: str, key_id: str) -> Keyed:
        self = super().__new__(cls, text)
        self.key_id = key_id
        return self


def _keyed(obj: object) -> object:
    if isinstance(obj, Keyed):
        return {"key_id": obj.key_id}
    if isinstance(obj, dict):
        return {k: _keyed(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_keyed(v) for v in obj]
    return obj


def request_key(prompt_version: str, body: dict) -> str:
    """sha256 over the prompt version and the body (model, settings, text), `Keyed` parts by their id."""
    return hashlib.sha256(prompt_version.encode() + b"\n" + encode_body(_keyed(body))).hexdigest()  # type: ignore[arg-type]


class ResponseCache:
    """`root/ab/abcdef....json` per answer; writes go to a temp file first, then are renamed."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def beside(cls, store_path: str | Path) -> ResponseCache:
        """The cache of a store: `<store>.responses/` next to the store file."""
        store_path = Path(store_path)
        return cls(store_path.with_name(store_path.name + ".responses"))

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return None  # a torn entry from another writer's crash: ask again

    def put(self, key: str, entry: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, path)

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0
