"""Checkpoints: a folder per step, every tensor in safetensors, so a resumed run continues exactly.

    step-000100/
      config.json          the full config (its `kind` says which loop wrote it)
      model.safetensors    the whole model state           } one process or DDP
      optimizer.safetensors  optimizer tensors; param groups and scalars in its metadata }
      model.dcp/           the model state, one shard per rank } FSDP: torch.distributed.checkpoint,
      optimizer.dcp/       the optimizer state, sharded        } loadable on any number of processes
      rng.safetensors      torch CPU (and CUDA) generator states
      trainer_state.json   step, scheduler, python/numpy RNG, data position, and what the loop adds
      stats.json           normalisation statistics (SFT)
      tokenizer/           the backbone's tokenizer (SFT)

Written to `step-N.tmp` and renamed, so a folder named `step-N` is always complete. With several
processes every rank calls `save_checkpoint`: under FSDP each rank writes its shards (no rank ever
holds the whole model), otherwise rank 0 writes. `keep_last` removes all but the newest N.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from atomvla.errors import UserError

_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(UserError, ValueError):
    pass


def step_dir(out: Path, step: int) -> Path:
    return out / f"step-{step:06d}"


def latest_checkpoint(out: Path) -> Path | None:
    found = _step_dirs(out)
    return found[-1] if found else None


MODEL_FILE, MODEL_SHARDS = "model.safetensors", "model.dcp"
OPTIMIZER_FILE, OPTIMIZER_SHARDS = "optimizer.safetensors", "optimizer.dcp"


def resolve_checkpoint(path: Path) -> Path:
    """`path` itself if it is a checkpoint, else the newest checkpoint inside it."""
    if (path / "config.json").is_file() and ((path / MODEL_FILE).is_file() or (path / MODEL_SHARDS).is_dir()):
        return path
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise CheckpointError(f"{path}: not a checkpoint, and holds no step-N checkpoint")
    return latest


def _is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _options() -> StateDictOptions:
    distributed = torch.distributed.is_initialized()
    return StateDictOptions(full_state_dict=True, cpu_offload=distributed)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _cpu(t: torch.Tensor) -> torch.Tensor:
    # clone: safetensors refuses tensors that share memory (tied embeddings)
    return t.detach().to("cpu").contiguous().clone()


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for fqn, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{fqn}::{key}"] = _cpu(value)
            else:
                scalars[f"{fqn}::{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        fqn, key = flat.rsplit("::", 1)
        state.setdefault(fqn, {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    out: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    config_json: str,
    trainer_state: dict[str, Any],
    extra_files: dict[str, Any] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write checkpoint `out/step-N` (collective: every rank calls it); `extra_files` maps a name to a
    callable writing it into a folder; `keep_last` > 0 then removes all but the newest that many."""
    final = step_dir(out, step)
    tmp = final.with_name(final.name + ".tmp")
    if is_sharded(model):
        if _is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        _save_shards(model, optimizer, tmp)
        if not _is_main():
            _barrier()
            return final
    else:
        # Every rank gathers (a collective under DDP too), only rank 0 writes.
        model_state = get_model_state_dict(model, options=_options())
        opt_state = get_optimizer_state_dict(model, optimizer, options=_options()) if optimizer is not None else None
        if not _is_main():
            _barrier()
            return final
        model_state = {k: _cpu(v) for k, v in model_state.items()}
        opt_tensors, opt_meta = _flatten_optimizer(opt_state) if opt_state is not None else ({}, None)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(model_state, tmp / MODEL_FILE)
        if opt_meta is not None:
            save_file(opt_tensors, tmp / OPTIMIZER_FILE, metadata={"json": json.dumps(opt_meta)})
    (tmp / "config.json").write_text(config_json)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, tmp / "rng.safetensors")
    np_state = np.random.get_state()
    state = {
        "step": step,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "python_rng": _jsonable(random.getstate()),
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **trainer_state,
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    for name, write in (extra_files or {}).items():
        write(tmp / name)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if keep_last > 0:
        for old in _step_dirs(out)[:-keep_last]:
            shutil.rmtree(old)
    _barrier()
    return final


def _save_shards(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, folder: Path) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(get_model_state_dict(model), checkpoint_id=folder / MODEL_SHARDS)
    if optimizer is not None:
        dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=folder / OPTIMIZER_SHARDS)


def _step_dirs(out: Path) -> list[Path]:
    found = sorted((int(m.group(1)), p) for p in out.glob("step-*") if (m := _STEP_DIR.match(p.name)))
    return [p for _, p in found]


def _planner(strict: bool):
    from torch.distributed.checkpoint import DefaultLoadPlanner

    return DefaultLoadPlanner(allow_partial_load=not strict)


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


@dataclass(frozen=True)
class Checkpoint:
    path: Path

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    @property
    def trainer_state(self) -> dict[str, Any]:
        return json.loads((self.path / "trainer_state.json").read_text())

    def load_model(self, model: torch.nn.Module, strict: bool = True) -> None:
        """The saved weights into `model`, sharded or not, whichever way and on however many processes
        they were saved (sharded checkpoints are resharded by torch.distributed.checkpoint)."""
        if (self.path / MODEL_FILE).is_file():
            state = load_file(self.path / MODEL_FILE)
            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=strict))
            return
        import torch.distributed.checkpoint as dcp

        state = get_model_state_dict(model)
        dcp.load(state, checkpoint_id=self.path / MODEL_SHARDS, planner=_planner(strict))
        set_model_state_dict(model, state, options=StateDictOptions(strict=strict))

    def load_training_state(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
        """Restore optimizer, scheduler and RNG states; returns the step to continue from."""
        opt = self.path / OPTIMIZER_FILE
        if opt.is_file():
            with safe_open(opt, "pt") as f:
                meta = json.loads(f.metadata()["json"])
            set_optimizer_state_dict(
                model, optimizer, _unflatten_optimizer(load_file(opt), meta),
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            import torch.distributed.checkpoint as dcp

            state = get_optimizer_state_dict(model, optimizer)  # the layout to fill: this run's shards
            dcp.load(state, checkpoint_id=self.path / OPTIMIZER_SHARDS)
            set_optimizer_state_dict(model, optimizer, state)
        state = self.trainer_state
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        rng = load_file(self.path / "rng.safetensors")
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all([rng[k] for k in sorted(rng) if k.startswith("cuda")])
        random.setstate(_tuples(state["python_rng"]))
        np_state = state["numpy_rng"]
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        return int(state["step"])
