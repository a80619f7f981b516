"""`atom-train serve`: one policy behind a websocket, in openpi's protocol.

On connect the server sends its metadata (what the policy observes and emits); then each binary
message is one msgpack observation `{"images": {camera: (H, W, 3) uint8}, "state": (S,), "task": str}`
(the keys `load_policy().infer` takes) and each answer `{"actions": (H, A) float32, "subtask": str,
"skill": str | None, "server_timing": {"infer_ms": float}}`. Each connection is one episode: it has
its own current subtask (a new connection starts a new one). A message that cannot be read or
answered gets the error as a text frame and that connection is closed (openpi's convention); the
server keeps serving the others. Binding anything but loopback requires a token, which clients send
as openpi's client does (`Authorization: Api-Key TOKEN`) and which is checked before the upgrade.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import http
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from atomvla.errors import UserError
from atomvla.train.policy import Policy
from atomvla.train.serve.wire import packb, unpackb

log = logging.getLogger(__name__)
# websockets' own INFO lines ("server listening", "connection open/closed") repeat ours; its
# warnings and errors still come through.
_websockets_log = logging.getLogger(f"{__name__}.websockets")
_websockets_log.setLevel(logging.WARNING)

HEALTH_PATH = "/healthz"


class ServeError(UserError, ValueError):
    """A server that cannot start as asked (a public bind without a token, a busy port)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metadata(policy: Policy) -> dict[str, Any]:
    """What a client checks before acting: the policy's cameras, state and action features, chunk length."""
    return {
        "server": "atomvla",
        "checkpoint": str(policy.trained.path),
        "cameras": list(policy.trained.cameras),
        "state": list(policy.stats.state.names),
        "action": list(policy.stats.action.names),
        "horizon": int(policy.model.head.horizon),
        "skills": list(policy.trained.skills),
    }


def _observation(message: Any) -> Mapping[str, Any]:
    if isinstance(message, str):
        raise ValueError("expected a binary msgpack observation, got a text frame")
    obs = unpackb(message)
    if not isinstance(obs, dict):
        raise ValueError(f"the observation is a msgpack {type(obs).__name__}, not a map")
    missing = [k for k in ("images", "state", "task") if k not in obs]
    if missing:
        raise ValueError(f"the observation has no {', '.join(missing)} (keys: {', '.join(map(str, obs)) or 'none'})")
    if not isinstance(obs["images"], dict):
        raise ValueError("observation 'images' must map camera names to (H, W, 3) uint8 arrays")
    return obs


class PolicyServer:
    """Shares one model between connections; inference runs one call at a time in a worker thread."""

    def __init__(self, policy: Policy, token: str | None = None, seed: int = 0):
        self.policy = policy
        self.token = token
        self.seed = seed
        self.metadata = metadata(policy)
        self._lock = threading.Lock()

    def _episode_policy(self) -> Policy:
        """The shared model with this connection's own subtask state and noise generator."""
        episode = copy.copy(self.policy)
        episode.generator = torch.Generator(self.policy.device).manual_seed(self.seed)
        episode.reset()
        return episode

    def _infer(self, policy: Policy, obs: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            start = time.perf_counter()
            inference = policy.infer(obs)
            infer_ms = (time.perf_counter() - start) * 1000
        return {"actions": inference.actions.astype("float32"), "subtask": inference.subtask,
                "skill": inference.skill, "server_timing": {"infer_ms": infer_ms}}

    def _check_token(self, connection: Any, request: Any) -> Any:
        if request.path == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.token is None:
            return None
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Api-Key {self.token}".encode()):
            log.warning("refused a connection from %s: wrong or missing token", connection.remote_address)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "a valid token is required (Authorization: Api-Key TOKEN)\n")
        return None

    async def handle(self, websocket: Any) -> None:
        import websockets

        peer = websocket.remote_address
        log.info("connection from %s", peer)
        policy = self._episode_policy()
        await websocket.send(packb(self.metadata))
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await websocket.recv()
            except websockets.ConnectionClosed:
                break
            try:
                answer = await loop.run_in_executor(None, self._infer, policy, _observation(message))
                await websocket.send(packb(answer))
            except websockets.ConnectionClosed:
                break
            except Exception as exc:  # noqa: BLE001  (a bad observation ends its connection, never the server)
                log.warning("error for %s: %s", peer, exc)
                await websocket.send(f"error: {type(exc).__name__}: {exc}")
                await websocket.close(1011, "error: see the previous text frame")
                break
        log.info("connection from %s closed", peer)

    async def run(self, host: str, port: int, ready: Callable[[int], None] | None = None,
                  stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (forever if None); `ready(port)` is called once the port is bound."""
        from websockets.asyncio.server import serve

        if not is_loopback(host) and not self.token:
            raise ServeError(f"binding {host} exposes the policy beyond this machine: pass --token")
        try:
            server = await serve(self.handle, host, port, compression=None, max_size=None,
                                 process_request=self._check_token, logger=_websockets_log)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        async with server:
            bound = server.sockets[0].getsockname()[1]
            log.info("serving %s on ws://%s:%d", self.metadata["checkpoint"], host, bound)
            if ready is not None:
                ready(bound)
            await (stop.wait() if stop is not None else server.serve_forever())


class ServerThread:
    """`with ServerThread(server) as t:` serves on its own event loop in a background thread, at
    `t.url`, until the block ends (benchmarks, tests, a policy embedded in a robot's process)."""

    def __init__(self, server: PolicyServer, host: str = "127.0.0.1", port: int = 0):
        self.server, self.host, self.port = server, host, port
        self._bound = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.server.run(self.host, self.port, self._ready, self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the starting thread)
            self._error = exc
            self._bound.set()

    def _ready(self, port: int) -> None:
        self.port = port
        self._bound.set()

    def __enter__(self) -> ServerThread:
        self._thread = threading.Thread(target=self._main, name="policy-server", daemon=True)
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
