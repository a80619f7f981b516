"""Stage I: supervised fine-tuning of the VLA on curated subtasks (`atom-train sft`).

The shared loop (`train.loop`): one process, DDP or FSDP2 (torchrun / accelerate; gloo on CPU). Every
source of randomness is a function of (seed, step, rank): the data order (`ChunkSampler`) and the
flow-matching noise (a generator seeded per step), so a run resumed from a checkpoint computes
exactly the losses the uninterrupted run would have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from atomvla.schemas import SKILLS
from atomvla.train.assemble import STATS_FILE, TOKENIZER_DIR, load_trained, make_model, make_processor
from atomvla.train.checkpoint import Checkpoint, CheckpointError, resolve_checkpoint, save_checkpoint
from atomvla.train.config import SFTConfig, apply_overrides, config_to_json, from_dict
from atomvla.train.data.episodes import DatasetError, TrainEpisode, open_dataset, run_dataset, split_episodes
from atomvla.train.data.normalize import Stats
from atomvla.train.data.samples import ChunkDataset, ChunkSampler, cameras_of
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
from atomvla.train.models.skills import add_skill_config, prepare_add_skill
from atomvla.train.models.backbone import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class SFTResult:
    losses: list[float]  # this rank's total loss per step run here
    checkpoint: Path | None
    model: torch.nn.Module = field(repr=False)


def skills_of(episodes: list[TrainEpisode]) -> tuple[str, ...]:
    present = {s.skill for e in episodes for s in e.subtasks}
    return tuple(s for s in SKILLS if s in present)


@dataclass(frozen=True)
class _Start:
    """Where a run starts: fresh, resumed from `out`, or from another checkpoint (`--from`)."""

    config: SFTConfig
    dataset: str
    checkpoint: Path | None  # weights, statistics and tokenizer to start from
    resumed: bool
    prior: dict  # the checkpoint's trainer_state ({} when fresh)
    first_step: int  # where the loop starts: 0, or the resumed checkpoint's step


def _start(config: SFTConfig, dataset: str | Path | None, out: Path, resume: bool, from_checkpoint: Path | None,
           overrides: tuple[str, ...]) -> _Start:
    resume_from = resume_point(out, resume)
    base = resume_from or (resolve_checkpoint(Path(from_checkpoint)) if from_checkpoint else None)
    prior = Checkpoint(base).trainer_state if base else {}
    if base:  # the checkpoint's config, with this run's overrides
        config = apply_overrides(from_dict(SFTConfig, Checkpoint(base).config), overrides)
    first = resumed_step(resume_from, prior, config.train.max_steps) if resume_from else 0
    return _Start(config, run_dataset(dataset, prior), base, resume_from is not None, prior, first)


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
    with removed_on_user_error(out):
        return _train_sft(config, dataset, out, resume, add_skill, from_checkpoint, overrides)


def _train_sft(config: SFTConfig, dataset: str | Path | None, out: Path, resume: bool, add_skill: str | None,
               from_checkpoint: Path | None, overrides: tuple[str, ...]) -> SFTResult:
    start = _start(config, dataset, out, resume, from_checkpoint, overrides)
    config, prior = start.config, start.prior
    runtime = Runtime(config.train)
    rank, world = runtime.rank, runtime.world
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
        if added:  # a LoRA to name the new skill, its experts and router row (`models.skills`)
            config = add_skill_config(config)
            prepare_add_skill(model, config, grow=bool(add_skill))
    else:
        tokenizer = load_tokenizer(config.backbone)
        stats = Stats.compute(train_eps, config.data.state_key, config.data.action_key, config.data.delta_action_dims,
                              config.data.horizon)
        cameras = cameras_of(episodes, config.data.cameras)
        model = make_model(config, tokenizer, stats, skills)
    processor = make_processor(config, tokenizer, skills)

    data = ChunkDataset(train_eps, config.data, stats, cameras_of(train_eps, cameras), processor, train=True,
                        seed=config.train.seed)
    first = start.first_step
    workers = config.data.num_workers
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=ChunkSampler(len(data), config.train.batch_size, config.train.seed, rank, world, first),
        collate_fn=processor.collate, num_workers=workers, persistent_workers=workers > 0,
        prefetch_factor=config.data.prefetch_factor if workers else None, pin_memory=torch.cuda.is_available(),
    )

    opt = optimization(runtime, model, start.checkpoint if start.resumed else None)
    model, inner = opt.model, runtime.unwrap(opt.model)
    trainer_state = {
        "kind": "sft", "dataset": start.dataset, "skills": list(skills), "cameras": list(cameras),
        "train_episodes": sorted(train_ids), "val_episodes": val_ids, "world_size": world, "add_skill": added,
    }
    extra = {STATS_FILE: stats.save, TOKENIZER_DIR: tokenizer.save_pretrained}
    metrics = Metrics(out, "sft", runtime, config.train.batch_size * world, first)
    losses: list[float] = []
    checkpoint = None
    model.train()
    batches = iter(loader)
    with StopOnSignal(runtime) as stop:
        for step in range(first, config.train.max_steps):
            batch = {k: v.to(runtime.device, non_blocking=True) if torch.is_tensor(v) else v
                     for k, v in next(batches).items()}
            result = model(batch, step_generator(config.train, step, rank, runtime.device))
            opt.update(result.total)
            opt.scheduler.step()
            losses.append(float(result.total.detach()))
            metrics.tokens += int(batch["attention_mask"].sum())
            done = step + 1
            end = stop.after(done, config.train)
            if end.log:
                row = {k: runtime.mean(v) for k, v in (("loss", result.total), ("flow", result.flow), ("lm", result.lm))}
                lr = opt.scheduler.get_last_lr()[0]
                metrics(done, {**row, "lr": lr}, f"loss {row['loss']:.4f}  flow {row['flow']:.4f}  lm {row['lm']:.4f}  lr {lr:.2e}")
            if end.save:
                checkpoint = save_checkpoint(out, done, inner, opt.optimizer, opt.scheduler, config_to_json(config),
                                             trainer_state, extra, config.train.keep_last)
            if end.stop:
                metrics.close()
                raise stop.interrupted(done, checkpoint)
    metrics.close()
    return SFTResult(losses, checkpoint, inner)

