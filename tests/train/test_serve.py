"""`atom-train serve`: openpi's wire protocol, errors that end one connection only, the token, the
client and `rollout --server`, and the action queue's prefetch."""

from __future__ import annotations

import json
import logging
import time

import msgpack
import numpy as np
import pytest
from typer.testing import CliRunner
from websockets.sync.client import connect

from atomvla.train.cli import app
from atomvla.train.policy import load_policy
from atomvla.train.serve.client import PolicyClient, ServerError
from atomvla.train.serve.queue import ActionQueue
from atomvla.train.serve.server import PolicyServer, ServerThread, ServeError
from atomvla.train.serve.wire import packb, unpackb
from atomvla.train.sim.metaworld import CAMERA_KEY
from tests.train.test_rollout import tiny_checkpoint  # noqa: F401  (the session fixture)


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):  # noqa: F811
    return load_policy(tiny_checkpoint)


def observation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {CAMERA_KEY: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)},
            "state": rng.normal(size=4).astype(np.float32), "task": "press the button"}


def test_the_server_speaks_openpis_protocol(policy, tiny_checkpoint):  # noqa: F811
    with ServerThread(PolicyServer(policy)) as server, connect(server.url) as ws:
        meta = unpackb(ws.recv())  # metadata first, unasked
        assert meta["cameras"] == [CAMERA_KEY] and meta["state"] == ["hand_x", "hand_y", "hand_z", "gripper"]
        assert meta["action"] == ["dx", "dy", "dz", "grip"] and meta["checkpoint"] == str(tiny_checkpoint)
        ws.send(packb(observation()))
        raw = ws.recv()
        # openpi's numpy encoding, read without our decoder
        plain = msgpack.unpackb(raw)
        encoded = plain["actions"]
        assert encoded[b"__ndarray__"] is True and encoded[b"dtype"] == "<f4"
        assert list(encoded[b"shape"]) == [meta["horizon"], 4]
        answer = unpackb(raw)
        assert answer["actions"].dtype == np.float32 and answer["actions"].shape == (meta["horizon"], 4)
        assert isinstance(answer["subtask"], str) and "skill" in answer and answer["server_timing"]["infer_ms"] > 0
        assert np.isfinite(answer["actions"]).all()


def test_each_connection_is_logged_once(policy, caplog):
    """The server's log said every connection twice: websockets' "connection open" beside ours."""
    caplog.set_level(logging.INFO)
    with ServerThread(PolicyServer(policy)) as server:
        PolicyClient(server.url).close()
        deadline = time.monotonic() + 10
        while not any("closed" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("connection from") for m in messages) == 2, messages  # opened, closed
    assert not [m for m in messages if m in ("connection open", "connection closed") or m.startswith("server listening")]


def test_a_malformed_message_ends_that_connection_and_the_server_keeps_serving(policy):
    bad = [b"\xc1 not msgpack", packb([1, 2]), packb({"images": {}, "task": "x"}), "a text frame",
           packb({**observation(), "state": np.zeros(7, np.float32)})]
    expected = ["error:", "not a map", "has no state", "text frame", "7 values"]
    with ServerThread(PolicyServer(policy)) as server:
        for message, error in zip(bad, expected):
            with connect(server.url) as ws:
                ws.recv()
                ws.send(message)
                reply = ws.recv()
                assert isinstance(reply, str) and reply.startswith("error:") and error in reply, reply
        client = PolicyClient(server.url)
        try:
            assert client.infer(observation()).actions.shape[1] == 4  # still serving
        finally:
            client.close()


def test_the_token_is_checked_on_connect_and_a_public_bind_needs_one(policy, tiny_checkpoint):  # noqa: F811
    with ServerThread(PolicyServer(policy, token="s3cret")) as server:
        with pytest.raises(ServerError, match="HTTP 401"):
            PolicyClient(server.url)
        with pytest.raises(ServerError, match="HTTP 401"):
            PolicyClient(server.url, token="wrong")
        client = PolicyClient(server.url, token="s3cret")
        assert client.infer(observation()).actions.shape[1] == 4
        client.close()
    with pytest.raises(ServeError, match="pass --token"):
        with ServerThread(PolicyServer(policy), host="0.0.0.0"):
            pass
    r = CliRunner().invoke(app, ["serve", "--checkpoint", str(tiny_checkpoint), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "pass --token" in r.output


def test_rollout_through_the_server(policy, tiny_checkpoint, tmp_path):  # noqa: F811
    with ServerThread(PolicyServer(policy, token="t")) as server:
        out = tmp_path / "ro"
        r = CliRunner().invoke(app, ["rollout", "--server", server.url, "--token", "t", "--tasks",
                                     "drawer-close-v3=close the drawer", "--episodes", "2", "--max-steps", "5",
                                     "--no-video", "--out", str(out)])
        assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == str(tiny_checkpoint) and results["tasks"]["drawer-close-v3"]["episodes"] == 2
    r = CliRunner().invoke(app, ["rollout", "--server", "ws://127.0.0.1:9", "--tasks", "drawer-close-v3=close it",
                                 "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "cannot reach the policy server" in r.output


class _Counting:
    """The real policy, counting its calls (no stand-in: the queue drives load_policy's infer)."""

    def __init__(self, policy):
        self.policy, self.calls = policy, 0

    def infer(self, obs):
        self.calls += 1
        return self.policy.infer(obs)

    def reset(self):
        self.policy.reset()


def test_the_action_queue_fetches_the_next_chunk_while_the_current_one_executes(policy):
    horizon = policy.model.head.horizon
    sync, ahead = _Counting(policy), _Counting(policy)
    plain, queue = ActionQueue(sync), ActionQueue(ahead, prefetch_at=1)
    try:
        for _ in range(horizon - 1):
            plain.act(observation())
            queue.act(observation())
        # one action of the first chunk left: only the prefetching queue has asked for the next chunk
        deadline = time.monotonic() + 60
        while ahead.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sync.calls == 1 and ahead.calls == 2
        first = queue.current
        queue.act(observation())
        queue.act(observation())  # the prefetched chunk, already there
        assert queue.current is not first and len(queue.waits) == 2
    finally:
        queue.close()
