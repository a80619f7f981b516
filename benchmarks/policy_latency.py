"""Per-chunk latency of `load_policy().infer` (p50 / p95), before and after the action pass reuses the
generation pass (its KV cache and hidden states) instead of encoding images + prompt + subtask again.

- before: on a re-deciding chunk, generate the subtask, then one more VLM forward over the completed
  sequence for the head's context (`generate_subtasks` + `predict_actions`, what `infer` did before);
- after: `infer` itself (the head reads the generation's context).
Chunks between re-decisions (one VLM forward over the kept subtask) are the same in both. Measured for
re-deciding every chunk (K=1) and every 4 (K=4), the two paths alternating chunk by chunk on the same
observations (held-out frames of the checkpoint's dataset), so load drifts hit both alike. Wall and
CPU milliseconds per chunk (CPU: this process, one torch thread), with the load average: on a busy
machine compare CPU time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/policy_latency.py --checkpoint runs/tiny [--chunks 60]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from atomvla.train.data.episodes import open_dataset  # noqa: E402
from atomvla.train.data.samples import ChunkDataset  # noqa: E402
from atomvla.train.policy import Policy, load_policy  # noqa: E402


def before(policy: Policy, observation: dict) -> None:
    """`infer` as it was: the generation's context is dropped and the sequence encoded again."""
    sample = policy.observation_sample(observation)
    if policy._subtask_ids is None or policy._chunks % policy.redecide_every == 0:
        policy._subtask_ids = policy.generate_subtasks([sample])[0]
        policy._decided = policy.decode(policy._subtask_ids)
    policy.predict_actions([sample], [policy._subtask_ids], [policy._decided[0]])
    policy._chunks += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="an SFT checkpoint (its dataset gives the observations)")
    parser.add_argument("--chunks", type=int, default=60, help="chunks timed per path and K")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint)
    trained = policy.trained
    held = set(trained.state["val_episodes"]) or set(trained.state["train_episodes"])
    episodes = [e for e in open_dataset(trained.state["dataset"], trained.config.data.status) if e.meta.episode_id in held]
    data = ChunkDataset(episodes, trained.config.data, trained.stats, trained.cameras)
    frames = np.linspace(0, len(data) - 1, args.chunks).round().astype(int)
    observations = []
    for i in frames:
        s = data.raw(int(i))
        observations.append({"images": dict(zip(trained.cameras, s.images)), "state": s.state, "task": s.task})
    print(f"{args.checkpoint}: {len(episodes)} held-out episodes, {args.chunks} chunks per path, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print("| re-decide every | path | p50 ms | p95 ms | mean ms | CPU p50 ms | CPU p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for k in (1, 4):
        times: dict[str, list[float]] = {"before": [], "after": []}
        cpu: dict[str, list[float]] = {"before": [], "after": []}
        paths = {"before": lambda o: before(policy, o), "after": policy.infer}
        policy.redecide_every = k
        for name in paths:  # one warm-up chunk each
            policy.reset()
            paths[name](observations[0])
        # Alternate the paths chunk by chunk; each keeps its own subtask/chunk counter.
        state = {name: (None, (None, ""), 0) for name in paths}
        for obs in observations:
            for name, run in paths.items():
                policy._subtask_ids, policy._decided, policy._chunks = state[name]
                t0, c0 = time.perf_counter(), time.process_time()
                run(obs)
                times[name].append(1000 * (time.perf_counter() - t0))
                cpu[name].append(1000 * (time.process_time() - c0))
                state[name] = (policy._subtask_ids, policy._decided, policy._chunks)
        for name, ts in times.items():
            print(f"| {k} | {name} | {np.percentile(ts, 50):.1f} | {np.percentile(ts, 95):.1f} | {np.mean(ts):.1f} "
                  f"| {np.percentile(cpu[name], 50):.1f} | {np.percentile(cpu[name], 95):.1f} |")
        b, a = np.median(times["before"]), np.median(times["after"])
        cb, ca = np.median(cpu["before"]), np.median(cpu["after"])
        print(f"| {k} | after / before (p50) | {a / b:.2f} | | | {ca / cb:.2f} | |")


if __name__ == "__main__":
    main()
