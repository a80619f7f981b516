"""`atom-train wm`: fit the action-conditioned predictor on cached latents (in the shared loop, `train.loop`:
DDP or FSDP, exact resume) and evaluate it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from atomvla.train.checkpoint import Checkpoint, CheckpointError, save_checkpoint
from atomvla.train.config import apply_overrides, from_dict
from atomvla.train.data.episodes import TrainEpisode, open_dataset, run_dataset, split_episodes
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
from atomvla.train.worldmodel.config import WMConfig
from atomvla.train.worldmodel.data import LatentEpisode, Normaliser, Windows, load_latent_episodes
from atomvla.train.worldmodel.model import ACPredictor, PredictorDims
from atomvla.train.worldmodel.world_model import WorldModel

log = logging.getLogger(__name__)


def open_latents(config: WMConfig, episodes: Sequence[TrainEpisode], latents_dir: str | Path, device: str = "cpu") -> LatentCache:
    """The latent cache for `config`'s encoder, with every episode encoded (once)."""
    cache = LatentCache(latents_dir, config.encoder.spec())
    n = build_with_progress(cache, [e.meta for e in episodes], device)
    if n:
        log.info("encoded %d frames into %s", n, latents_dir)
    return cache


def train_world_model(
    config: WMConfig, dataset: str | Path | None, out: str | Path, latents_dir: str | Path | None = None,
    device: str = "cpu", resume: bool = False, overrides: tuple[str, ...] = (),
) -> tuple[WorldModel, dict[str, float]]:
    """Train (or resume) the predictor on `dataset` (an export folder, a Hub id or a store file; a resumed
    run defaults to its own) in the shared loop; checkpoints `out/step-N`, then the world model, its
    evaluation and config in `out`. The latent cache is `latents_dir`, else a resumed run's own, else
    `out/latents`. `device` is where frames are encoded into the cache."""
    out = Path(out)
    with removed_on_user_error(out):
        return _train(config, dataset, out, latents_dir, device, resume, overrides)


def _train(config: WMConfig, dataset: str | Path | None, out: Path, latents_dir: str | Path | None, device: str,
           resume: bool, overrides: tuple[str, ...]) -> tuple[WorldModel, dict[str, float]]:
    resume_from = resume_point(out, resume)
    resumed = Checkpoint(resume_from) if resume_from is not None else None
    prior = resumed.trainer_state if resumed is not None else {}
    if resumed is not None:
        saved = resumed.config
        if saved.get("kind") != "wm":
            raise CheckpointError(f"{resume_from}: a {saved.get('kind')!r} checkpoint, not a world model's")
        config = apply_overrides(from_dict(WMConfig, saved), overrides)
    dataset = run_dataset(dataset, prior)  # checkpoints before the dataset was recorded need --dataset
    if latents_dir is None:
        latents_dir = _recorded_latents(resume_from, prior) if resume_from is not None else out / "latents"
    episodes = open_dataset(dataset)
    start = resumed_step(resume_from, prior, config.train.max_steps) if resume_from is not None else 0
    t = config.train
    runtime = Runtime(t)
    train_ids, val_ids = split_episodes(list(episodes), t.val_fraction, t.seed)
    cache = open_latents(config, episodes, latents_dir, device)
    latent_eps = load_latent_episodes(episodes, cache)
    by_id = {e.source.meta.episode_id: e for e in latent_eps}
    train_eps = [by_id[i] for i in train_ids]
    val_eps = [by_id[i] for i in val_ids] or train_eps
    windows = Windows(train_eps, config.horizon, config.predictor.steps)
    norm = Normaliser.fit(train_eps)
    first = train_eps[0]
    dims = PredictorDims(
        latent_dim=first.latents.shape[-1], n_patches=first.latents.shape[1],
        action_dim=first.actions.shape[-1], state_dim=first.states.shape[-1], chunk=config.horizon,
    )
    torch.manual_seed(t.seed)
    wm = WorldModel.build(config, dims, norm, cache)
    if resume_from is not None:
        Checkpoint(resume_from).load_model(wm.predictor)
    opt = optimization(runtime, wm.predictor, resume_from)
    predictor = opt.model
    predictor.train()
    trainer_state = {"kind": "wm", "dataset": dataset, "train_episodes": list(train_ids), "val_episodes": list(val_ids),
                     "latents": str(cache.root.resolve()), "world_size": runtime.world}
    metrics = Metrics(out, "wm", runtime, t.batch_size * runtime.world, start)
    rollout = min(config.predictor.rollout, config.predictor.steps)
    with StopOnSignal(runtime) as stop:
        for step in range(start, t.max_steps):
            idx = torch.randint(len(windows), (t.batch_size,), generator=step_generator(t, step, runtime.rank)).tolist()
            z, a, s = (x.to(runtime.device) for x in windows.batch(idx, norm))
            teacher = (predictor(z[:, :-1], a, s) - z[:, 1:]).abs().mean()
            loss = teacher
            row = {"teacher_forcing_l1": teacher}
            if rollout:
                # Each rollout step goes through the wrapped module (DDP syncs its gradients, FSDP gathers shards).
                seq = [z[:, 0]]
                for k in range(rollout):
                    seq.append(predictor(torch.stack(seq, 1), a[:, : k + 1], s[:, : k + 1])[:, -1])
                rolled = (torch.stack(seq[1:], 1) - z[:, 1 : rollout + 1]).abs().mean()
                loss = loss + t.rollout_weight * rolled
                row["rollout_l1"] = rolled
            opt.update(loss)
            opt.scheduler.step()
            done = step + 1
            end = stop.after(done, t)
            if end.log:
                row = {"loss": runtime.mean(loss), **{k: runtime.mean(v) for k, v in row.items()}}
                metrics(done, {**row, "lr": opt.scheduler.get_last_lr()[0]}, f"loss {row['loss']:.4f}")
            if end.save:
                checkpoint = save_checkpoint(out, done, runtime.unwrap(predictor), opt.optimizer, opt.scheduler,
                                             json.dumps(asdict(config), indent=2), trainer_state, keep_last=t.keep_last)
            if end.stop:
                metrics.close()
                raise stop.interrupted(done, checkpoint)
    metrics.close()
    wm.predictor = _plain(predictor, wm, runtime)
    wm.predictor.eval()
    report = evaluate(wm, val_eps, runtime.device)
    report["held_out_episodes"] = len(val_ids)
    if runtime.is_main:
        wm.save(out)
        (out / "wm_eval.json").write_text(json.dumps(report, indent=2))
        (out / "wm_config.json").write_text(json.dumps(asdict(config), indent=2))
    runtime.barrier()
    return wm, report


