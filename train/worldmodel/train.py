"""`atom-train wm`: fit the action-conditioned predictor on cached latents and evaluate it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from atomvla.train.data.episodes import TrainEpisode, split_episodes
from atomvla.train.latents import LatentCache, build_with_progress
from atomvla.train.worldmodel.config import WMConfig
from atomvla.train.worldmodel.data import LatentEpisode, Normaliser, Windows, load_latent_episodes
from atomvla.train.worldmodel.model import PredictorDims
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
    config: WMConfig, episodes: Sequence[TrainEpisode], out: str | Path, latents_dir: str | Path, device: str = "cpu"
) -> tuple[WorldModel, dict[str, float]]:
    t = config.train
    cache = open_latents(config, episodes, latents_dir, device)
    train_ids, val_ids = split_episodes(list(episodes), t.val_fraction, t.seed)
    latent_eps = load_latent_episodes(episodes, cache)
    by_id = {e.source.meta.episode_id: e for e in latent_eps}
    train_eps = [by_id[i] for i in train_ids]
    val_eps = [by_id[i] for i in val_ids] or train_eps
    norm = Normaliser.fit(train_eps)
    first = train_eps[0]
    dims = PredictorDims(
        latent_dim=first.latents.shape[-1], n_patches=first.latents.shape[1],
        action_dim=first.actions.shape[-1], state_dim=first.states.shape[-1], chunk=config.horizon,
    )
    torch.manual_seed(t.seed)
    wm = WorldModel.build(config, dims, norm, cache)
    predictor = wm.predictor.to(device).train()
    windows = Windows(train_eps, config.horizon, config.predictor.steps)
    opt = torch.optim.AdamW(predictor.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, t.warmup_steps)))
    gen = torch.Generator().manual_seed(t.seed)
    writer = _writer(out)
    rollout = min(config.predictor.rollout, config.predictor.steps)
    for step in range(t.max_steps):
        idx = torch.randint(len(windows), (t.batch_size,), generator=gen).tolist()
        z, a, s = (x.to(device) for x in windows.batch(idx, norm))
        teacher = (predictor(z[:, :-1], a, s) - z[:, 1:]).abs().mean()
        loss = teacher
        if rollout:
            rolled = (predictor.rollout(z[:, 0], a[:, :rollout], s[:, :rollout]) - z[:, 1 : rollout + 1]).abs().mean()
            loss = loss + t.rollout_weight * rolled
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(predictor.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        writer.add_scalar("wm/loss", loss.item(), step)
        writer.add_scalar("wm/teacher_forcing_l1", teacher.item(), step)
        if rollout:
            writer.add_scalar("wm/rollout_l1", rolled.item(), step)
        if step % t.log_every == 0 or step == t.max_steps - 1:
            log.info("step %d loss %.4f", step, loss.item())
    predictor.eval()
    report = evaluate(wm, val_eps, device)
    report["held_out_episodes"] = len(val_ids)
    wm.save(out)
    (Path(out) / "wm_eval.json").write_text(json.dumps(report, indent=2))
    (Path(out) / "wm_config.json").write_text(json.dumps(asdict(config), indent=2))
    writer.close()
    return wm, report


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


def _writer(out: str | Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(Path(out) / "tb"))
