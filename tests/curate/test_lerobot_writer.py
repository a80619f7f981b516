"""The LeRobot v3.0 writer: read its output back with pyarrow + PyAV and compare with the fixture."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3

FIXTURE = Path(__file__).parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"
CAMERA = "observation.images.corner"
NAMES = {"observation.state": ["hand_x", "hand_y", "hand_z", "gripper"], "action": ["dx", "dy", "dz", "grip"]}
LENGTHS = (7, 12, 9)
TASKS = ("pick up the puck", "open the drawer", "pick up the puck")


def _episode(n: int, task: str, seed: int) -> EpisodeRecording:
    rng = np.random.default_rng(seed)
    # Fixture-sized (128x128) smooth images (a gradient with a moving bright square) so a lossy codec keeps them close.
    yy, xx = np.mgrid[0:128, 0:128] // 2
    frames = np.empty((n, 128, 128, 3), dtype=np.uint8)
    for t in range(n):
        frames[t] = np.stack([xx * 3, yy * 3, np.full_like(xx, 40 + 10 * seed)], axis=-1)
        frames[t, 40:72, 8 + 6 * t : 40 + 6 * t] = 230
    arrays = {name: rng.normal(size=(n, 4)).astype(np.float32) for name in NAMES}
    return EpisodeRecording(task=task, frames={CAMERA: frames}, arrays=arrays)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EpisodeRecording]]:
    episodes = [_episode(n, task, i) for i, (n, task) in enumerate(zip(LENGTHS, TASKS))]
    out = tmp_path_factory.mktemp("w") / "ds"
    write_lerobot_v3(out, iter(episodes), fps=20, feature_names=NAMES, robot_type="sawyer")
    return out, episodes


def _nearest(frame: np.ndarray, candidates: np.ndarray) -> int:
    """Index of the (n, H, W, 3) candidate closest to a decoded frame (a lossy codec alters it)."""
    return int(np.abs(candidates.astype(np.int16) - frame).mean(axis=(1, 2, 3)).argmin())


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_arrays_timestamps_and_tasks_read_back(written):
    out, episodes = written
    data = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pydict()
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    tasks = pq.read_table(out / "meta/tasks.parquet").to_pandas()
    assert eps["length"] == list(LENGTHS)
    assert [t[0] for t in eps["tasks"]] == list(TASKS)
    assert dict(zip(tasks.index, tasks["task_index"])) == {"pick up the puck": 0, "open the drawer": 1}
    assert data["index"] == list(range(sum(LENGTHS)))
    for i, ep in enumerate(episodes):
        lo, hi = eps["dataset_from_index"][i], eps["dataset_to_index"][i]
        assert hi - lo == LENGTHS[i]
        assert set(data["episode_index"][lo:hi]) == {i}
        assert data["task_index"][lo:hi] == [TASKS.index(ep.task)] * LENGTHS[i]
        np.testing.assert_allclose(data["timestamp"][lo:hi], np.arange(LENGTHS[i]) / 20, atol=1e-6)
        for name in NAMES:
            np.testing.assert_array_equal(np.array(data[name][lo:hi], dtype=np.float32), ep.arrays[name])
    info = json.loads((out / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["features"]["action"]["names"] == NAMES["action"]


def test_video_frames_sit_at_the_episode_timestamps(written):
    out, episodes = written
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    video = out / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    decoded = _decode(video)
    assert len(decoded) == sum(LENGTHS)
    inputs = np.concatenate([ep.frames[CAMERA] for ep in episodes])
    assert [_nearest(f, inputs) for f in decoded] == list(range(len(inputs)))
    with av.open(str(video)) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")
    for i, ep in enumerate(episodes):
        start = eps[f"videos/{CAMERA}/from_timestamp"][i]
        assert eps[f"videos/{CAMERA}/to_timestamp"][i] == pytest.approx(start + LENGTHS[i] / 20)
        first = round(start * 20)
        got = decoded[first : first + LENGTHS[i]].astype(np.int16)
        assert np.abs(got - ep.frames[CAMERA]).mean() < 6


def test_layout_matches_lerobot_fixture(written):
    out, _ = written
    ours, ref = (json.loads((d / "meta/info.json").read_text()) for d in (out, FIXTURE))
    assert ours.keys() == ref.keys()
    assert ours["features"] == ref["features"]  # same cameras/arrays/names as the Meta-World fixture
    for rel in ("meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet", "meta/tasks.parquet"):
        assert pq.read_schema(out / rel).remove_metadata() == pq.read_schema(FIXTURE / rel).remove_metadata(), rel
    stats, ref_stats = (json.loads((d / "meta/stats.json").read_text()) for d in (out, FIXTURE))
    assert stats.keys() == ref_stats.keys()
    for feature, values in stats.items():
        assert values.keys() == ref_stats[feature].keys()
        assert np.shape(values["mean"]) == np.shape(ref_stats[feature]["mean"])
    assert stats["action"]["count"] == [sum(LENGTHS)]
    all_actions = np.concatenate([e.arrays["action"] for e in written[1]])
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], all_actions.std(axis=0), atol=1e-6)


def test_h264_and_keyframe_interval(tmp_path):
    out = write_lerobot_v3(tmp_path / "ds", [_episode(10, "t", 0)], fps=10, feature_names=NAMES, codec="h264",
                           keyframe_interval=4)
    with av.open(str(out / f"videos/{CAMERA}/chunk-000/file-000.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        keyframes = [i for i, p in enumerate(c.demux(stream)) if p.size and p.is_keyframe]
    assert keyframes == [0, 4, 8]
    assert json.loads((out / "meta/info.json").read_text())["features"][CAMERA]["info"]["video.codec"] == "h264"


def test_bad_episode_is_named_and_nothing_is_left_behind(tmp_path):
    bad = _episode(5, "open the drawer", 1)
    bad = EpisodeRecording(bad.task, bad.frames, {**bad.arrays, "action": bad.arrays["action"][:3]})
    with pytest.raises(ValueError, match=r"episode 1 \('open the drawer'\).*different or zero lengths"):
        write_lerobot_v3(tmp_path / "ds", [_episode(4, "t", 0), bad], fps=20, feature_names=NAMES)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        write_lerobot_v3(tmp_path / "ds", [_episode(4, "t", 0)], fps=20, feature_names=NAMES)


def test_the_lerobot_v3_reader_reads_the_output(written):
    from atomvla.curate.episode import Episode
    from atomvla.curate.sources import open_source

    out, episodes = written
    inputs = np.concatenate([ep.frames[CAMERA] for ep in episodes])
    reader = open_source(str(out))
    metas = list(reader.scan())
    assert reader.name == "lerobot_v3"
    assert [(m.n_frames, m.task) for m in metas] == list(zip(LENGTHS, TASKS))
    for i, (meta, ep) in enumerate(zip(metas, episodes)):
        loaded = Episode(meta)
        np.testing.assert_array_equal(loaded.arrays["action"], ep.arrays["action"])
        last = loaded.frames(CAMERA).get(meta.n_frames - 1)  # located by from_timestamp + timestamp
        assert _nearest(last, inputs) == sum(LENGTHS[: i + 1]) - 1
