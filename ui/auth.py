"""Who may log in to the review app, and what each login may do.

The logins file holds one line per login, `user:role:scrypt:N:r:p:SALT:HASH` (salt and hash in
base64; `hashlib.scrypt`), written by `atom-review passwd FILE USER`; no password is ever stored or
given on the command line (where `ps` shows it to every user of the machine). Roles: an
`annotator` saves and flags; a `reviewer` also accepts and rejects, checked by the server on every
save (`refusal`). Failed logins are answered later and later per user and client address
(`LoginGuard`), so passwords cannot be tried quickly.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import hmac
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomvla.errors import UserError

if TYPE_CHECKING:
    from atomvla.schemas import Status

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ROLES = ("annotator", "reviewer")
# What only a reviewer may store: the verdicts (`Status` values; not imported, so `--help` stays
# fast). Saving (needs review) and flagging are everyone's.
REVIEWER_ONLY = ("accepted", "rejected")
# scrypt cost: 16 MiB and ~50 ms per check here, the interactive-login setting of the scrypt paper.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_BYTES, HASH_BYTES = 1 << 14, 8, 1, 16, 32
# Failed logins: the k-th failure in a row (per user and address) is answered after
# FIRST_DELAY_S * 2**(k-1) seconds, at most MAX_DELAY_S; the next try waits as long.
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 8.0
MAX_TRACKED = 4096  # (user, address) pairs remembered; the oldest are forgotten first
_USER = re.compile(r"[^:\s#][^:\s]*")


class AuthError(UserError, ValueError):
    """The --auth file or a passwd request is unusable; the message says why (never the password)."""


@dataclass(frozen=True)
class Login:
    user: str
    role: str
    hash: str  # `scrypt:N:r:p:SALT:HASH`

    def line(self) -> str:
        return f"{self.user}:{self.role}:{self.hash}\n"


def hash_password(password: str) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    b64 = base64.b64encode
    return f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{b64(salt).decode()}:{b64(digest).decode()}"


def _verify(stored: str, password: str) -> bool:
    _, n, r, p, salt, digest = stored.split(":")
    expected = base64.b64decode(digest)
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                         dklen=len(expected), maxmem=256 << 20)
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user is unknown, so the answer takes as long as for a known one."""
    return hash_password(os.urandom(8).hex())


@dataclass(frozen=True)
class Logins:
    """The logins of a file, by user name."""

    path: Path
    by_user: Mapping[str, Login] = field(default_factory=dict)

    @property
    def roles(self) -> dict[str, str]:
        return {u: login.role for u, login in self.by_user.items()}

    def verify(self, user: str, password: str) -> bool:
        login = self.by_user.get(user)
        ok = _verify(login.hash if login else _dummy_hash(), password)
        return ok and login is not None


def read_logins(path: Path, must_exist: bool = True) -> Logins:
    """The logins in `path`; an old plaintext `user:password` line is refused with how to convert.
    `must_exist` False (for `passwd`): a missing file, or one without a login yet, holds none."""
    path = Path(path).expanduser()
    if not path.is_file():
        if must_exist:
            raise AuthError(f"{path}: no such logins file (write one with `atom-review passwd {path} USER`)")
        return Logins(path)
    by_user: dict[str, Login] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        parts = line.split(":")
        if len(parts) != 8 or parts[2] != "scrypt":
            raise AuthError(
                f"{where}: not a `user:role:scrypt:...` line; a plaintext `user:password` file is no longer read: "
                f"for each user run `atom-review passwd {path}.new USER --role annotator|reviewer`, then replace {path}"
            )
        user, role = parts[0], parts[1]
        if role not in ROLES:
            raise AuthError(f"{where}: role {role!r} for {user!r} is not one of {', '.join(ROLES)}")
        try:
            int(parts[3]), int(parts[4]), int(parts[5]), base64.b64decode(parts[6], validate=True)
            base64.b64decode(parts[7], validate=True)
        except ValueError:
            raise AuthError(f"{where}: the hash for {user!r} is damaged; set it again with `atom-review passwd`") from None
        by_user[user] = Login(user, role, ":".join(parts[2:]))
    if not by_user and must_exist:
        raise AuthError(f"{path}: no login (add one with `atom-review passwd {path} USER`)")
    return Logins(path, by_user)


