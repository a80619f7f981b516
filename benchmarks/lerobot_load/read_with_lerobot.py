"""Run INSIDE the LeRobot venv (setup_venv.sh): load an exported dataset with LeRobot's own
`LeRobotDataset` and print, as JSON, what LeRobot sees for every frame.

    python read_with_lerobot.py DATASET_DIR > seen.json

For each frame: episode/frame index, `subtask_index`, the `subtask` string LeRobot resolves from
`meta/subtasks.parquet` (LeRobot 0.4.x), and the subtask that `language_render.active_at(t,
style="subtask")` resolves from `language_persistent` (LeRobot >= 0.6); for a few frames the mean
of the decoded camera image (decoding needs torchvision on LeRobot 0.4.x: skipped there).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys


def main(root: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    version = importlib.metadata.version("lerobot")
    ds = LeRobotDataset("local/atomvla-export", root=root, video_backend="pyav")
    try:
        from lerobot.datasets.language_render import active_at
    except ImportError:  # LeRobot < 0.6 has no language columns
        active_at = None
    frames = []
    rows = ds.hf_dataset
    subtask_names = list(ds.meta.subtasks.index) if getattr(ds.meta, "subtasks", None) is not None else None
    for i in range(len(rows)):
        row = rows[i]
        seen = {"episode_index": int(row["episode_index"]), "frame_index": int(row["frame_index"]),
                "subtask_index": int(row["subtask_index"])}
        if subtask_names is not None:
            seen["subtask"] = subtask_names[seen["subtask_index"]]
        if active_at is not None and "language_persistent" in row:
            active = active_at(float(row["timestamp"]), persistent=row["language_persistent"], style="subtask")
            seen["active_subtask"] = active["content"] if active else None
        frames.append(seen)
    decoded = {}
    for i in (0, len(ds) // 2, len(ds) - 1):
        try:
            item = ds[i]
        except RuntimeError as exc:  # LeRobot 0.4.x decodes video through torchvision
            decoded = {"skipped": str(exc)[:200]}
            break
        cams = [k for k in ds.meta.camera_keys]
        decoded[str(i)] = {k: float(item[k].float().mean()) for k in cams}
        if "subtask" in item:
            decoded[str(i)]["subtask"] = item["subtask"]
    json.dump({"lerobot": version, "python": sys.version.split()[0], "num_frames": ds.num_frames,
               "num_episodes": ds.num_episodes, "frames": frames, "decoded": decoded}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
