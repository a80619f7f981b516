"""Stage II figures on the fixture: world-model error against the copy baseline, GRPO step time with
cached latents against re-encoding frames every step, and GRPO reward curves (one per term).

The dataset is the Meta-World fixture curated the user's way (import, ground truth accepted,
`atom-curate export --to lerobot`) unless `--dataset` names one. Everything is the `tiny-cpu`
configs (random-init tiny encoder, predictor and policy), trained here:
- world model: `tiny-cpu` wm with 20% of the episodes held out; L1 of one-step and rolled-out
  predictions against copying the current latent forward (`wm_eval.json`);
- step time: whole GRPO steps (sample G chunks per state, rewards, loss, backward, AdamW) on the same
  batches, rewards from the latent cache vs decoding and encoding the current, subgoal and final
  frames of every state at every step. Measured end to end with the tiny encoder; for the real
  encoder's size (V-JEPA 2 ViT-L dimensions, random weights: nothing is downloaded) the decode +
  encode of the same frames is timed on its own and added to the cached step;
- reward curves: `--grpo-steps` GRPO steps, each term's mean reward per step (PNG).

    .venv/bin/python benchmarks/grpo_speed.py [--dataset DIR] [--out benchmarks/out/grpo]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from atomvla.train.config import get_config  # noqa: E402
from atomvla.train.data.episodes import open_dataset  # noqa: E402
from atomvla.train.grpo import config as _grpo_configs  # noqa: E402, F401  (registers)
from atomvla.train.grpo.train import GRPOTrainer, train_grpo  # noqa: E402
from atomvla.train.latents import EncoderSpec, FrameEncoder, LatentCache  # noqa: E402
from atomvla.train.rewards import TERMS, States  # noqa: E402
from atomvla.train.assemble import load_trained  # noqa: E402
from atomvla.train.sft import train_sft  # noqa: E402
from atomvla.train.worldmodel import config as _wm_configs  # noqa: E402, F401  (registers)
from atomvla.train.worldmodel.data import LatentEpisode, load_latent_episodes  # noqa: E402
from atomvla.train.worldmodel.model import normalise_latents  # noqa: E402
from atomvla.train.worldmodel.train import train_world_model  # noqa: E402
from atomvla.train.worldmodel.world_model import WorldModel  # noqa: E402
from benchmarks.train_throughput import curated_fixture  # noqa: E402


class ReencodedStates:
    """States whose latents (current, subgoal, final frame) are decoded and encoded on every call."""

    def __init__(self, encoder: FrameEncoder):
        self.encoder = encoder

    def __call__(self, picks: Sequence[tuple[LatentEpisode, int]], horizon: int, chunks: int = 1) -> States:
        cached = States.gather(picks, horizon, chunks)
        frames = []
        for ep, t in picks:
            idx = [t, ep.subgoal_frame(t), ep.n_frames - 1]
            frames.append(ep.source.episode.frames().get_many(idx))
        z = normalise_latents(self.encoder.encode(torch.cat([torch.from_numpy(f) for f in frames]).numpy()))
        z = z.view(len(picks), 3, *z.shape[1:])
        return dataclasses.replace(cached, latent=z[:, 0], subgoal=z[:, 1], final=z[:, 2])


def step_seconds(trainer: GRPOTrainer, batches: list[list[int]], sources: dict[str, object]) -> dict[str, float]:
    """Median wall time of whole GRPO steps (rollout, rewards, loss, backward, AdamW) per state source,
    the sources alternating on each batch so that load on the machine falls on all of them alike."""
    opt = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=1e-5)
    times: dict[str, list[float]] = {name: [] for name in sources}
    for i, idx in enumerate(batches):
        for name, source in sources.items():
            trainer.state_source = source
            t0 = time.perf_counter()
            batch = trainer.batch(idx)
            rollout = trainer.rollout(trainer.model, batch, torch.Generator().manual_seed(i))
            trainer.loss(trainer.model, batch, rollout).loss.backward()
            opt.zero_grad(set_to_none=True)  # no step: every source sees the same policy
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t[1:] if len(t) > 2 else t) for name, t in times.items()}


def encode_seconds(encoder: FrameEncoder, episodes: list[LatentEpisode], picks: list[tuple[int, int]], repeat: int) -> float:
    states = ReencodedStates(encoder)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        states([(episodes[i], t) for i, t in picks], 4)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def fixed_state_rewards(trainer: GRPOTrainer, indices: list[int]) -> dict[str, float]:
    """Mean reward per term of chunks sampled on fixed states with fixed noise: a curve of these across
    checkpoints shows the policy improving, free of which states a training step happened to draw."""
    batch = trainer.batch(indices)
    rewards = trainer.rollout(trainer.model, batch, torch.Generator().manual_seed(0)).rewards
    out = {t: rewards[t].mean().item() for t in [*TERMS, "total"]}
    # How much a term tells the group's candidates apart, against how much it differs between states.
    out |= {f"{t}_within_group_std": rewards[t].std(1).mean().item() for t in TERMS}
    out |= {f"{t}_across_states_std": rewards[t].mean(1).std().item() for t in TERMS}
    return out


def plot_rewards(metrics: list[dict[str, float]], fixed: list[tuple[int, dict[str, float]]], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, term in zip(axes, [*TERMS, "total"]):
        y = torch.tensor([m[f"reward_{term}"] for m in metrics])
        k = min(9, len(y))
        smooth = torch.nn.functional.avg_pool1d(y[None, None], k, 1, k // 2, count_include_pad=False)[0, 0]
        ax.plot(steps, y, alpha=0.35, label="per step")
        ax.plot(steps, smooth[: len(steps)], label=f"training states, moving mean ({k})")
        ax.plot([s for s, _ in fixed], [r[term] for _, r in fixed], "o-", color="black", label="fixed states + noise")
        ax.set_title(f"reward: {term}")
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=8)
    fig.suptitle("GRPO on the Meta-World fixture (tiny-cpu): mean reward of the sampled chunks per term"
                 + (f" ({note})" if note else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="curated export, Hub id or store (default: the curated fixture)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/grpo"))
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--wm-steps", type=int, default=400)
    parser.add_argument("--grpo-steps", type=int, default=60)
    parser.add_argument("--timed-steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--rewards", nargs="*", default=[],
                        help="reward overrides for an ablation, e.g. rewards.final=0 rewards.deviation=0 (subgoal only)")
    parser.add_argument("--tag", default="", help="suffix of the figure files (for ablations)")
    parser.add_argument("--no-timing", action="store_true", help="skip the step-time comparison")
    args = parser.parse_args()
    args.tag = f"-{args.tag}" if args.tag else ""
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = args.dataset or str(curated_fixture(tmp))
        episodes = open_dataset(dataset)

        wm_cfg = get_config("tiny-cpu", (f"train.max_steps={args.wm_steps}", "train.log_every=100000"), kind="wm")
        _, report = train_world_model(wm_cfg, dataset, tmp / "wm", tmp / "latents")
        figures["world_model"] = report
        print(f"world model (held-out episodes: {report['held_out_episodes']}, {report['windows']} windows):")
        print(f"  one-step L1 {report['one_step_l1']:.4f} vs copy {report['copy_l1']:.4f} "
              f"({report['one_step_l1'] / report['copy_l1']:.2f}x the copy baseline's error)")
        print(f"  {report['rollout_steps']}-step rollout L1 {report['rollout_l1']:.4f} vs copy {report['rollout_copy_l1']:.4f} "
              f"({report['rollout_l1'] / report['rollout_copy_l1']:.2f}x)")

        sft = get_config("tiny-cpu", (f"train.max_steps={args.sft_steps}", f"train.save_every={args.sft_steps}",
                                      "train.log_every=100000", "data.val_fraction=0"))
        policy = train_sft(sft, dataset, tmp / "sft").checkpoint

        every = max(1, args.grpo_steps // 6)
        grpo_cfg = get_config("tiny-cpu", (f"train.max_steps={args.grpo_steps}", f"train.save_every={every}",
                                           "train.log_every=100000", *args.rewards), kind="grpo")
        run = train_grpo(grpo_cfg, tmp / "grpo", policy, tmp / "wm")
        (args.out / f"grpo_metrics{args.tag}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in run.metrics))
        wm = WorldModel.load(tmp / "wm")
        latent_eps = load_latent_episodes(episodes, LatentCache(tmp / "latents", wm.config.encoder.spec()))
        fixed = []
        for step, ckpt in [(0, policy), *((int(p.name[5:]), p) for p in sorted((tmp / "grpo").glob("step-*")))]:
            tr = GRPOTrainer(grpo_cfg, load_trained(ckpt), load_trained(policy).model, wm, latent_eps, torch.device("cpu"))
            fixed.append((step, fixed_state_rewards(tr, list(range(0, len(tr.data), max(1, len(tr.data) // 24))))))
        figures["fixed_state_rewards"] = fixed
        plot_rewards(run.metrics, fixed, args.out / f"grpo_rewards{args.tag}.png", " ".join(args.rewards))
        first, last = run.metrics[: len(run.metrics) // 4], run.metrics[-len(run.metrics) // 4 :]
        figures["rewards_first_quarter"] = {t: statistics.mean(m[f"reward_{t}"] for m in first) for t in [*TERMS, "total"]}
        figures["rewards_last_quarter"] = {t: statistics.mean(m[f"reward_{t}"] for m in last) for t in [*TERMS, "total"]}
        print(f"GRPO {args.grpo_steps} steps, mean reward: training states first -> last quarter; "
              f"fixed states at step 0 -> {fixed[-1][0]}:")
        for t in [*TERMS, "total"]:
            print(f"  {t:9s} {figures['rewards_first_quarter'][t]:+.4f} -> {figures['rewards_last_quarter'][t]:+.4f};"
                  f"  {fixed[0][1][t]:+.4f} -> {fixed[-1][1][t]:+.4f}")
        print("spread of each term at step 0 (fixed states): within a group vs across states")
        for t in TERMS:
            print(f"  {t:9s} {fixed[0][1][t + '_within_group_std']:.4f} vs {fixed[0][1][t + '_across_states_std']:.4f}")

        if args.no_timing:
            (args.out / f"grpo_speed{args.tag}.json").write_text(json.dumps(figures, indent=2))
            return
        trainer = GRPOTrainer(grpo_cfg, load_trained(policy), load_trained(policy).model, wm, latent_eps, torch.device("cpu"))
        g = torch.Generator().manual_seed(0)
        bs = grpo_cfg.train.batch_size
        batches = [torch.randint(len(trainer.data), (bs,), generator=g).tolist() for _ in range(args.timed_steps)]
        sources = {"cached": States.gather, "reencoded": ReencodedStates(FrameEncoder(wm.config.encoder.spec()))}
        timed = step_seconds(trainer, batches, sources)
        cached, reencoded = timed["cached"], timed["reencoded"]
        picks = [trainer.data.locate(i) for i in batches[0]]
        vitl = FrameEncoder(EncoderSpec("vjepa2-vitl dimensions", random_init=True))
        vitl_encode = encode_seconds(vitl, latent_eps, picks, repeat=1)
        figures["step_seconds"] = {
            "cached_latents": cached, "reencode_tiny_encoder": reencoded,
            "reencode_vitl_encoder_added": cached + vitl_encode, "vitl_decode_encode_per_step": vitl_encode,
            "states_per_step": bs, "group_size": grpo_cfg.group_size, "threads": args.threads,
        }
        print(f"GRPO step ({bs} states x {grpo_cfg.group_size} chunks, {args.threads} thread(s)), median of {args.timed_steps}:")
        print(f"  cached latents                   {cached * 1e3:8.1f} ms")
        print(f"  re-encoding, tiny encoder        {reencoded * 1e3:8.1f} ms  ({reencoded / cached:.2f}x slower)")
        print(f"  re-encoding, ViT-L-sized encoder {(cached + vitl_encode) * 1e3:8.1f} ms  "
              f"({(cached + vitl_encode) / cached:.1f}x slower; {3 * bs} frames decoded + encoded per step)")
    (args.out / f"grpo_speed{args.tag}.json").write_text(json.dumps(figures, indent=2))
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
