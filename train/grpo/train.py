"""Stage II: offline GRPO of the SFT policy, rewarded by the latent world model (`atom-train grpo`).

Each step draws states (frames of the curated episodes, in the SFT data order machinery), samples
a group of chunks per state with stochastic denoising (exact log-probs, `sde`), scores them with
the world model on cached latents (`rewards`), normalises the rewards within each group, and
takes clipped-ratio steps with a k3 KL penalty to the frozen SFT policy.

Checkpoints are SFT-format policy checkpoints (`config.json` is the policy's SFT config, so
`atom-train eval` and `load_policy` read them) plus `grpo_config.json`; trainer_state records the
reference policy, the world model and the latents. Every random draw is a function of (seed,
step, rank), so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from atomvla.train.assemble import STATS_FILE, TOKENIZER_DIR, Trained, load_trained
from atomvla.train.checkpoint import Checkpoint, CheckpointError, resolve_checkpoint, save_checkpoint
from atomvla.train.config import apply_overrides, config_to_json, from_dict
from atomvla.train.data.episodes import DatasetError, TrainEpisode, dataset_ref, open_dataset
from atomvla.train.data.samples import ChunkDataset, ChunkSampler
from atomvla.train.data.transforms import ActionOutputs
from atomvla.train.grpo import sde
from atomvla.train.grpo.config import GRPOConfig
from atomvla.train.grpo.objective import LossParts, group_advantages, grpo_loss
from atomvla.train.latents import LatentCache, LatentCacheError, build_with_progress
from atomvla.train.loop import (
    Metrics,
    Runtime,
    StopOnSignal,
    optimization,
    removed_on_user_error,
    resume_point,
    resumed_step,
    step_generator,
)
from atomvla.train.models.vla import VLA
from atomvla.train.rewards import TERMS, States, score
from atomvla.train.worldmodel.data import LatentEpisode, load_latent_episodes
from atomvla.train.worldmodel.world_model import WorldModel, WorldModelError

log = logging.getLogger(__name__)
GRPO_CONFIG_FILE = "grpo_config.json"


class SDEPolicy(nn.Module):
    """The VLA seen as a stochastic chunk sampler. Both uses go through `forward` (so DDP and FSDP
    wrap it like any model, and FSDP gathers the shards for each): with `xs` the denoising
    log-probs of those trajectories, without it a sampled group of trajectories."""

    def __init__(self, vla: VLA, steps: int, eta: float):
        super().__init__()
        self.vla, self.steps, self.eta = vla, steps, eta

    def velocity(self, batch: dict, group: int) -> sde.Velocity:
        """The head's velocity for `group` candidates per state of `batch` (one VLM forward)."""
        ctx, ctx_mask = self.vla.context(batch)
        cond = [t.repeat_interleave(group, 0) for t in (ctx, ctx_mask, batch["state"], batch["skill"])]

        dtype = next(self.vla.head.parameters()).dtype

        def v(x: Tensor, s: Tensor) -> Tensor:
            rep = x.shape[0] // cond[0].shape[0]  # all denoising steps batched: step-major
            c, m, st, sk = (t.repeat(rep, *([1] * (t.dim() - 1))) for t in cond)
            # The head may run in bf16; the SDE steps and their log-probs stay in float32.
            return self.vla.head.velocity(x.to(dtype), s.to(dtype), st.to(dtype), c.to(dtype), m, sk).float()

        return v

    def forward(self, batch: dict, group: int, xs: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor | sde.Trajectory:
        if xs is not None:
            return sde.log_probs(self.velocity(batch, group), xs, self.steps, self.eta)
        with torch.no_grad():
            head = self.vla.head
            b = batch["state"].shape[0] * group
            noise = torch.randn(b, head.horizon, head.action_dim, generator=generator, device=batch["state"].device)
            return sde.sample(self.velocity(batch, group), noise, self.steps, self.eta, generator)


@dataclass
class Rollout:
    trajectory: sde.Trajectory
    rewards: dict[str, Tensor]  # per term and `total`, (states, group)
    advantages: Tensor  # (states * group,)


@dataclass
class GRPOResult:
    metrics: list[dict[str, float]]  # per step run here: rewards per term, loss, kl, ratio
    checkpoint: Path | None
    model: VLA = field(repr=False)


# (episode, frame) picks, the chunk length and the reward horizon in chunks -> the states to score;
# cached latents by default.
StateSource = Callable[[Sequence[tuple[LatentEpisode, int]], int, int], States]


class GRPOTrainer:
    """One GRPO run's parts: the policy being tuned, the frozen reference, the world model, the data."""

    def __init__(self, config: GRPOConfig, policy: Trained, reference: VLA, wm: WorldModel,
                 episodes: Sequence[LatentEpisode], device: torch.device, state_source: StateSource = States.gather):
        self.config, self.policy, self.wm, self.device = config, policy, wm, device
        self.model = SDEPolicy(policy.model, config.denoise_steps, config.eta)
        self.reference = SDEPolicy(reference.eval().requires_grad_(False), config.denoise_steps, config.eta)
        self.latent = {e.source.meta.episode_id: e for e in episodes}
        self.data = ChunkDataset([e.source for e in episodes], policy.config.data, policy.stats, policy.cameras,
                                 policy.processor)
        # The chunks the world model scores are the robot's actions: the policy's outputs chain
        # (unpad, unnormalise, delta -> absolute), as `load_policy` applies it.
        self.outputs = ActionOutputs.of(policy.config.data, policy.stats)
        state = policy.stats.state
        self._state_mean = torch.tensor(state.mean, device=device)
        self._state_std = torch.tensor(state.std, device=device)
        self.state_source = state_source

    def batch(self, indices: Sequence[int]) -> dict:
        batch = self.policy.processor.collate([self.data[i] for i in indices])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def rollout(self, policy: nn.Module, batch: dict, generator: torch.Generator) -> Rollout:
        """`policy`: the SDEPolicy, or it wrapped (DDP, FSDP)."""
        g = self.config.group_size
        traj = policy(batch, g, generator=generator)
        picks = [(self.latent[m["episode_id"]], m["frame"]) for m in batch["meta"]]
        states = self.state_source(picks, self.policy.config.data.horizon, self.config.rewards.horizon).to(self.device)
        # The raw state back from the batch's (normalised, padded) one: the delta dims start from it.
        raw_state = batch["state"][:, : len(self._state_mean)] * self._state_std + self._state_mean
        actions = self.outputs(traj.chunk, raw_state.repeat_interleave(g, 0))
        chunks = actions.view(len(picks), g, *actions.shape[1:])
        rewards = score(self.wm, states, chunks, self.config.rewards)
        return Rollout(traj, rewards, group_advantages(rewards["total"]).flatten())

    def loss(self, policy: nn.Module, batch: dict, rollout: Rollout) -> LossParts:
        g, xs = self.config.group_size, rollout.trajectory.xs
        with torch.no_grad():
            ref_logp = self.reference(batch, g, xs)
        logp = policy(batch, g, xs)
        return grpo_loss(logp, rollout.trajectory.log_probs, ref_logp, rollout.advantages, self.config.clip,
                         self.config.kl_beta)


def _open_latents(wm: WorldModel, latents: str | Path | None, episodes: Sequence[TrainEpisode], device) -> LatentCache:
    root = Path(latents or wm.latents_dir)
    try:
        cache = LatentCache(root, wm.config.encoder.spec())
    except LatentCacheError as exc:
        raise WorldModelError(
            f"{root}: these latents do not come from the encoder the world model was trained with "
            f"({wm.encoder_identity.get('encoder')!r}, key {wm.encoder_key}): {exc}"
        ) from exc
    wm.check_latents(cache, str(root))
    build_with_progress(cache, [e.meta for e in episodes], device)
    return cache


def train_grpo(
    config: GRPOConfig,
    out: Path,
    policy: Path | None = None,
    world_model: Path | None = None,
    dataset: str | Path | None = None,
    latents: Path | None = None,
    resume: bool = False,
    overrides: tuple[str, ...] = (),
    state_source: StateSource = States.gather,
) -> GRPOResult:
    """Tune SFT checkpoint `policy` with world model `world_model`; checkpoints go to `out/step-N`."""
    out = Path(out)
    with removed_on_user_error(out):
        return _train_grpo(config, out, policy, world_model, dataset, latents, resume, overrides, state_source)


def _train_grpo(config: GRPOConfig, out: Path, policy: Path | None, world_model: Path | None,
                dataset: str | Path | None, latents: Path | None, resume: bool, overrides: tuple[str, ...],
                state_source: StateSource) -> GRPOResult:
    resume_from = resume_point(out, resume)
    prior = Checkpoint(resume_from).trainer_state if resume_from else {}
    if resume_from:
        config = apply_overrides(from_dict(GRPOConfig, json.loads((resume_from / GRPO_CONFIG_FILE).read_text())), overrides)
        reference_path, wm_path = Path(prior["reference"]), Path(prior["world_model"])
        latents = latents or prior["latents"]
        dataset = dataset or prior["dataset"]
    else:
        if policy is None or world_model is None:
            raise CheckpointError("grpo needs --policy (an SFT checkpoint) and --world-model (from atom-train wm)")
        reference_path, wm_path = resolve_checkpoint(Path(policy)).resolve(), Path(world_model).resolve()
    start = resumed_step(resume_from, prior, config.train.max_steps) if resume_from else 0

    runtime = Runtime(config.train)
    rank, world, device = runtime.rank, runtime.world, runtime.device
    torch.manual_seed(config.train.seed)
    tuned = load_trained(resume_from or reference_path)
    reference = load_trained(reference_path).model
    wm = WorldModel.load(wm_path, device)
    if wm.config.horizon != tuned.config.data.horizon:
        raise WorldModelError(f"{wm_path}: predicts chunks of {wm.config.horizon} actions, the policy makes {tuned.config.data.horizon}")

    if not (dataset or tuned.state.get("dataset")):
        raise DatasetError("no dataset: pass --dataset (an export folder, a Hub repo id, or a store file)")
    dataset = dataset_ref(dataset or tuned.state["dataset"])
    episodes = open_dataset(dataset, tuned.config.data.status)
    train_ids = set(tuned.state.get("train_episodes") or [e.meta.episode_id for e in episodes])
    train_eps = [e for e in episodes if e.meta.episode_id in train_ids]
    if not train_eps:
        raise DatasetError(f"{dataset}: none of the policy's training episodes is in this dataset")
    cache = _open_latents(wm, latents, train_eps, device)
    trainer = GRPOTrainer(config, tuned, reference, wm, load_latent_episodes(train_eps, cache), device, state_source)
    if runtime.fsdp:  # the frozen reference is sharded like the policy: no rank holds a whole copy
        runtime.wrap(trainer.reference)
    else:
        trainer.reference.to(device)

    sampler = iter(ChunkSampler(len(trainer.data), config.train.batch_size, config.train.seed, rank, world, start))
    opt = optimization(runtime, trainer.model, resume_from, state_of=tuned.model)
    model = opt.model
    inner: SDEPolicy = runtime.unwrap(model)

    trainer_state = {
        **{k: v for k, v in tuned.state.items() if k not in ("step", "scheduler", "python_rng", "numpy_rng")},
        "kind": "grpo", "dataset": dataset, "reference": str(reference_path), "world_model": str(wm_path),
        "latents": str(cache.root.resolve()), "world_size": world,
    }

    def save(step: int) -> Path:
        extra = {
            STATS_FILE: tuned.stats.save,
            TOKENIZER_DIR: lambda p: tuned.processor.tokenizer.save_pretrained(p),
            GRPO_CONFIG_FILE: lambda p: p.write_text(config_to_json(config)),
        }
        return save_checkpoint(out, step, inner.vla, opt.optimizer, opt.scheduler, config_to_json(tuned.config),
                               trainer_state, extra, config.train.keep_last)

    logger = Metrics(out, "grpo", runtime, config.train.batch_size * config.group_size * world, start)
    metrics: list[dict[str, float]] = []
    checkpoint = None
    with StopOnSignal(runtime) as stop:
        for step in range(start, config.train.max_steps):
            batch = trainer.batch(next(sampler))
            model.train()
            rollout = trainer.rollout(model, batch, step_generator(config.train, step, rank, device))
            for _ in range(config.updates_per_batch):
                parts = trainer.loss(model, batch, rollout)
                opt.update(parts.loss)
            opt.scheduler.step()
            done = step + 1
            row = {f"reward_{k}": v.mean() for k, v in rollout.rewards.items()}
            row |= {"loss": parts.loss, "policy_loss": parts.policy, "kl": parts.kl, "ratio": parts.ratio, "clip_fraction": parts.clip_fraction}
            row = {k: runtime.mean(v) for k, v in row.items()}
            metrics.append({"step": done, **row})
            end = stop.after(done, config.train)
            line = None
            if end.log:
                terms = ", ".join(f"{k} {row['reward_' + k]:.4f}" for k in TERMS)
                line = f"reward {row['reward_total']:.4f} ({terms})  loss {row['loss']:.4f}  kl {row['kl']:.5f}"
            logger(done, row, line)
            if end.save:
                checkpoint = save(done)
            if end.stop:
                logger.close()
                raise stop.interrupted(done, checkpoint)
    logger.close()
    return GRPOResult(metrics, checkpoint, inner.vla)


__all__ = ["GRPOResult", "GRPOTrainer", "SDEPolicy", "train_grpo"]
