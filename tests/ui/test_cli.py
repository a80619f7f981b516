"""`atom-review`'s exposure rules and logins, through the installed console script (no server starts)."""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from atomvla.ui.auth import AuthError, check_exposure, parse_auth, read_logins
from tests.e2e.review_server import OFFLINE_ENV, atom_review, write_logins
from tests.ui.review_store import build_review_store


def run_review(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([atom_review(), *args], capture_output=True, text=True, timeout=60, input=stdin,
                          env={**os.environ, **OFFLINE_ENV, "COLUMNS": "60"})


def one_error_line(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    return lines[0]


def test_refuses_a_public_address_without_auth(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    run = run_review("--store", str(store.path), "--host", "0.0.0.0")
    assert "refusing to listen on 0.0.0.0 without --auth" in one_error_line(run)


def test_a_password_on_the_command_line_is_refused_with_the_reason(tmp_path: Path):
    line = one_error_line(run_review("--store", str(tmp_path / "none.sqlite"), "--auth", "ann:s3cret"))
    assert "visible to every user of the machine (ps)" in line and "atom-review passwd" in line
    assert "s3cret" not in line


def test_a_plaintext_logins_file_is_refused_with_how_to_convert(tmp_path: Path):
    old = tmp_path / "logins.txt"
    old.write_text("# annotators\nalice:s3cret\n")
    line = one_error_line(run_review("--store", str(tmp_path / "none.sqlite"), "--auth", str(old)))
    assert f"{old}:2:" in line and "plaintext" in line and f"atom-review passwd {old}.new USER" in line
    assert "s3cret" not in line
    with pytest.raises(AuthError, match="no such logins file"):
        parse_auth(str(tmp_path / "missing.txt"))
    comments = tmp_path / "new-logins"
    comments.write_text("# the team\n")
    with pytest.raises(AuthError, match="no login"):
        parse_auth(str(comments))
    write_logins(comments, {"ann": ("pw", "annotator")})  # passwd adds to it
    assert comments.read_text().startswith("# the team\nann:annotator:scrypt:")


def test_passwd_writes_salted_hashes_and_roles(tmp_path: Path):
    path = write_logins(tmp_path / "logins", {"alice": ("pw alice", "reviewer"), "bob": ("pw-bob", "annotator")})
    text = path.read_text()
    assert "pw alice" not in text and "pw-bob" not in text and text.count(":scrypt:16384:8:1:") == 2
    assert path.stat().st_mode & 0o777 == 0o600
    logins = parse_auth(str(path))
    assert logins.roles == {"alice": "reviewer", "bob": "annotator"}
    assert logins.verify("alice", "pw alice") and not logins.verify("alice", "pw-bob")
    assert not logins.verify("nobody", "pw alice")
    # The same password hashes differently for each login (salted).
    write_logins(path, {"carol": ("pw-bob", "annotator")})
    hashes = [line.split(":")[-1] for line in path.read_text().splitlines()]
    assert len(set(hashes)) == 3
    # A new password and role replace bob's line; the others stay as they were.
    run = run_review("passwd", str(path), "bob", "--role", "reviewer", stdin="new pw\n")
    assert run.returncode == 0 and "updated bob (reviewer)" in run.stdout, run.stderr
    again = read_logins(path)
    assert again.verify("bob", "new pw") and not again.verify("bob", "pw-bob")
    assert again.by_user["alice"] == logins.by_user["alice"] and again.roles["bob"] == "reviewer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logins"]


def test_passwd_refusals_write_nothing(tmp_path: Path):
    path = tmp_path / "logins"
    assert "empty password" in one_error_line(run_review("passwd", str(path), "ann", stdin="\n"))
    assert "not one of annotator, reviewer" in one_error_line(
        run_review("passwd", str(path), "ann", "--role", "admin", stdin="pw\n"))
    assert "no ':'" in one_error_line(run_review("passwd", str(path), "a:b", stdin="pw\n"))
    assert not path.exists()


def test_exposure_needs_logins(tmp_path: Path):
    logins = parse_auth(str(write_logins(tmp_path / "logins", {"ann": ("x", "annotator")})))
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", logins)
    with pytest.raises(AuthError, match="refusing"):
        check_exposure("192.168.1.5", None)


def test_a_port_in_use_is_refused_in_one_line_before_serving(tmp_path: Path):
    store = build_review_store(tmp_path / "s.sqlite")
    with socket.socket() as other:  # another server already listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        line = one_error_line(run_review("--store", str(store.path), "--port", str(port), "--no-learn"))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
