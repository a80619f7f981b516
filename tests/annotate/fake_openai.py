"""A local OpenAI-compatible server for tests and benchmarks: Chat Completions, Files and Batches.

It answers as a model would (a valid decomposition for the frame count stated in the prompt) and
injects the faults a real API has: 429 with retry-after, 500, hanging requests, non-JSON content,
answers that break the contract, slow answers, a non-JSON HTTP body, and a request window
announced through `x-ratelimit-*` headers. Every request is logged, so tests count requests per
episode and duplicates. Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from atomvla.annotate.client.pricing import input_tokens

_N_FRAMES = re.compile(r"The episode has (\d+) frames")
_FRAME = re.compile(r"^Frame (\d+):$")

# Behaviours a plan can name, consumed one per request that carries the plan's marker.
BEHAVIOURS = ("ok", "429", "quota", "500", "hang", "slow", "nonjson", "seven", "overlap", "out_of_range", "garbage_body")


@dataclass
class Logged:
    path: str
    body_sha: str
    text: str  # every text part of the request, joined
    behaviour: str
    status: int
    body: dict | None = None
    at: float = field(default_factory=time.monotonic)


def _texts(messages: list[dict]) -> str:
    out = []
    for m in messages:
        content = m["content"]
        out.extend([content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"])
    return "\n".join(out)


def valid_answer(n_frames: int, k: int = 3) -> dict:
    cuts = [round(i * n_frames / k) for i in range(k + 1)]
    skills = ["reach", "pick", "place", "push", "other"]
    return {
        "subtasks": [
            {"start_frame": a, "end_frame": b, "instruction": f"step {i + 1}", "skill": skills[i % len(skills)]}
            for i, (a, b) in enumerate(zip(cuts, cuts[1:]))
        ]
    }


def _broken(kind: str, n_frames: int) -> dict:
    if kind == "seven":
        return valid_answer(n_frames, 7)
    answer = valid_answer(n_frames, 3)
    if kind == "overlap":
        answer["subtasks"][0]["end_frame"] += 2
    else:  # out_of_range
        answer["subtasks"][-1]["end_frame"] = n_frames + 40
    return answer


class FakeOpenAI:
    """`with FakeOpenAI() as server:` then point a client at `server.url` with any key."""

    def __init__(
        self,
        latency_s: float = 0.0,
        retry_after_s: float = 0.05,
        hang_s: float = 3.0,
        slow_s: float = 0.3,
        window_requests: int | None = None,
        window_s: float = 1.0,
    ):
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.slow_s = slow_s
        self.window_requests = window_requests  # announce (and enforce) this many requests per window
        self.window_s = window_s
        self.plans: dict[str, list[str]] = {}  # marker found in a request's text -> behaviours, in order
        self.log: list[Logged] = []
        self.headers_seen: list[dict[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._window_used = 0
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- what the tests read -------------------------------------------------------------

    def markers_answered(self, markers: list[str]) -> set[str]:
        """The markers with at least one successfully answered chat request."""
        return {m for m in markers if any(r.status == 200 for r in self.chat_requests(m))}

    def chat_requests(self, marker: str | None = None) -> list[Logged]:
        return [r for r in self.log if r.path.startswith("/") and r.path.endswith("/chat/completions") and (marker is None or marker in r.text)]

    def duplicates(self) -> int:
        """Identical request bodies answered successfully more than once."""
        counts = Counter(r.body_sha for r in self.chat_requests() if r.status == 200)
        return sum(c - 1 for c in counts.values() if c > 1)

    # -- behaviour -----------------------------------------------------------------------

    def _behaviour(self, text: str) -> str:
        with self._lock:
            for marker, queue in self.plans.items():
                if marker in text:
                    behaviour = queue.pop(0) if queue else "ok"
                    assert behaviour in BEHAVIOURS, f"unknown behaviour {behaviour!r} in the plan for {marker!r}"
                    return behaviour
        return "ok"

    def _rate_headers(self) -> tuple[dict[str, str], bool]:
        """x-ratelimit-* headers for this request, and whether it exceeds the window."""
        if self.window_requests is None:
            return {}, False
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.window_s:
                self._window_start, self._window_used = now, 0
            self._window_used += 1
            over = self._window_used > self.window_requests
            reset = self.window_s - (now - self._window_start)
        headers = {
            "x-ratelimit-limit-requests": str(self.window_requests),
            "x-ratelimit-remaining-requests": str(max(0, self.window_requests - self._window_used)),
            "x-ratelimit-reset-requests": f"{max(reset, 0.001) * 1000:.0f}ms",
            "x-ratelimit-limit-tokens": "10000000",
            "x-ratelimit-remaining-tokens": "9999000",
            "x-ratelimit-reset-tokens": "1ms",
        }
        if over:
            headers["retry-after"] = f"{reset:.3f}"
        return headers, over

    def chat(self, body: dict, path: str, sha: str) -> tuple[int, dict | bytes, str, dict[str, str]]:
        """(status, JSON body or raw bytes, behaviour, extra headers) for one Chat Completions request,
        logged as soon as its fate is decided (a hanging request is in the log while it hangs)."""
        text = _texts(body["messages"])
        headers, over = self._rate_headers()
        behaviour = "window" if over else self._behaviour(text)  # a refused request keeps its plan
        status = {"window": 429, "429": 429, "quota": 429, "500": 500}.get(behaviour, 200)
        with self._lock:
            self.log.append(Logged(path, sha, text, behaviour, status, body))
        if behaviour == "quota":  # OpenAI's answer once the account's credit is spent: no wait helps
            error = {"message": "You exceeded your current quota, please check your plan and billing details.",
                     "type": "insufficient_quota", "code": "insufficient_quota"}
            return 429, {"error": error}, behaviour, headers
        if status == 429:
            headers.setdefault("retry-after", str(self.retry_after_s))
            return 429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, behaviour, headers
        if behaviour == "500":
            return 500, {"error": {"message": "The server had an error", "type": "server_error"}}, behaviour, headers
        if behaviour == "hang":
            time.sleep(self.hang_s)
        if behaviour == "slow":
            time.sleep(self.slow_s)
        if behaviour == "garbage_body":
            return 200, b"<html>upstream proxy error</html>", behaviour, headers
        content = self._content(body, text, behaviour)
        usage_in = input_tokens(body["messages"], body.get("response_format"))
        completion = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content, "refusal": None}}
            ],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": len(content) // 4 + 1, "total_tokens": usage_in + len(content) // 4 + 1},
        }
        return 200, completion, behaviour, headers

    def _content(self, body: dict, text: str, behaviour: str) -> str:
        if behaviour == "nonjson":
            return "Sure! The robot first reaches, then picks the puck."
        schema = body.get("response_format", {}).get("json_schema", {}).get("name")
        if schema == "boundary":
            shown = [int(m.group(1)) for line in text.splitlines() if (m := _FRAME.match(line))]
            return json.dumps({"start_frame": shown[len(shown) // 2]})
        m = _N_FRAMES.search(text)
        n_frames = int(m.group(1)) if m else 100
        if behaviour in ("seven", "overlap", "out_of_range"):
            return json.dumps(_broken(behaviour, n_frames))
        return json.dumps(valid_answer(n_frames))

    # -- files and batches ---------------------------------------------------------------

    def run_batch(self, batch: dict) -> None:
        lines = []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            status, answer, behaviour, _ = self.chat(request["body"], "batch:" + request["url"], _sha(json.dumps(request["body"]).encode()))
            ok = isinstance(answer, dict) and status == 200
            lines.append(
                json.dumps(
                    {
                        "id": f"batch_req_{next(self._ids)}",
                        "custom_id": request["custom_id"],
                        "response": {"status_code": status, "request_id": "req", "body": answer if isinstance(answer, dict) else {}},
                        "error": None if ok else {"code": str(status), "message": "failed"},
                    }
                )
            )
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = ("\n".join(lines) + "\n").encode()
        batch.update(status="completed", output_file_id=file_id, completed_at=int(time.time()))
        batch["request_counts"] = {"total": len(lines), "completed": len(lines), "failed": 0}


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections when dozens of clients connect at once.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, payload: dict | bytes, headers: dict[str, str] | None = None, content_type: str = "text/html") -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json" if not isinstance(payload, bytes) else content_type)
            self.send_header("content-length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def do_POST(self) -> None:
        fake = self.fake
        raw = self._body()
        fake.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.endswith("/chat/completions"):
            if fake.latency_s:
                time.sleep(fake.latency_s)
            body = json.loads(raw)
            status, answer, behaviour, headers = fake.chat(body, self.path, _sha(raw))
            self._send(status, answer, headers)
        elif self.path.endswith("/files"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"content-type: {self.headers['content-type']}\r\n\r\n".encode() + raw
            )
            parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
            content = parts["file"].get_payload(decode=True)
            file_id = f"file-{next(fake._ids)}"
            fake.files[file_id] = content
            fake.log.append(Logged(self.path, _sha(content), "", "ok", 200))
            self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                             "filename": parts["file"].get_filename() or "input.jsonl", "purpose": "batch", "status": "processed"})
        elif self.path.endswith("/batches"):
            body = json.loads(raw)
            batch_id = f"batch_{next(fake._ids)}"
            batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                     "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
                     "output_file_id": None, "error_file_id": None, "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            fake.batches[batch_id] = batch
            fake.log.append(Logged(self.path, _sha(raw), "", "ok", 200))
            self._send(200, batch)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_GET(self) -> None:
        fake = self.fake
        fake.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        if (m := re.search(r"/batches/([^/]+)$", self.path)) and m.group(1) in fake.batches:
            batch = fake.batches[m.group(1)]
            if batch["status"] == "validating":  # first poll: in progress; the next one finds it done
                batch["status"] = "in_progress"
            elif batch["status"] == "in_progress":
                fake.run_batch(batch)
            self._send(200, batch)
        elif (m := re.search(r"/files/([^/]+)/content$", self.path)) and m.group(1) in fake.files:
            self._send(200, fake.files[m.group(1)], content_type="application/octet-stream")
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})


def marker(i: int) -> str:
    return f"[ep {i}]"


def marked_store(path, dataset) -> list:
    """A store of `dataset`'s episodes whose tasks end with a marker `[ep i]`, so a server plan can
    single out an episode; returns the episode metas."""
    from atomvla.curate.sources import open_source
    from atomvla.curate.store import Store

    metas = [m.model_copy(update={"task": f"{m.task} {marker(m.episode_index)}"}) for m in open_source(str(dataset)).scan()]
    store = Store(path)
    store.upsert_episodes(metas)
    store.close()
    return metas
