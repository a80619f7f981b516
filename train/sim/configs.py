"""SFT configs sized for closed-loop benchmarks in simulation on a CPU (benchmarks/closed_loop.py).

`metaworld-cpu`: the tiny random-init VLM and DiT head of `tiny-cpu`, trained longer with larger
batches on generated Meta-World demonstrations (128x128 `corner` camera seen at 64x64, the 4-value
hand state, 4-action chunks); every episode trains (success is measured in closed loop on seeds
the demonstrations never used).
"""

from __future__ import annotations

from atomvla.train.config import DataConfig, SFTConfig, TrainConfig, register

METAWORLD_CPU = register(
    SFTConfig(
        name="metaworld-cpu",
        data=DataConfig(val_fraction=0.0, augment=True),  # as measured (README); tiny-cpu turns augmentation off
        train=TrainConfig(batch_size=32, max_steps=1500, lr=1e-3, warmup_steps=50, save_every=250, log_every=50),
    )
)
