"""The training machinery sft, wm and grpo share: where a run starts (the resume guard), the
accelerator (one process, DDP, or FSDP2 `fully_shard`), the optimizer and its schedule, and metrics
(TensorBoard, `metrics.jsonl`, a log line, throughput), and stopping on Ctrl-C with a checkpoint.

Under FSDP every block a model names in `_no_split_modules` (the VLM's decoder and vision layers,
the DiT blocks, the world model's transformer layers) is its own `fully_shard` unit, then the root:
each rank holds 1/world of every parameter, gradient and optimizer state. It runs on GPUs (NCCL)
and on CPUs (gloo), so the tests shard for real. `train.fsdp` defaults to on when several processes
run. Outputs are created at the first metrics row or checkpoint, so a run refused on its data
leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from atomvla.errors import UserError
from atomvla.train.checkpoint import CheckpointError, latest_checkpoint
from atomvla.train.config import TrainConfig

log = logging.getLogger(__name__)


# What a run writes before its first checkpoint: a folder holding one of them is a run folder.
RUN_ENTRIES = ("metrics.jsonl", "tb", "latents")


def resume_point(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (`--resume`), None for a fresh run; refuses to overwrite one,
    and to write a run into a folder that holds something else (an export, a dataset)."""
    found = latest_checkpoint(out) if out.is_dir() else None
    if found is not None and not resume:
        raise CheckpointError(f"{out} already holds checkpoints; pass --resume to continue, or choose another --out")
    if resume and found is None:
        raise CheckpointError(f"{out}: nothing to resume (no step-N checkpoint)")
    if found is None and out.is_dir() and any(out.iterdir()) and not any((out / n).exists() for n in RUN_ENTRIES):
        raise CheckpointError(f"{out}: not empty and not a run folder (no checkpoint, metrics.jsonl or tb/); "
                              "choose another --out, so that the run's files do not land among these")
    return found


def resumed_step(checkpoint: Path, prior: dict, max_steps: int) -> int:
    """The step a run resumed from `checkpoint` (its trainer state `prior`) continues from. A run that has
    reached `max_steps` is said to have (it trained nothing and said nothing); not refused, so a re-queued
    job that re-runs `--resume` still succeeds."""
    step = int(prior["step"])
    if step >= max_steps:
        log.warning("%s: the run has reached step %d of train.max_steps=%d: nothing to train (pass "
                    "train.max_steps=N with N > %d to train further)", checkpoint, step, max_steps, step)
    return step


@contextmanager
def removed_on_user_error(out: Path) -> Iterator[None]:
    """A run folder this run creates is removed again if the run is refused (bad data, bad config)
    before it wrote a checkpoint, so a failed run leaves no empty `OUT/` or `OUT/tb/`."""
    existed = out.exists()
    try:
        yield
    except UserError:
        if not existed and out.exists() and latest_checkpoint(out) is None and _is_main():
            shutil.rmtree(out, ignore_errors=True)
        raise


class Interrupted(UserError):
    """A run stopped by Ctrl-C or SIGTERM once its last finished step was saved: `--resume` continues it."""


@dataclass(frozen=True)
class StepEnd:
    """After a finished step: write a metrics row and log line, save `step-N`, then stop (`StopOnSignal`)."""

    log: bool
    save: bool
    stop: bool


class StopOnSignal:
    """Ctrl-C or SIGTERM in a one-process run: the loop finishes the step it is in, saves it and raises
    `Interrupted`, instead of losing every step since the last checkpoint (or stopping halfway through an
    optimizer update); a second signal acts at once, as usual. Several processes keep the default: their
    ranks would first have to agree on the step to save."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, runtime: Runtime):
        self.active = runtime.world == 1 and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if self.active:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        # A handler runs between any two bytecodes, also inside a logging call (rich's handler imports
        # lazily there): logging from here re-entered it and crashed the run, so the notice goes to stderr.
        if self.received is None:
            os.write(2, f"{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                        "(again to stop at once)\n".encode())
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()

    def after(self, done: int, train: TrainConfig) -> StepEnd:
        """What the loop does once step `done` is finished: log and save on their schedules and at the last
        step, and both before stopping on a signal. `received` is read once here: a signal arriving later
        waits for the next step."""
        last = done == train.max_steps
        stop = self.received is not None and not last
        return StepEnd(log=done % train.log_every == 0 or last or stop, save=done % train.save_every == 0 or last or stop,
                       stop=stop)

    def interrupted(self, step: int, checkpoint: Path) -> Interrupted:
        return Interrupted(f"stopped by {signal.Signals(self.received).name} after step {step}; saved {checkpoint}: "
                           "the same command with --resume continues it")


def uses_fsdp(train: TrainConfig, world: int) -> bool:
    """`train.fsdp`, defaulting to on when several processes run (never with one)."""
    return world > 1 and (train.fsdp is None or train.fsdp)


def _is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


class Runtime:
    """The processes of a run and how a model is spread over them (one, DDP or FSDP2)."""

    def __init__(self, train: TrainConfig):
        cuda = torch.cuda.is_available()
        self.train = train
        # bf16 under FSDP is FSDP's own mixed-precision policy; accelerate autocasts otherwise.
        self.accelerator = Accelerator(cpu=not cuda, mixed_precision=train.mixed_precision if cuda else "no")
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.device = self.accelerator.device
        self.fsdp = uses_fsdp(train, self.world)
        self.is_main = self.accelerator.is_main_process
        self._mesh = None

    @property
    def mesh(self):
        if self._mesh is None:
            from torch.distributed.device_mesh import init_device_mesh

            self._mesh = init_device_mesh(self.device.type, (self.world,))
        return self._mesh

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` sharded (FSDP: in place, parameters become DTensor shards), DDP-wrapped, or on the device."""
        if not self.fsdp:
            return self.accelerator.prepare_model(model)
        shard(model.to(self.device), self.mesh, self.train.mixed_precision == "bf16" and self.device.type == "cuda")
        held = sum(p.to_local().numel() for p in model.parameters())
        total = sum(p.numel() for p in model.parameters())
        log.info("fsdp: rank %d holds %d of %d parameter elements", self.rank, held, total)
        return model

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model if self.fsdp else self.accelerator.unwrap_model(model)

    def mean(self, value: torch.Tensor) -> float:
        return float(self.accelerator.reduce(value.detach().float().to(self.device), "mean"))

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()


