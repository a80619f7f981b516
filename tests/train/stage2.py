"""Shared pieces of the Stage II tests (latents, world model, rewards, GRPO): a tiny encoder and a
world model trained once per session on the fixture export."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch

from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.worldmodel import config as _wm_configs  # noqa: F401  (registers the wm configs)
from atomvla.train.worldmodel.config import EncoderConfig
from atomvla.train.worldmodel.train import train_world_model

TINY_ENCODER = EncoderConfig(model="tiny", storage_dtype="float32")
WM_FAST = ("train.max_steps=150", "train.val_fraction=0", "train.log_every=1000")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core machine, two threads per process contend and run 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def trained_world_model(export_dir: str) -> tuple[Path, Path, dict]:
    """(world model folder, latent cache folder, evaluation report) of the tiny wm config."""
    root = Path(tempfile.mkdtemp(prefix="atomvla-wm-"))
    config = get_config("tiny-cpu", WM_FAST, kind="wm")
    _, report = train_world_model(config, open_dataset(export_dir), root / "wm", root / "latents")
    return root / "wm", root / "latents", report