def parse_auth(value: str) -> Logins:
    """The logins of the `--auth` file; a `user:password` value is refused (it would show in `ps`)."""
    path = Path(value).expanduser()
    if not path.is_file() and ":" in value:
        raise AuthError("--auth takes a logins file, not `user:password`: a password on the command line is "
                        "visible to every user of the machine (ps); write the file with `atom-review passwd FILE USER`")
    return read_logins(path)


def set_password(path: Path, user: str, password: str, role: str) -> bool:
    """Add `user` to the logins file `path` (created, mode 0600) or replace their line; returns
    whether they were there before."""
    from atomvla.output import new_file

    if not _USER.fullmatch(user):
        raise AuthError(f"user name {user!r}: no ':', spaces or leading '#'")
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not password:
        raise AuthError("empty password; nothing written")
    path = Path(path).expanduser()
    current = read_logins(path, must_exist=False)
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    new = Login(user, role, hash_password(password)).line()
    replaced = user in current.by_user
    if replaced:
        lines = [new if ln.strip().split(":", 1)[0] == user and not ln.lstrip().startswith("#") else ln for ln in lines]
    else:
        lines += ([] if not lines or lines[-1].endswith("\n") else ["\n"]) + [new]
    with new_file(path, overwrite=True) as tmp:
        tmp.write_text("".join(lines))
        tmp.chmod(0o600)  # hashes are not for every reader of the folder
    return replaced


def refusal(role: str | None, status: Status) -> str | None:
    """Why a login with `role` may not store a revision with `status`; None if it may. `role` None:
    the app runs without logins (local only), where everyone is a reviewer."""
    if role is None or role == "reviewer" or status not in REVIEWER_ONLY:
        return None
    return (f"**Not saved**: {'accepting' if status == 'accepted' else 'rejecting'} needs the reviewer role; "
            f"this login is an {role}: save (w) or flag (f) it for a reviewer.")


def check_exposure(host: str, logins: Logins | None) -> None:
    """Refuse to serve the store on a non-local address without logins."""
    if host not in LOCAL_HOSTS and not logins:
        raise AuthError(
            f"refusing to listen on {host} without --auth: anyone who can reach it could edit the store "
            f"(use --auth FILE, written by `atom-review passwd FILE USER`, or --host 127.0.0.1)"
        )


# The client address of the request being served, set by `ClientAddress` for `LoginGuard`.
client_address: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="?")


class ClientAddress:
    """ASGI middleware: remembers each request's client address (Gradio's login check sees only the
    user name and password)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("client"):
            client_address.set(scope["client"][0])
        await self.app(scope, receive, send)


@dataclass
class _Attempts:
    failures: int = 0
    next_try: float = 0.0  # time.monotonic() before which the next try is not checked
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LoginGuard:
    """`check` is Gradio's `auth` function: it checks a password off the event loop and slows
    down repeated failures per (user, client address), tries of one pair one at a time."""

    def __init__(self, logins: Logins):
        self.logins = logins
        self._attempts: OrderedDict[tuple[str, str], _Attempts] = OrderedDict()

    def _state(self, key: tuple[str, str]) -> _Attempts:
        state = self._attempts.pop(key, None) or _Attempts()
        self._attempts[key] = state  # most recent last
        while len(self._attempts) > MAX_TRACKED:
            oldest = next(iter(self._attempts))
            if self._attempts[oldest].lock.locked():
                break
            del self._attempts[oldest]
        return state

    # A coroutine function, not an object with an async __call__: Gradio awaits `auth` only when
    # inspect.iscoroutinefunction says so, and takes the unawaited coroutine (truthy) for a yes.
    async def check(self, user: str, password: str) -> bool:
        key = (user, client_address.get())
        state = self._state(key)
        async with state.lock:
            wait = state.next_try - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if await asyncio.to_thread(self.logins.verify, user, password):
                state.failures, state.next_try = 0, 0.0
                return True
            state.failures += 1
            delay = min(FIRST_DELAY_S * 2 ** (state.failures - 1), MAX_DELAY_S)
            state.next_try = time.monotonic() + delay
            log.warning("failed login for %r from %s (%d in a row)", user, key[1], state.failures)
            await asyncio.sleep(delay)
            return False