def shard(model: nn.Module, mesh, bf16: bool) -> None:
    """FSDP2: each block named in a `_no_split_modules` of the model is its own unit, then the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    blocks = {name for m in model.modules() for name in (getattr(m, "_no_split_modules", None) or ())}
    for module in model.modules():
        if module is not model and type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def make_optimizer(params: list[nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with fp32 states, or bitsandbytes' 8-bit AdamW (a quarter of the state memory)."""
    if train.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise UserError("train.optimizer=adamw8bit needs bitsandbytes (pip install bitsandbytes); "
                            "or use train.optimizer=adamw") from exc
        return bnb.optim.AdamW8bit(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine decay to 0 at `max_steps` or a constant rate."""
    warm, total = max(1, train.warmup_steps), train.max_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if train.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_generator(train: TrainConfig, step: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random draws of one step on one rank: a function of (seed, step, rank), so resume is exact."""
    return torch.Generator(device).manual_seed(train.seed * 1_000_003 + step * 1009 + rank)


class Metrics:
    """TensorBoard scalars under `kind/`, `metrics.jsonl` and a log line, on the main process only;
    throughput (step time, samples/s, tokens/s over all ranks) per logged interval. The run folder
    and `tb/` are created on the first row written."""

    def __init__(self, out: Path, kind: str, runtime: Runtime, samples_per_step: int, step: int):
        self.out, self.kind, self.main = out, kind, runtime.is_main
        self.samples_per_step, self.world = samples_per_step, runtime.world
        self.writer = None
        self.t0, self.step, self.tokens = time.perf_counter(), step, 0

    def __call__(self, step: int, metrics: dict[str, float], line: str | None = None) -> None:
        now = time.perf_counter()
        elapsed, self.t0 = now - self.t0, now
        n = max(1, step - self.step)
        metrics = {**metrics, "step_time_s": elapsed / n, "samples_per_s": self.samples_per_step * n / elapsed}
        if self.tokens:
            metrics["tokens_per_s"] = self.tokens * self.world / elapsed  # this rank's tokens, times the ranks
        self.step, self.tokens = step, 0
        if not self.main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.out / "tb"))
        for k, v in metrics.items():
            self.writer.add_scalar(f"{self.kind}/{k}", v, step)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if line:
            log.info("step %d  %s", step, line)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Optimization:
    """A wrapped model with its optimizer and schedule; `step` is one update from a loss."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    runtime: Runtime

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def update(self, loss: torch.Tensor) -> None:
        """Backward, clip, optimizer step (the schedule advances separately: GRPO updates several times a step)."""
        self.runtime.accelerator.backward(loss)
        clip = self.runtime.train.grad_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def optimization(runtime: Runtime, model: nn.Module, resume_from: Path | None, state_of: nn.Module | None = None) -> Optimization:
    """Wrap `model` (its weights already loaded), build its optimizer and schedule, and restore their
    states and the RNGs from `resume_from`. `state_of` is the module whose state the checkpoint holds
    (default: the model itself)."""
    from atomvla.train.checkpoint import Checkpoint

    wrapped = runtime.wrap(model)
    optimizer = make_optimizer([p for p in wrapped.parameters() if p.requires_grad], runtime.train)
    scheduler = make_scheduler(optimizer, runtime.train)
    if resume_from is not None:
        Checkpoint(resume_from).load_training_state(state_of or runtime.unwrap(wrapped), optimizer, scheduler)
    return Optimization(wrapped, optimizer, scheduler, runtime)


__all__ = [
    "Metrics", "Optimization", "Runtime", "make_optimizer", "make_scheduler", "optimization", "removed_on_user_error",
    "Interrupted", "StepEnd", "StopOnSignal", "resume_point", "resumed_step", "shard", "step_generator", "uses_fsdp",
]
