"""A real Label Studio server for the round-trip tests: installed into its own venv under .cache/
when missing, started on a free 127.0.0.1 port with a fresh data folder, stopped at the end."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.review_server import free_port

VERSION = "1.23.2"
# sentry-sdk 3.0 (December 2026) rejects the `send_default_pii` option Label Studio 1.23.2 passes at
# start-up, and Label Studio does not cap it: the server exits before it listens.
REQUIREMENTS = (f"label-studio=={VERSION}", "sentry-sdk<3")
VENV = Path(__file__).resolve().parents[2] / ".cache" / "labelstudio-venv"
STAMP = VENV / ".installed"  # the requirements the venv was installed with
START_TIMEOUT_S = 300  # the first start migrates a new database: ~70 s on a quiet 2-core machine


class Unavailable(Exception):
    """Label Studio cannot be installed here (no package index reachable)."""


def install() -> Path:
    exe = VENV / "bin" / "label-studio"
    wanted = " ".join(REQUIREMENTS)
    if exe.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return exe
    try:
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *REQUIREMENTS],
                       check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        raise Unavailable(f"pip install {wanted} failed: {(exc.stderr or '')[-500:]}") from exc
    STAMP.write_text(wanted)
    return exe


@dataclass
class LabelStudioServer:
    url: str
    token: str
    username: str
    media_root: Path  # LOCAL_FILES_DOCUMENT_ROOT
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, exe: Path, workdir: Path) -> LabelStudioServer:
        port = free_port()
        media_root = workdir / "media"
        media_root.mkdir()
        token, username = secrets.token_hex(20), "annotator@example.com"  # a legacy token is 40 characters
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(workdir / "data"),
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": secrets.token_hex(8),
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(media_root),
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
        }
        log = workdir / "label-studio.log"
        with open(log, "w") as out:
            # --enable-legacy-api-token on the first start, or the token above is refused (401).
            proc = subprocess.Popen(
                [str(exe), "start", "--internal-host", "127.0.0.1", "-p", str(port), "--no-browser",
                 "--enable-legacy-api-token"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True,
            )
        server = cls(f"http://127.0.0.1:{port}", token, username, media_root, proc, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return server
            except OSError:
                pass
            time.sleep(1)
        server.stop()
        raise RuntimeError(f"label-studio did not answer /health within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        # Its own session: the Django server and anything it spawned stop together.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
