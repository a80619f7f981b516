"""The client end of `atom-train serve` (openpi's protocol): what `rollout --server` and robot code use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from atomvla.errors import UserError
from atomvla.train.policy import Inference
from atomvla.train.serve.wire import packb, unpackb


class ServerError(UserError, RuntimeError):
    """The policy server cannot be reached, refused us, or answered with an error."""


class PolicyClient:
    """`infer(observation) -> Inference` through a policy server; `reset()` starts a new episode
    (a new connection: the server forgets the current subtask)."""

    def __init__(self, url: str, token: str | None = None, open_timeout: float = 10.0):
        self.url = url
        self.token = token
        self.open_timeout = open_timeout
        self._ws: Any = None
        self.metadata: dict[str, Any] = {}
        self._connect()

    def _connect(self) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {self.token}"} if self.token else None
        try:
            self._ws = connect(self.url, compression=None, max_size=None, additional_headers=headers,
                               open_timeout=self.open_timeout, legacy=True)  # a connection held across calls
        except InvalidStatus as exc:
            raise ServerError(f"{self.url} refused the connection: HTTP {exc.response.status_code} "
                              f"{exc.response.body.decode(errors='replace').strip()}") from None
        except (OSError, TimeoutError) as exc:
            raise ServerError(f"cannot reach the policy server {self.url}: {exc}") from None
        self.metadata = unpackb(self._ws.recv())

    def infer(self, observation: Mapping[str, Any]) -> Inference:
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(packb(dict(observation)))
            answer = self._ws.recv()
        except ConnectionClosed as exc:
            raise ServerError(f"{self.url} closed the connection: {exc}") from None
        if isinstance(answer, str):
            raise ServerError(f"{self.url}: {answer}")
        out = unpackb(answer)
        return Inference(np.asarray(out["actions"], np.float32), out.get("subtask", ""), out.get("skill"))

    def reset(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None
