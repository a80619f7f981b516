"""Run by `torchrun --nproc_per_node 2` from the SFT tests: a few SFT steps (DDP or FSDP; `--resume`
continues the run folder), then each rank writes its full weights and its losses."""

import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from atomvla.train.config import get_config
from atomvla.train.sft import train_sft

dataset, out, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
resume = "--resume" in args
overrides = [a for a in args if a != "--resume"]
logging.basicConfig(level=logging.INFO)  # the per-rank FSDP line
result = train_sft(get_config("tiny-cpu", overrides), None if resume else dataset, out / "run", resume=resume,
                   overrides=tuple(overrides))
rank = torch.distributed.get_rank()
# Full tensors on every rank, gathered from the shards under FSDP.
full = get_model_state_dict(result.model, options=StateDictOptions(full_state_dict=True))
state = {k: v.detach().contiguous().clone() for k, v in full.items()}
save_file(state, out / f"rank{rank}.safetensors")
(out / f"rank{rank}.losses").write_text(" ".join(map(str, result.losses)))
