"""Run by `torchrun --nproc_per_node 2` from test_wm.py: a few world-model steps under FSDP (`--resume`
continues the run folder), then rank 0 writes the trained predictor's weights."""

import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from atomvla.train.config import get_config
from atomvla.train.worldmodel import config as _wm_configs  # noqa: F401  (registers the wm configs)
from atomvla.train.worldmodel.train import train_world_model

dataset, out, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
resume = "--resume" in args
overrides = tuple(a for a in args if a != "--resume")
logging.basicConfig(level=logging.INFO)  # the per-rank FSDP line
wm, _ = train_world_model(get_config("tiny-cpu", overrides, kind="wm"), dataset, out / "wm", out / "latents",
                          resume=resume, overrides=overrides)
if torch.distributed.get_rank() == 0:
    save_file({k: v.contiguous() for k, v in wm.predictor.state_dict().items()}, out / f"predictor{'-resumed' * resume}.safetensors")
