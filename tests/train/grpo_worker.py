"""Run by `torchrun --nproc_per_node 2` from test_grpo.py: a few GRPO steps, then each rank writes its weights."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from atomvla.train.config import get_config
from atomvla.train.grpo import config as _grpo_configs  # noqa: F401  (registers the grpo configs)
from atomvla.train.grpo.train import train_grpo

policy, world_model, out, overrides = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
result = train_grpo(get_config("tiny-cpu", overrides, kind="grpo"), out / "run", Path(policy), Path(world_model))
rank = torch.distributed.get_rank()
save_file({k: v.detach().contiguous().clone() for k, v in result.model.state_dict().items()}, out / f"rank{rank}.safetensors")
(out / f"rank{rank}.json").write_text(json.dumps(result.metrics))
