"""`atom-review`'s exposure rules, through the installed console script (no server starts)."""

import os
import subprocess
from pathlib import Path

import pytest

from atomvla.ui.auth import AuthError, check_exposure, parse_auth
from tests.e2e.review_server import OFFLINE_ENV, atom_review
from tests.ui.review_store import build_review_store


def run_review(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([atom_review(), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **OFFLINE_ENV, "COLUMNS": "60"})


def test_refuses_a_public_address_without_auth(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    run = run_review("--store", str(store.path), "--host", "0.0.0.0")
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without --auth" in lines[0], run.stderr


def test_bad_auth_values_are_refused_without_echoing_secrets(tmp_path: Path):
    run = run_review("--store", str(tmp_path / "none.sqlite"), "--auth", "no-colon-here")
    assert run.returncode == 2 and "neither an existing file nor `user:password`" in run.stderr
    empty = tmp_path / "logins.txt"
    empty.write_text("# nobody yet\n")
    with pytest.raises(AuthError, match="no `user:password` line"):
        parse_auth(str(empty))
    empty.write_text("alice:s3cret\nbob\n")
    with pytest.raises(AuthError, match=r"logins.txt:2") as exc:
        parse_auth(str(empty))
    assert "s3cret" not in str(exc.value)


def test_logins_from_a_file_or_the_option():
    assert parse_auth("ann:pa:ss") == [("ann", "pa:ss")]  # the password may hold colons
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", [("ann", "x")])
    with pytest.raises(AuthError, match="refusing"):
        check_exposure("192.168.1.5", None)
