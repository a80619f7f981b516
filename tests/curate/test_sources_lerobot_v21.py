"""The LeRobot v2.1 reader on a v2.1 conversion of the Meta-World fixture, and on damaged copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.sources import detect_format, open_source
from atomvla.schemas import EpisodeMeta
from builders import V3_H264, build_lerobot_v21, copy_dataset, encode_video


def scan(root: Path) -> list[EpisodeMeta | SourceError]:
    return list(open_source(str(root)).scan())


def errors(results: list[EpisodeMeta | SourceError]) -> list[SourceError]:
    return [r for r in results if isinstance(r, SourceError)]


@pytest.fixture(scope="module")
def v21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lerobot_v21(tmp_path_factory.mktemp("v21") / "metaworld_v21")


@pytest.fixture
def copy(v21: Path, tmp_path: Path) -> Path:
    return copy_dataset(v21, tmp_path / "ds")


def test_same_episodes_and_arrays_as_the_v3_original(v21: Path):
    ours, original = scan(v21), scan(V3_H264)
    assert detect_format(v21) == "lerobot_v21"
    assert all(isinstance(m, EpisodeMeta) for m in ours)
    assert [(m.episode_index, m.n_frames, m.task, m.fps) for m in ours] == [
        (m.episode_index, m.n_frames, m.task, m.fps) for m in original
    ]
    assert ours[0].episode_id == "metaworld_v21/0"
    for meta, ref in zip(ours, original):
        assert meta.feature_names == ref.feature_names
        (camera,) = meta.cameras
        assert camera.path == str(
            v21 / f"videos/chunk-000/observation.images.corner/episode_{meta.episode_index:06d}.mp4"
        )
        assert camera.from_timestamp == 0.0 and camera.codec == "h264"
    for meta, ref in zip(ours[::5], original[::5]):
        arrays, expected = Episode(meta).arrays, Episode(ref).arrays
        assert arrays.keys() == expected.keys()
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], expected[key])


def test_v2_0_is_read_too(copy: Path):
    info = json.loads((copy / "meta/info.json").read_text())
    (copy / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.0"}))
    assert detect_format(copy) == "lerobot_v21"
    assert len([m for m in scan(copy) if isinstance(m, EpisodeMeta)]) == 11


def test_v3_reader_refuses_a_v21_dataset(v21: Path):
    with pytest.raises(SourceError, match="codebase_version is 'v2.1'; this reader reads v3.0"):
        list(open_source(str(v21), "lerobot_v3").scan())


def test_video_shorter_than_its_parquet_episode(copy: Path):
    video = copy / "videos/chunk-000/observation.images.corner/episode_000002.mp4"
    encode_video(video, np.zeros((40, 128, 128, 3), np.uint8), fps=20)
    (bad,) = errors(scan(copy))
    assert bad.episode == 2 and bad.file == str(video) and "shorter than the episode" in bad.problem


def test_missing_and_truncated_videos(copy: Path):
    missing = copy / "videos/chunk-000/observation.images.corner/episode_000003.mp4"
    truncated = copy / "videos/chunk-000/observation.images.corner/episode_000005.mp4"
    missing.unlink()
    truncated.write_bytes(truncated.read_bytes()[:2000])
    bad = errors(scan(copy))
    assert [(b.episode, b.file) for b in bad] == [(3, str(missing)), (5, str(truncated))]
    assert "missing" in bad[0].problem and "truncated" in bad[1].problem


def test_data_file_problems(copy: Path):
    no_column = copy / "data/chunk-000/episode_000001.parquet"
    pq.write_table(pq.read_table(no_column).drop_columns(["observation.state"]), no_column)
    short = copy / "data/chunk-000/episode_000004.parquet"
    pq.write_table(pq.read_table(short).slice(0, 10), short)
    (copy / "data/chunk-000/episode_000007.parquet").unlink()
    (copy / "data/chunk-000/episode_000009.parquet").write_bytes(b"not parquet")
    bad = errors(scan(copy))
    assert [b.episode for b in bad] == [1, 4, 7, 9]
    assert "cannot be read as parquet" in bad[3].problem
    assert "missing required columns: observation.state" in bad[0].problem and bad[0].file == str(no_column)
    assert "has 10 rows" in bad[1].problem and bad[1].file == str(short)
    assert "data file is missing" in bad[2].problem


def test_zero_frame_episode(copy: Path):
    index = copy / "meta/episodes.jsonl"
    entries = [json.loads(line) for line in index.read_text().splitlines()]
    entries[6]["length"] = 0
    index.write_text("".join(json.dumps(e) + "\n" for e in entries))
    (bad,) = errors(scan(copy))
    assert bad.episode == 6 and bad.file == str(index) and "zero frames" in bad.problem
