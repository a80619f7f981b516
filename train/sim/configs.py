"""SFT configs sized for closed-loop benchmarks in simulation on a CPU (benchmarks/closed_loop.py).

`metaworld-cpu`: the tiny random-init VLM and DiT head of `tiny-cpu` (4-action chunks, cameras seen
at 64x64), trained longer with larger batches on generated Meta-World demonstrations; every episode
trains (success is measured in closed loop on seeds the demonstrations never used). No image
augmentation, as tiny-cpu: on the fixed simulated camera it slowed fitting (benchmarks/vla_ablations.py).
1500 steps of 32 took 6.1 CPU-min here (0.24 CPU-s a step; 26 min wall on the shared machine at load ~9).
"""

from __future__ import annotations

from atomvla.train.config import DataConfig, SFTConfig, TrainConfig, register

METAWORLD_CPU = register(
    SFTConfig(
        name="metaworld-cpu",
        data=DataConfig(val_fraction=0.0, augment=False),
        train=TrainConfig(batch_size=32, max_steps=1500, lr=1e-3, warmup_steps=100, save_every=500, log_every=100),
    )
)
