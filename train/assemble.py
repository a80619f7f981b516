"""Build a policy's parts from a config, or load them back from a checkpoint (SFT, eval, policy, GRPO)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomvla.train.checkpoint import Checkpoint, CheckpointError, resolve_checkpoint
from atomvla.train.config import SFTConfig, apply_overrides, from_dict
from atomvla.train.data.episodes import DatasetError
from atomvla.train.data.normalize import Stats
from atomvla.train.models.backbone import image_processor, load_tokenizer
from atomvla.train.models.generic_vlm import HFVLAProcessor, is_qwen_vl, load_hf_processor
from atomvla.train.models.processor import VLAProcessor
from atomvla.train.models.vla import VLA

TOKENIZER_DIR = "tokenizer"
STATS_FILE = "stats.json"


def make_processor(config: SFTConfig, tokenizer, skills: tuple[str, ...]) -> VLAProcessor:
    """Qwen-VL's hand-built image path, or another image-text-to-text model's own processor."""
    if not is_qwen_vl(config.backbone):
        hf = load_hf_processor(config.backbone)
        return HFVLAProcessor(tokenizer, hf.image_processor, config.data.prompt, skills, config.head.moe, hf)
    return VLAProcessor(tokenizer, image_processor(config.backbone, config.data.image_size), config.data.prompt, skills,
                        config.head.moe)


def make_model(config: SFTConfig, tokenizer, stats: Stats, skills: tuple[str, ...]) -> VLA:
    """fp32 weights: bf16 (`train.mixed_precision`) is autocast in the forward, over fp32 master weights.
    State and action widths: the dataset's, or `data.max_*_dim` (zero-padded) when larger."""
    for key, have, most in ((stats.state_key, len(stats.state.names), config.data.max_state_dim),
                            (stats.action_key, len(stats.action.names), config.data.max_action_dim)):
        if most and have > most:
            raise DatasetError(f"{key!r} has {have} dims, more than the config's maximum of {most}")
    return VLA(config, tokenizer, max(len(stats.state.names), config.data.max_state_dim),
               max(len(stats.action.names), config.data.max_action_dim), len(skills))


@dataclass
class Trained:
    """A policy loaded from an SFT checkpoint, with everything needed to feed it."""

    path: Path
    config: SFTConfig
    model: VLA
    processor: VLAProcessor
    stats: Stats
    state: dict[str, Any]  # trainer_state.json: step, skills, cameras, dataset, held-out episodes

    @property
    def skills(self) -> tuple[str, ...]:
        return tuple(self.state["skills"])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.state["cameras"])


def load_trained(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Trained:
    """The model, processor and statistics of SFT checkpoint `path` (or the newest one inside it)."""
    ckpt = Checkpoint(resolve_checkpoint(Path(path)))
    raw = ckpt.config
    if raw.get("kind") != "sft":
        raise CheckpointError(f"{ckpt.path}: a {raw.get('kind')!r} checkpoint, not an SFT policy")
    config = apply_overrides(from_dict(SFTConfig, raw), overrides)
    state = ckpt.trainer_state
    skills = tuple(state["skills"])
    tokenizer = load_tokenizer(config.backbone, ckpt.path / TOKENIZER_DIR)
    stats = Stats.load(ckpt.path / STATS_FILE)
    model = make_model(config, tokenizer, stats, skills)
    ckpt.load_model(model)
    return Trained(ckpt.path, config, model, make_processor(config, tokenizer, skills), stats, state)
