"""Named GRPO configs (`atom-train grpo --config NAME`), registered in the training registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from atomvla.train.config import TrainConfig, register
from atomvla.train.rewards import RewardConfig


@dataclass(frozen=True)
class GRPOConfig:
    """`train.batch_size` is the number of states per process and step; each gets `group_size` chunks."""

    name: str
    kind: Literal["grpo"] = "grpo"
    group_size: int = 8  # G candidate chunks per state
    denoise_steps: int = 10  # stochastic denoising steps per chunk
    eta: float = 0.7  # SDE noise level (Flow-GRPO's η)
    clip: float = 0.2  # ε of the clipped ratio
    kl_beta: float = 0.04  # weight of the k3 KL to the SFT reference
    updates_per_batch: int = 1  # policy updates on each sampled group (ratio = 1 on the first)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(batch_size=4, max_steps=50, lr=1e-3, warmup_steps=5, schedule="constant")
    )


register(GRPOConfig(name="tiny-cpu"))
register(
    GRPOConfig(
        name="qwen3vl-4b",
        group_size=8,
        train=TrainConfig(
            batch_size=8, max_steps=2000, lr=1e-5, warmup_steps=50, mixed_precision="bf16", schedule="constant",
            save_every=200, keep_last=2, log_every=10,
        ),
    )
)