def _recorded_latents(checkpoint: Path, prior: dict) -> Path:
    """The latent cache the resumed run used: encoding every frame again into another folder (OUT/latents)
    would cost as much as the first encoding (GPU hours at real scale)."""
    recorded = Path(prior["latents"])
    if not recorded.is_dir():
        raise LatentCacheError(
            f"{recorded}: the latent cache this run used (recorded in {checkpoint}) no longer exists; pass --latents DIR: "
            "the folder it was moved to, or a new folder to encode every frame again"
        )
    return recorded


def _plain(predictor: torch.nn.Module, wm: WorldModel, runtime) -> torch.nn.Module:
    """The trained predictor as one plain module on every rank (gathered from the shards under FSDP)."""
    if not runtime.fsdp:
        return runtime.unwrap(predictor)
    full = get_model_state_dict(predictor, options=StateDictOptions(full_state_dict=True))
    p = wm.config.predictor
    plain = ACPredictor(wm.predictor.dims, p.hidden_size, p.depth, p.heads, max_steps=p.steps + 1, mlp_ratio=p.mlp_ratio)
    plain.load_state_dict(full)
    return plain.to(runtime.device)


@torch.no_grad()
def evaluate(wm: WorldModel, episodes: Sequence[LatentEpisode], device: str = "cpu") -> dict[str, float]:
    """L1 of one-step and rolled-out predictions against copying the current latent forward."""
    steps = max(1, min(wm.config.predictor.rollout, wm.config.predictor.steps))
    windows = Windows(episodes, wm.config.horizon, steps)
    predictor = wm.predictor.to(device).eval()
    sums = dict.fromkeys(("one_step_l1", "copy_l1", "rollout_l1", "rollout_copy_l1"), 0.0)
    for start in range(0, len(windows), 256):
        z, a, s = (x.to(device) for x in windows.batch(range(start, min(start + 256, len(windows))), wm.norm))
        n = z.shape[0]
        sums["one_step_l1"] += (predictor(z[:, :1], a[:, :1], s[:, :1])[:, 0] - z[:, 1]).abs().mean().item() * n
        sums["copy_l1"] += (z[:, 0] - z[:, 1]).abs().mean().item() * n
        sums["rollout_l1"] += (predictor.rollout(z[:, 0], a, s)[:, -1] - z[:, -1]).abs().mean().item() * n
        sums["rollout_copy_l1"] += (z[:, 0] - z[:, -1]).abs().mean().item() * n
    report = {k: v / len(windows) for k, v in sums.items()}
    report["rollout_steps"] = steps
    report["windows"] = len(windows)
    return report
