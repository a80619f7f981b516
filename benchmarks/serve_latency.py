"""Latency per action chunk of a policy, in process and through `atom-train serve`, and how long a
robot stalls at 20 Hz with and without the action queue's prefetch.

    python -m benchmarks.serve_latency --checkpoint runs/tiny [--chunks 60] [--device cpu]

Prints p50/p95 milliseconds per chunk (in process; over the websocket on loopback, msgpack both
ways), then a 20 Hz control loop over the websocket through the action queue: per chunk, how long
the robot waited for it (p50/p95), and per control step the wait (p50/p95/max, and the share of
steps that waited more than 5 ms), synchronous vs prefetching the next chunk when `--prefetch-at`
actions remain. CPU time per chunk is this process's (policy, server and client threads together):
on a busy machine it is the figure to compare, wall time is not; the load average is printed too.
Observations are 128x128 images from the checkpoint's cameras and a random state.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
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


def _chunk_latency(policy, obs_of, chunks: int) -> dict[str, float]:
    """Wall p50/p95 per chunk, and CPU time per chunk (p50/p95, this process's threads together)."""
    wall, cpu = [], []
    for i in range(chunks):
        obs = obs_of(i)
        start, start_cpu = time.perf_counter(), time.process_time()
        policy.infer(obs)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    c = _percentiles(cpu)
    return {**_percentiles(wall), "cpu_p50_ms": c["p50_ms"], "cpu_p95_ms": c["p95_ms"]}


def _control_loop(client: PolicyClient, obs_of, steps: int, prefetch_at: int | None) -> dict[str, float]:
    """A robot at 20 Hz behind the action queue: ms it waited per step and per chunk, and CPU ms per
    chunk; the rest of each 50 ms period it 'executes'."""
    queue = ActionQueue(client, prefetch_at)
    waits = []
    period = 1.0 / CONTROL_HZ
    start_cpu = time.process_time()
    try:
        for i in range(steps):
            start = time.perf_counter()
            queue.act(obs_of(i))
            waited = time.perf_counter() - start
            waits.append(waited * 1000)
            time.sleep(max(0.0, period - waited))
    finally:
        queue.close()
    chunks = _percentiles([1000 * w for w in queue.waits])
    return {**_percentiles(waits), "max_ms": float(max(waits)), "stalled_steps": float(np.mean(np.asarray(waits) > 5.0)),
            "chunk_wait_p50_ms": chunks["p50_ms"], "chunk_wait_p95_ms": chunks["p95_ms"], "chunks": chunks["n"],
            "cpu_per_chunk_ms": 1000 * (time.process_time() - start_cpu) / max(1, chunks["n"])}


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
                     "redecide_every": policy.redecide_every, "torch_threads": torch.get_num_threads(),
                     "load_average": os.getloadavg()[0]}
    figures["in_process"] = _chunk_latency(policy, obs_of, chunks)
    with ServerThread(PolicyServer(policy)) as server:
        client = PolicyClient(server.url)
        _chunk_latency(client, obs_of, 3)
        figures["websocket"] = _chunk_latency(client, obs_of, chunks)
        for name, at in (("sync", None), (f"prefetch_at_{prefetch_at}", prefetch_at)):
            figures[f"robot_{name}"] = _control_loop(client, obs_of, steps, at)
        client.close()
    ip, ws = figures["in_process"], figures["websocket"]
    console.print(f"{figures['checkpoint']} on {device}, chunks of {figures['horizon']} actions, "
                  f"{figures['torch_threads']} torch threads, load average {figures['load_average']:.1f}")
    console.print(f"per chunk, in process: p50 {ip['p50_ms']:.1f} ms, p95 {ip['p95_ms']:.1f} ms; "
                  f"CPU p50 {ip['cpu_p50_ms']:.1f} ms, p95 {ip['cpu_p95_ms']:.1f} ms")
    console.print(f"per chunk, websocket:  p50 {ws['p50_ms']:.1f} ms, p95 {ws['p95_ms']:.1f} ms "
                  f"({ws['p50_ms'] / ip['p50_ms']:.2f}x in process at p50); "
                  f"CPU p50 {ws['cpu_p50_ms']:.1f} ms, p95 {ws['cpu_p95_ms']:.1f} ms")
    for key in [k for k in figures if k.startswith("robot_")]:
        r = figures[key]
        console.print(f"{CONTROL_HZ} Hz robot, action queue {key[6:]}: wait per chunk p50 {r['chunk_wait_p50_ms']:.1f} ms, "
                      f"p95 {r['chunk_wait_p95_ms']:.1f} ms ({r['chunks']} chunks, CPU {r['cpu_per_chunk_ms']:.1f} ms each); "
                      f"per step p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms; "
                      f"{r['stalled_steps']:.0%} of steps waited > 5 ms")
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    typer.run(main)
