"""Latency per action chunk of a policy, in process and through `atom-train serve`, and how long a
robot stalls at 20 Hz with and without the action queue's prefetch.

    python -m benchmarks.serve_latency --checkpoint runs/tiny [--chunks 60] [--device cpu]

Prints p50/p95 milliseconds per chunk (in process; over the websocket on loopback, msgpack both
ways), then a 20 Hz control loop over the websocket: per control step, the time the robot waited
for its action (p50/p95/max, and the share of steps that waited more than 5 ms), synchronous vs
prefetching the next chunk when `--prefetch-at` actions remain. Observations are 128x128 images
from the checkpoint's cameras and a random state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from atomvla.cli import console, setup_logging
from atomvla.train.policy import load_policy
from atomvla.train.serve.client import PolicyClient
from atomvla.train.serve.queue import ActionQueue
from atomvla.train.serve.server import PolicyServer, ServerThread

CONTROL_HZ = 20


def _observation(cameras, state_dim: int, rng: np.random.Generator) -> dict:
    return {"images": {c: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for c in cameras},
            "state": rng.normal(size=state_dim).astype(np.float32), "task": "press the button"}


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(ms)}


def _chunk_latency(policy, obs_of, chunks: int) -> list[float]:
    times = []
    for i in range(chunks):
        obs = obs_of(i)
        start = time.perf_counter()
        policy.infer(obs)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _control_loop(client: PolicyClient, obs_of, steps: int, prefetch_at: int | None) -> list[float]:
    """Per step, ms the robot waited for its action; the rest of the 50 ms period it 'executes'."""
    queue = ActionQueue(client, prefetch_at)
    waits = []
    period = 1.0 / CONTROL_HZ
    try:
        for i in range(steps):
            start = time.perf_counter()
            queue.act(obs_of(i))
            waited = time.perf_counter() - start
            waits.append(waited * 1000)
            time.sleep(max(0.0, period - waited))
    finally:
        queue.close()
    return waits


def main(
    checkpoint: Annotated[Path, typer.Option(help="SFT checkpoint (e.g. a tiny-cpu run).")],
    chunks: Annotated[int, typer.Option(help="Chunks timed per setting (after 3 warm-up ones).")] = 60,
    steps: Annotated[int, typer.Option(help="Control steps of the 20 Hz loop per setting.")] = 200,
    prefetch_at: Annotated[int, typer.Option(help="Prefetch when this many actions of the chunk remain.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    setup_logging()
    policy = load_policy(checkpoint, device)
    rng = np.random.default_rng(0)
    pool = [_observation(policy.trained.cameras, len(policy.stats.state.names), rng) for _ in range(16)]

    def obs_of(i: int) -> dict:
        return pool[i % len(pool)]

    _chunk_latency(policy, obs_of, 3)
    figures: dict = {"checkpoint": str(policy.trained.path), "device": device, "horizon": policy.model.head.horizon,
                     "redecide_every": policy.redecide_every}
    figures["in_process"] = _percentiles(_chunk_latency(policy, obs_of, chunks))
    with ServerThread(PolicyServer(policy)) as server:
        client = PolicyClient(server.url)
        _chunk_latency(client, obs_of, 3)
        figures["websocket"] = _percentiles(_chunk_latency(client, obs_of, chunks))
        for name, at in (("sync", None), (f"prefetch_at_{prefetch_at}", prefetch_at)):
            waits = _control_loop(client, obs_of, steps, at)
            figures[f"robot_{name}"] = {**_percentiles(waits), "max_ms": float(max(waits)),
                                        "stalled_steps": float(np.mean(np.asarray(waits) > 5.0))}
        client.close()
    ip, ws = figures["in_process"], figures["websocket"]
    console.print(f"{figures['checkpoint']} on {device}, chunks of {figures['horizon']} actions")
    console.print(f"per chunk, in process: p50 {ip['p50_ms']:.1f} ms, p95 {ip['p95_ms']:.1f} ms")
    console.print(f"per chunk, websocket:  p50 {ws['p50_ms']:.1f} ms, p95 {ws['p95_ms']:.1f} ms "
                  f"({ws['p50_ms'] / ip['p50_ms']:.2f}x in process at p50)")
    for key in [k for k in figures if k.startswith("robot_")]:
        r = figures[key]
        console.print(f"{CONTROL_HZ} Hz robot, {key[6:]}: wait per step p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                      f"max {r['max_ms']:.1f} ms; {r['stalled_steps']:.0%} of steps waited > 5 ms")
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    typer.run(main)
