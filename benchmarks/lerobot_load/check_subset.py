"""Does LeRobot's own reader find the right frames in an export of SOME episodes, whose video is
cut out of the source's MP4 (packets copied, new from/to timestamps)?

    .venv/bin/python benchmarks/lerobot_load/check_subset.py VENV

The Meta-World fixture is imported, 4 of its 11 episodes accepted and exported with
`atom-curate export --to lerobot`; in VENV (setup_venv.sh) LeRobotDataset decodes the first two,
middle and last two frames of each exported episode, which are compared pixel for pixel with the
source's frames at the source's timestamps (PyAV). Exit status 1 on any difference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Status, Subtask

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "shared" / "fixtures" / "metaworld_lerobot_v30"
CHOSEN = (1, 4, 5, 9)


def _export(tmp: Path) -> Path:
    db, out = tmp / "s.sqlite", tmp / "subset"
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(SOURCE), "--store", str(db)]).exit_code == 0
    store = Store(db)
    for i, meta in enumerate(store.episodes()):
        if i in CHOSEN:
            half = meta.n_frames // 2
            store.add_revision(Decomposition(
                episode_id=meta.episode_id, n_frames=meta.n_frames, status=Status.accepted, author="check",
                subtasks=(Subtask(start_frame=0, end_frame=half, instruction="reach", skill="reach"),
                          Subtask(start_frame=half, end_frame=meta.n_frames, instruction="push", skill="push"))))
    result = runner.invoke(app, ["export", str(out), "--to", "lerobot", "--store", str(db)])
    if result.exit_code != 0:
        sys.exit(f"export failed: {result.output}")
    return out


def _source_frame(key: str, episode: int, frame: int, decoded: dict) -> np.ndarray:
    info = json.loads((SOURCE / "meta/info.json").read_text())
    ep = pq.read_table(SOURCE / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[episode]
    rel = info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                    file_index=ep[f"videos/{key}/file_index"])
    if rel not in decoded:
        with av.open(str(SOURCE / rel)) as c:
            frames = sorted((float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0))
        decoded[rel] = (np.array([t for t, _ in frames]), [f for _, f in frames])
    times, frames = decoded[rel]
    return frames[int(np.abs(times - (ep[f"videos/{key}/from_timestamp"] + frame / info["fps"])).argmin())]


def main(venv: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = _export(Path(tmp))
        seen_path = Path(tmp) / "seen.npz"
        subprocess.run([str(venv / "bin" / "python"), str(HERE / "read_frames_with_lerobot.py"), str(out), str(seen_path)],
                       check=True)
        seen = np.load(seen_path)
        key = next(k for k, f in json.loads((out / "meta/info.json").read_text())["features"].items() if f["dtype"] == "video")
        decoded: dict = {}
        worst = max(int(np.abs(seen[name].astype(int) - _source_frame(key, CHOSEN[int(name.split("_")[0])],
                                                                      int(name.split("_")[1]), decoded)).max())
                    for name in seen.files)
        print(f"LeRobotDataset on a {len(CHOSEN)}-of-11-episode export: {len(seen.files)} frames decoded, "
              f"largest pixel difference from the source's frames {worst}")
        return 1 if worst else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
