"""The LeRobot v3.0 reader on the real Meta-World fixture (AV1 and H.264), and on damaged copies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.sources import detect_format, open_source
from atomvla.schemas import EpisodeMeta
from builders import V3_AV1, V3_H264, copy_dataset, encode_video

EPISODES = Path("meta/episodes/chunk-000/file-000.parquet")
DATA = Path("data/chunk-000/file-000.parquet")
VIDEO = Path("videos/observation.images.corner/chunk-000/file-000.mp4")


def scan(root: Path) -> list[EpisodeMeta | SourceError]:
    return list(open_source(str(root)).scan())


def scan_as(root: Path, fmt: str) -> list[EpisodeMeta | SourceError]:
    return list(open_source(str(root), fmt).scan())


def rewrite_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return copy_dataset(V3_H264, tmp_path / "ds")


@pytest.mark.parametrize("root", [V3_AV1, V3_H264], ids=["av1", "h264"])
def test_fixture_episodes_match_its_index(root: Path):
    truth = pq.read_table(root / EPISODES).to_pylist()
    info = json.loads((root / "meta/info.json").read_text())
    metas = scan(root)
    assert detect_format(root) == "lerobot_v3"
    assert all(isinstance(m, EpisodeMeta) for m in metas)
    assert [m.episode_index for m in metas] == [t["episode_index"] for t in truth]
    assert [m.n_frames for m in metas] == [t["length"] for t in truth]
    assert sum(m.n_frames for m in metas) == info["total_frames"]
    assert [m.task for m in metas] == [t["tasks"][0] for t in truth]
    assert {m.episode_id for m in metas} == {f"{root.name}/{t['episode_index']}" for t in truth}
    for meta, t in zip(metas, truth):
        (camera,) = meta.cameras
        assert camera.path == str((root / VIDEO).resolve())  # readers resolve paths on purpose
        assert camera.from_timestamp == pytest.approx(t["videos/observation.images.corner/from_timestamp"])
        assert (camera.height, camera.width) == (128, 128)
    assert metas[0].cameras[0].codec == info["features"]["observation.images.corner"]["info"]["video.codec"]
    assert metas[0].feature_names == {k: info["features"][k]["names"] for k in ("observation.state", "action")}


def test_arrays_are_the_episodes_rows():
    data = pq.read_table(V3_AV1 / DATA)
    metas = scan(V3_AV1)
    for meta in (metas[0], metas[5], metas[-1]):
        rows = data.filter(pc.equal(data["episode_index"], meta.episode_index))
        arrays = Episode(meta).arrays
        assert set(arrays) == {"action", "observation.state"}
        for key, array in arrays.items():
            assert array.dtype == np.float32 and array.shape == (meta.n_frames, 4)
            np.testing.assert_array_equal(array, np.stack(rows[key].to_numpy(zero_copy_only=False)))


def test_unknown_codebase_version_names_file_version_and_supported(copy: Path):
    info = json.loads((copy / "meta/info.json").read_text())
    (copy / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    for attempt in (lambda: open_source(str(copy)), lambda: scan_as(copy, "lerobot_v3")):
        with pytest.raises(SourceError) as err:
            attempt()
        assert err.value.file == str(copy / "meta/info.json")
        assert "'v1.6'" in err.value.problem and "v3.0" in err.value.problem and "v2.1" in err.value.problem


def test_episode_index_missing_columns_raises(copy: Path):
    rewrite_parquet(copy / EPISODES, lambda t: t.drop_columns(["length"]))
    with pytest.raises(SourceError, match="missing required columns: length") as err:
        scan(copy)
    assert err.value.file == str(copy / EPISODES)


def test_data_file_missing_a_column_fails_each_of_its_episodes(copy: Path):
    rewrite_parquet(copy / DATA, lambda t: t.drop_columns(["action"]))
    results = scan(copy)
    assert len(results) == 11 and all(isinstance(r, SourceError) for r in results)
    assert [r.episode for r in results] == list(range(11))
    assert all(r.file == str(copy / DATA) and "missing required columns: action" in r.problem for r in results)


def test_zero_frame_episode_is_reported_and_others_kept(copy: Path):
    def empty_episode_4(t: pa.Table) -> pa.Table:
        lengths = t["length"].to_numpy().copy()
        lengths[4] = 0
        return t.set_column(t.schema.get_field_index("length"), "length", pa.array(lengths))

    rewrite_parquet(copy / EPISODES, empty_episode_4)
    results = scan(copy)
    bad = [r for r in results if isinstance(r, SourceError)]
    assert len(bad) == 1 and bad[0].episode == 4 and "zero frames" in bad[0].problem
    assert bad[0].file == str(copy / EPISODES)
    assert len(results) - len(bad) == 10


def test_row_count_disagreeing_with_index_is_reported(copy: Path):
    rewrite_parquet(copy / DATA, lambda t: t.slice(0, 850))
    results = scan(copy)
    bad = [r for r in results if isinstance(r, SourceError)]
    assert [r.episode for r in bad] == [10]
    assert bad[0].file == str(copy / DATA) and "has 21 rows" in bad[0].problem and "says 60" in bad[0].problem


def test_missing_video_fails_each_episode_naming_it(copy: Path):
    (copy / VIDEO).unlink()
    results = scan(copy)
    assert all(isinstance(r, SourceError) and r.file == str(copy / VIDEO) and "missing" in r.problem for r in results)


@pytest.mark.parametrize("keep", [0.5, 0.002], ids=["cut-in-data", "cut-in-header"])
def test_truncated_video_is_reported(copy: Path, keep: float):
    blob = (copy / VIDEO).read_bytes()
    (copy / VIDEO).write_bytes(blob[: int(len(blob) * keep)])
    results = scan(copy)
    assert len(results) == 11
    assert all(isinstance(r, SourceError) and r.file == str(copy / VIDEO) for r in results)
    assert all("truncated" in r.problem for r in results)


def test_video_shorter_than_its_episodes(copy: Path):
    keep = 700  # frames; the episodes ending after it are the ones to fail (content is irrelevant)
    encode_video(copy / VIDEO, np.zeros((keep, 128, 128, 3), np.uint8), fps=20)
    results = scan(copy)
    ends = pq.read_table(copy / EPISODES)["dataset_to_index"].to_pylist()
    expected_bad = [i for i, end in enumerate(ends) if end > keep]
    bad = [r for r in results if isinstance(r, SourceError)]
    assert [r.episode for r in bad] == expected_bad
    assert all(r.file == str(copy / VIDEO) and "shorter than the episode" in r.problem for r in bad)
