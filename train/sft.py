"""Stage I: supervised fine-tuning of the VLA on curated subtasks (`atom-train sft`).

One loop for one CPU process, DDP (torchrun / accelerate, gloo on CPU) and FSDP (GPUs). Every
source of randomness is a function of (seed, step, rank): the data order (`ChunkSampler`) and the
flow-matching noise (a generator seeded per step), so a run resumed from a checkpoint computes
exactly the losses the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from atomvla.schemas import SKILLS
from atomvla.train.assemble import STATS_FILE, TOKENIZER_DIR, load_trained, make_model, make_processor
from atomvla.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from atomvla.train.config import SFTConfig, apply_overrides, config_to_json, from_dict
from atomvla.train.data.episodes import DatasetError, TrainEpisode, dataset_ref, open_dataset, split_episodes
from atomvla.train.data.normalize import Stats
from atomvla.train.data.samples import ChunkDataset, ChunkSampler, cameras_of
from atomvla.train.models.action_head import SkillMoE
from atomvla.train.models.backbone import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class SFTResult:
    losses: list[float]  # this rank's total loss per step run here
    checkpoint: Path | None
    model: torch.nn.Module = field(repr=False)


def make_accelerator(config: SFTConfig) -> Accelerator:
    """CPU (gloo when launched with several processes) or GPUs; FSDP2 when asked and distributed."""
    cuda = torch.cuda.is_available()
    plugin = None
    if config.train.distributed == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="FULL_STATE_DICT",
            cpu_ram_efficient_loading=False, reshard_after_forward=True,
        )
    return Accelerator(cpu=not cuda, mixed_precision=config.train.mixed_precision if cuda else "no",
                       fsdp_plugin=plugin)


def skills_of(episodes: list[TrainEpisode]) -> tuple[str, ...]:
    present = {s.skill for e in episodes for s in e.subtasks}
    return tuple(s for s in SKILLS if s in present)


def _lr_lambda(config: SFTConfig):
    warm, total = config.train.warmup_steps, config.train.max_steps

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return f


@dataclass(frozen=True)
class _Start:
    """Where a run starts: fresh, resumed from `out`, or from another checkpoint (`--from`)."""

    config: SFTConfig
    dataset: str
    checkpoint: Path | None  # weights, statistics and tokenizer to start from
    resumed: bool
    prior: dict  # the checkpoint's trainer_state ({} when fresh)


def _start(config: SFTConfig, dataset: str | Path | None, out: Path, resume: bool, from_checkpoint: Path | None,
           overrides: tuple[str, ...]) -> _Start:
    resume_from = latest_checkpoint(out) if out.is_dir() else None
    if resume_from is not None and not resume:
        raise CheckpointError(f"{out} already holds checkpoints; pass --resume to continue, or choose another --out")
    if resume and resume_from is None:
        raise CheckpointError(f"{out}: nothing to resume (no step-N checkpoint)")
    base = resume_from or (resolve_checkpoint(Path(from_checkpoint)) if from_checkpoint else None)
    prior = Checkpoint(base).trainer_state if base else {}
    if base:  # the checkpoint's config, with this run's overrides
        config = apply_overrides(from_dict(SFTConfig, Checkpoint(base).config), overrides)
    if not (dataset or prior.get("dataset")):
        raise DatasetError("no dataset: pass --dataset (an export folder, a Hub repo id, or a store file)")
    return _Start(config, dataset_ref(dataset or prior["dataset"]), base, resume_from is not None, prior)


def _skills(start: _Start, add_skill: str | None, episodes: list[TrainEpisode]) -> tuple[str, ...]:
    """The skills the head has experts for: the dataset's, the checkpoint's, or those plus `add_skill`."""
    if not add_skill:
        if not start.prior:
            return skills_of(episodes)
        unknown = set(skills_of(episodes)) - set(start.prior["skills"])
        if unknown and start.config.head.moe:
            raise DatasetError(f"{start.dataset}: skills {', '.join(sorted(unknown))} have no expert in "
                               f"{start.checkpoint}; add one with --add-skill")
        return tuple(start.prior["skills"])
    if start.checkpoint is None:
        raise CheckpointError("--add-skill needs --from CHECKPOINT (the policy to extend)")
    if not start.config.head.moe:
        raise CheckpointError(f"{start.checkpoint}: its action head has no experts (head.moe=false); cannot add a skill")
    if add_skill not in SKILLS:
        raise DatasetError(f"--add-skill {add_skill!r}: not a skill (skills: {', '.join(SKILLS)})")
    if add_skill in start.prior["skills"]:
        raise DatasetError(f"--add-skill {add_skill!r}: {start.checkpoint} already has an expert for it")
    skills = (*start.prior["skills"], add_skill)
    unknown = set(skills_of(episodes)) - set(skills)
    if unknown:
        raise DatasetError(
            f"{start.dataset}: skills {', '.join(sorted(unknown))} have no expert in {start.checkpoint} nor --add-skill"
        )
    return skills


class _Log:
    """TensorBoard scalars, `metrics.jsonl` and a log line on the main process; throughput per interval."""

    def __init__(self, out: Path, main: bool, samples_per_step: int, world: int, step: int):
        self.out, self.samples_per_step, self.world = out, samples_per_step, world
        self.writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            out.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(out / "tb"))
        self.t0, self.step, self.tokens = time.perf_counter(), step, 0

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        elapsed, self.t0 = time.perf_counter() - self.t0, time.perf_counter()
        metrics["step_time_s"] = elapsed / (step - self.step)
        metrics["samples_per_s"] = self.samples_per_step * (step - self.step) / elapsed
        metrics["tokens_per_s"] = self.tokens * self.world / elapsed  # this rank's tokens, times the ranks
        self.step, self.tokens = step, 0
        if self.writer is None:
            return
        for k, v in metrics.items():
            self.writer.add_scalar(f"sft/{k}", v, step)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        log.info("step %d  loss %.4f  flow %.4f  lm %.4f  lr %.2e", step, metrics["loss"], metrics["flow"],
                 metrics["lm"], metrics["lr"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train_sft(
    config: SFTConfig,
    dataset: str | Path | None,
    out: Path,
    resume: bool = False,
    add_skill: str | None = None,
    from_checkpoint: Path | None = None,
    overrides: tuple[str, ...] = (),
) -> SFTResult:
    """Train (or resume, or add a skill expert to) a policy; checkpoints go to `out/step-N`."""
    out = Path(out)
    start = _start(config, dataset, out, resume, from_checkpoint, overrides)
    config, prior = start.config, start.prior
    accelerator = make_accelerator(config)
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(config.train.seed)

    episodes = open_dataset(start.dataset, config.data.status)
    if start.resumed:
        train_ids, val_ids = set(prior["train_episodes"]), list(prior["val_episodes"])
    else:
        train_list, val_ids = split_episodes(episodes, config.data.val_fraction, config.train.seed)
        train_ids = set(train_list)
    train_eps = [e for e in episodes if e.meta.episode_id in train_ids]
    if not train_eps:
        raise DatasetError(f"{start.dataset}: no training episodes left after holding out {len(val_ids)}")
    skills = _skills(start, add_skill, episodes)
    added = add_skill or (prior.get("add_skill") if start.resumed else None)

    if start.checkpoint is not None:
        trained = load_trained(start.checkpoint, overrides)
        model, tokenizer, stats, cameras = trained.model, trained.processor.tokenizer, trained.stats, trained.cameras
        if added:
            _train_new_expert_only(model, grow=bool(add_skill))
    else:
        tokenizer = load_tokenizer(config.backbone)
        stats = Stats.compute(train_eps, config.data.state_key, config.data.action_key)
        cameras = cameras_of(episodes, config.data.cameras)
        model = make_model(config, tokenizer, stats, skills)
    processor = make_processor(config, tokenizer, skills)

    data = ChunkDataset(train_eps, config.data, stats, cameras_of(train_eps, cameras), processor)
    first = int(prior["step"]) if start.resumed else 0
    workers = config.data.num_workers
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=ChunkSampler(len(data), config.train.batch_size, config.train.seed, rank, world, first),
        collate_fn=processor.collate, num_workers=workers, persistent_workers=workers > 0,
        prefetch_factor=config.data.prefetch_factor if workers else None, pin_memory=torch.cuda.is_available(),
    )

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    if start.resumed:
        Checkpoint(start.checkpoint).load_training_state(model, optimizer, scheduler)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    inner = accelerator.unwrap_model(model)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP replaces them with sharded ones

    trainer_state = {
        "kind": "sft", "dataset": start.dataset, "skills": list(skills), "cameras": list(cameras),
        "train_episodes": sorted(train_ids), "val_episodes": val_ids, "world_size": world, "add_skill": added,
    }
    extra = {STATS_FILE: stats.save, TOKENIZER_DIR: tokenizer.save_pretrained}
    logger = _Log(out, accelerator.is_main_process, config.train.batch_size * world, world, first)
    losses: list[float] = []
    checkpoint = None
    model.train()
    batches = iter(loader)
    for step in range(first, config.train.max_steps):
        batch = {k: v.to(accelerator.device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in next(batches).items()}
        gen = torch.Generator(accelerator.device).manual_seed(config.train.seed * 1_000_003 + step * 1009 + rank)
        result = model(batch, gen)
        accelerator.backward(result.total)
        if config.train.grad_clip > 0:
            accelerator.clip_grad_norm_(params, config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(result.total.detach()))
        logger.tokens += int(batch["attention_mask"].sum())
        done = step + 1
        last = done == config.train.max_steps
        if done % config.train.log_every == 0 or last:
            metrics = {k: float(accelerator.reduce(v.detach(), "mean"))
                       for k, v in (("loss", result.total), ("flow", result.flow), ("lm", result.lm))}
            logger(done, {**metrics, "lr": scheduler.get_last_lr()[0]})
        if done % config.train.save_every == 0 or last:
            checkpoint = save_checkpoint(out, done, inner, optimizer, scheduler, config_to_json(config),
                                         trainer_state, extra)
            accelerator.wait_for_everyone()
    logger.close()
    return SFTResult(losses, checkpoint, inner)


def _train_new_expert_only(model: torch.nn.Module, grow: bool) -> None:
    """Freeze all but the last expert and the router of every MoE layer (growing each by one expert first)."""
    model.requires_grad_(False)
    for layer in model.modules():
        if isinstance(layer, SkillMoE):
            if grow:
                layer.add_expert()
            layer.experts[-1].requires_grad_(True)
            layer.router.requires_grad_(True)
