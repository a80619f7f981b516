"""Run by `torchrun --nproc_per_node 2` from test_grpo.py: a few GRPO steps (FSDP unless
`train.fsdp=false`), then each rank writes its full weights (gathered from the shards) and metrics."""

import json
import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from atomvla.train.config import get_config
from atomvla.train.grpo import config as _grpo_configs  # noqa: F401  (registers the grpo configs)
from atomvla.train.grpo.train import train_grpo

policy, world_model, out, overrides = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
logging.basicConfig(level=logging.INFO)  # the per-rank FSDP line
result = train_grpo(get_config("tiny-cpu", overrides, kind="grpo"), out / "run", Path(policy), Path(world_model))
rank = torch.distributed.get_rank()
full = get_model_state_dict(result.model, options=StateDictOptions(full_state_dict=True))
save_file({k: v.detach().contiguous().clone() for k, v in full.items()}, out / f"rank{rank}.safetensors")
(out / f"rank{rank}.json").write_text(json.dumps(result.metrics))
