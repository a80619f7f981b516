"""Run INSIDE the LeRobot venv (setup_venv.sh): decode the first two, middle and last two frames of
every episode of a dataset with LeRobot's own `LeRobotDataset` (pyav backend) and save them as
uint8 arrays, keyed `EPISODE_FRAME`, for check_subset.py.

    python read_frames_with_lerobot.py DATASET_DIR OUT.npz
"""

from __future__ import annotations

import sys

import numpy as np


def main(root: str, out: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/atomvla-export", root=root, video_backend="pyav")
    key = ds.meta.camera_keys[0]
    frames = {}
    for i in range(len(ds)):
        row = ds.hf_dataset[i]
        ep, f = int(row["episode_index"]), int(row["frame_index"])
        n = int(ds.meta.episodes[ep]["length"])
        if f in (0, 1, n // 2, n - 2, n - 1):
            image = ds[i][key]  # (3, H, W) float in [0, 1]
            frames[f"{ep}_{f}"] = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.savez(out, **frames)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
