"""Who may log in to the review app: `--auth user:pass` or a file of `user:pass` lines."""

from __future__ import annotations

from pathlib import Path

from atomvla.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class AuthError(UserError, ValueError):
    """The --auth value or file is unusable; the message says why (never the password)."""


def parse_auth(value: str) -> list[tuple[str, str]]:
    """Credentials from a file (one `user:pass` per line, `#` comments) or one `user:pass`."""
    path = Path(value).expanduser()
    if path.is_file():
        pairs = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                pairs.append(_pair(line, f"{path}:{lineno}"))
        if not pairs:
            raise AuthError(f"{path}: no `user:password` line")
        return pairs
    if ":" not in value:
        raise AuthError(f"--auth {value!r}: neither an existing file nor `user:password`")
    return [_pair(value, "--auth")]


def _pair(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise AuthError(f"{where}: expected `user:password` with both parts non-empty")
    return user.strip(), password


def check_exposure(host: str, auth: list[tuple[str, str]] | None) -> None:
    """Refuse to serve the store on a non-local address without logins."""
    if host not in LOCAL_HOSTS and not auth:
        raise AuthError(
            f"refusing to listen on {host} without --auth: anyone who can reach it could edit the store "
            f"(use --auth FILE|user:pass, or --host 127.0.0.1)"
        )
