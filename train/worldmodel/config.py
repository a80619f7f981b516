"""Named world-model configs (`atom-train wm --config NAME`), registered in the training registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from atomvla.train.config import TrainConfig, register
from atomvla.train.latents import DEFAULT_ENCODER, EncoderSpec


@dataclass(frozen=True)
class EncoderConfig:
    """The frozen V-JEPA 2 encoder: a Hub id / path, or `tiny` (random init from the sizes below)."""

    model: str = DEFAULT_ENCODER
    camera: str | None = None  # first camera of the dataset when None
    storage_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    batch_frames: int = 32
    # sizes of the tiny encoder (ignored for Hub models)
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    crop_size: int = 64
    seed: int = 0

    def spec(self) -> EncoderSpec:
        if self.model != "tiny":
            return EncoderSpec(self.model, camera=self.camera, storage_dtype=self.storage_dtype, batch_frames=self.batch_frames)
        sizes = dict(
            hidden_size=self.hidden_size, num_hidden_layers=self.layers, num_attention_heads=self.heads,
            crop_size=self.crop_size, frames_per_clip=8, tubelet_size=2, pred_hidden_size=32,
            pred_num_hidden_layers=1, pred_num_attention_heads=4,
        )
        return EncoderSpec(
            "tiny", random_init=True, config=sizes, seed=self.seed, camera=self.camera,
            storage_dtype=self.storage_dtype, batch_frames=self.batch_frames,
        )


@dataclass(frozen=True)
class PredictorConfig:
    hidden_size: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    steps: int = 3  # chunk steps per training window (teacher forcing predicts each next one)
    rollout: int = 2  # autoregressive steps in the rollout loss (0: teacher forcing only)


@dataclass(frozen=True)
class WMTrainConfig(TrainConfig):
    """The shared loop's settings (`train.loop`) with the world model's defaults and its own terms."""

    batch_size: int = 16
    max_steps: int = 300
    schedule: Literal["cosine", "constant"] = "constant"
    save_every: int = 100
    keep_last: int = 2
    log_every: int = 20
    rollout_weight: float = 1.0
    val_fraction: float = 0.2


@dataclass(frozen=True)
class WMConfig:
    name: str
    kind: Literal["wm"] = "wm"
    horizon: int = 4  # actions per chunk: the predictor steps one chunk at a time
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    train: WMTrainConfig = field(default_factory=WMTrainConfig)


TINY_ENCODER = EncoderConfig(model="tiny", storage_dtype="float32")

register(WMConfig(name="tiny-cpu", encoder=TINY_ENCODER))
register(
    WMConfig(
        name="vjepa2-vitl",
        encoder=EncoderConfig(model=DEFAULT_ENCODER, storage_dtype="bfloat16"),
        predictor=PredictorConfig(hidden_size=512, depth=12, heads=8),
        train=WMTrainConfig(batch_size=64, max_steps=20000, lr=4e-4, warmup_steps=500, save_every=2000, log_every=100,
                            mixed_precision="bf16"),
    )
)
