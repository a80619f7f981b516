"""`export --to lerobot` of some episodes of a LeRobot v3.0 source carries only their video: cut from
the source's MP4 by copying packets where each episode starts on a keyframe (what LeRobot writes),
re-encoded once otherwise; an export of every episode links the files whole. Checked by decoding
both datasets with PyAV at the timestamps the metadata gives."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Status, Subtask
from builders import FIXTURES, V3_AV1

CAMERA = "observation.images.corner"
runner = CliRunner()


def curate(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n,) presentation times in seconds and (n, H, W, 3) frames of every frame of an MP4."""
    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    frames.sort(key=lambda tf: tf[0])
    return np.array([t for t, _ in frames]), np.stack([f for _, f in frames])


def episode_frames(root: Path, key: str) -> list[np.ndarray]:
    """Each episode's frames of camera `key`, as LeRobot finds them: the frames of its video file
    at from_timestamp + i / fps (within LeRobot's 1e-4 s tolerance), i < length."""
    info = json.loads((root / "meta/info.json").read_text())
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    out, files = [], {}
    for ep in eps:
        rel = info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                        file_index=ep[f"videos/{key}/file_index"])
        times, frames = files.setdefault(rel, decoded(root / rel))
        want = ep[f"videos/{key}/from_timestamp"] + np.arange(ep["length"]) / info["fps"]
        at = np.abs(times[None, :] - want[:, None]).argmin(axis=1)
        assert np.abs(times[at] - want).max() < 1e-4, f"episode {ep['episode_index']}: no frame at a timestamp"
        assert ep[f"videos/{key}/to_timestamp"] == pytest.approx(want[-1] + 1 / info["fps"], abs=1e-4)
        out.append(frames[at])
    return out


def accept(store: Store, indices) -> None:
    for i, meta in enumerate(store.episodes()):
        if i in indices:
            half = meta.n_frames // 2
            store.add_revision(Decomposition(
                episode_id=meta.episode_id, n_frames=meta.n_frames, status=Status.accepted, author="ann",
                subtasks=(Subtask(start_frame=0, end_frame=half, instruction="reach", skill="reach"),
                          Subtask(start_frame=half, end_frame=meta.n_frames, instruction="push", skill="push"))))


@pytest.fixture(scope="module")
def lerobot_store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("subset") / "s.sqlite"
    curate("import", V3_AV1, "--store", db)
    return db


def test_a_subset_carries_only_its_episodes_frames_exactly(lerobot_store, tmp_path):
    store = Store(lerobot_store)
    chosen = [1, 4, 5, 9]
    accept(store, chosen)
    out = tmp_path / "subset"
    curate("export", out, "--to", "lerobot", "--store", lerobot_store)
    source = episode_frames(V3_AV1, CAMERA)
    ours = episode_frames(out, CAMERA)
    assert len(ours) == len(chosen)
    for got, i in zip(ours, chosen):
        np.testing.assert_array_equal(got, source[i])  # packets copied: the same decoded pixels
    videos = list((out / "videos").rglob("*.mp4"))
    assert len(videos) == 1
    times, _ = decoded(videos[0])
    assert len(times) == sum(len(source[i]) for i in chosen)  # no unselected frame rides along
    assert not videos[0].samefile(V3_AV1 / f"videos/{CAMERA}/chunk-000/file-000.mp4")


def test_every_episode_links_the_source_file_whole(tmp_path):
    db = tmp_path / "s.sqlite"
    curate("import", V3_AV1, "--store", db)
    curate("import-annotations", FIXTURES / "metaworld_truth.jsonl", "--store", db, "--author", "truth")
    out = tmp_path / "all"
    curate("export", out, "--to", "lerobot", "--store", db)
    video = out / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    assert video.read_bytes() == (V3_AV1 / f"videos/{CAMERA}/chunk-000/file-000.mp4").read_bytes()
    # The same bytes at the same timestamps: the same frames.
    columns = [f"videos/{CAMERA}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    episodes = "meta/episodes/chunk-000/file-000.parquet"
    assert pq.read_table(out / episodes, columns=columns) == pq.read_table(V3_AV1 / episodes, columns=columns)


def test_an_episode_starting_mid_gop_makes_the_export_encode_once(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    recordings = []
    for e, n in enumerate((30, 25, 20)):
        frames = np.empty((n, 64, 64, 3), np.uint8)
        for t in range(n):
            frames[t] = np.stack([xx * 3, yy * 3, np.full_like(xx, 60 * e)], -1)
            frames[t, 20:40, 2 * t : 2 * t + 16] = 240
        recordings.append(EpisodeRecording(f"task {e}", {"cam": frames},
                                           {"action": rng.normal(size=(n, 2)).astype(np.float32)}))
    # One stream, a keyframe every 8 frames: episode 1 starts at frame 30, mid-GOP.
    source = write_lerobot_v3(tmp_path / "src", recordings, fps=10, feature_names={}, codec="h264", keyframe_interval=8)
    db = tmp_path / "s.sqlite"
    curate("import", source, "--store", db)
    accept(Store(db), [1, 2])
    out = tmp_path / "out"
    curate("export", out, "--to", "lerobot", "--store", db)
    src = episode_frames(source, "cam")
    ours = episode_frames(out, "cam")
    assert [len(f) for f in ours] == [25, 20]
    for got, want in zip(ours, src[1:]):
        err = np.abs(got.astype(np.int16) - want).mean(axis=(1, 2, 3))
        shifted = np.abs(got[1:].astype(np.int16) - want[:-1]).mean(axis=(1, 2, 3))
        assert err.max() < 6 and (err[1:] < shifted).all()  # re-encoded: each frame nearest its own
    times, _ = decoded(next((out / "videos").rglob("*.mp4")))
    assert len(times) == 45
