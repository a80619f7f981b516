"""Shared pieces of the Stage II tests (latents, world model, rewards, GRPO): the tiny encoder, and a
tiny world model and SFT policy trained once per session on the fixture export."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from atomvla.train.config import get_config
from atomvla.train.worldmodel.config import TINY_ENCODER  # noqa: F401  (also registers the wm configs)
from atomvla.train.worldmodel.train import train_world_model

WM_FAST = ("train.max_steps=150", "train.val_fraction=0", "train.log_every=1000")


@functools.cache
def trained_world_model(export_dir: str) -> tuple[Path, Path, dict]:
    """(world model folder, latent cache folder, evaluation report) of the tiny wm config."""
    root = Path(tempfile.mkdtemp(prefix="atomvla-wm-"))
    config = get_config("tiny-cpu", WM_FAST, kind="wm")
    _, report = train_world_model(config, export_dir, root / "wm", root / "latents")
    return root / "wm", root / "latents", report

SFT_FAST = ("train.batch_size=4", "train.warmup_steps=2", "train.log_every=1000", "data.val_fraction=0",
            "train.max_steps=3", "train.save_every=3")
GRPO_FAST = ("train.batch_size=2", "group_size=4", "denoise_steps=4", "train.warmup_steps=1", "train.log_every=1000",
             "train.lr=1e-3")


@functools.cache
def sft_policy(export_dir: str) -> Path:
    """A tiny SFT checkpoint (a few steps: GRPO only needs a policy to start from)."""
    from atomvla.train.sft import train_sft

    out = Path(tempfile.mkdtemp(prefix="atomvla-sft-")) / "sft"
    return train_sft(get_config("tiny-cpu", SFT_FAST), export_dir, out).checkpoint
