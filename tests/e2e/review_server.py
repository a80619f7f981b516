"""Start and stop a real `atom-review` server on a free 127.0.0.1 port, for the browser tests and the
latency benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def atom_review() -> str:
    return str(Path(sys.executable).with_name("atom-review"))


class ReviewServer:
    def __init__(self, store: Path, log: Path, auth: str | None = None, learn: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [atom_review(), "--store", str(store), "--port", str(self.port)]
        if auth:
            cmd += ["--auth", auth]
        if not learn:
            cmd.append("--no-learn")
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE_ENV})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"atom-review exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"atom-review did not answer within 90 s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def write_logins(path: Path, logins: dict[str, tuple[str, str]]) -> Path:
    """A logins file for --auth, written by `atom-review passwd` (user -> (password, role)),
    the password given on stdin as a script would."""
    for user, (password, role) in logins.items():
        subprocess.run([atom_review(), "passwd", str(path), user, "--role", role], input=password + "\n",
                       capture_output=True, text=True, check=True, timeout=60, env={**os.environ, **OFFLINE_ENV})
    return path
