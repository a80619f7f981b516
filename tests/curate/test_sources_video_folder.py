"""The video-folder reader on folders built by `builders`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.sources import detect_format, open_source
from atomvla.curate.sources.video_folder import VideoFolderReader
from atomvla.schemas import EpisodeMeta
from builders import V3_H264, build_video_folder

LENGTHS = (30, 42)


def scan(root: Path) -> list[EpisodeMeta | SourceError]:
    return list(open_source(str(root)).scan())


@pytest.mark.parametrize("arrays", ["npz", "parquet"])
def test_episodes_from_videos_and_array_files(tmp_path: Path, arrays: str):
    root = build_video_folder(tmp_path / "clips", LENGTHS, fps=10, arrays=arrays)
    tasks = json.loads((root / "tasks.json").read_text())
    metas = scan(root)
    assert detect_format(root) == "video_folder"
    assert [(m.episode_id, m.n_frames, m.fps) for m in metas] == [("clips/0", 30, 10.0), ("clips/1", 42, 10.0)]
    assert [m.task for m in metas] == [tasks["episode_0"], tasks["episode_1"]]
    (camera,) = metas[1].cameras
    assert (camera.kind, camera.path, camera.codec, camera.height) == ("video", str(root / "episode_1.mp4"), "h264", 32)
    values = Episode(metas[1]).arrays
    assert {k: v.shape for k, v in values.items()} == {"action": (42, 7), "observation.state": (42, 4)}
    assert metas[1].feature_names["observation.state"] == ["state_0", "state_1", "state_2", "state_3"]
    if arrays == "npz":
        with np.load(root / "episode_1.npz") as stored:
            np.testing.assert_array_equal(values["action"], stored["action"])


def test_instruction_sources_in_order(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12, 12, 12))
    (root / "tasks.json").unlink()
    (root / "episode_1.txt").write_text("open the drawer\n")
    (root / "task.txt").write_text("sweep the table")
    assert [m.task for m in scan(root)] == ["sweep the table", "open the drawer", "sweep the table"]


def test_video_without_arrays_or_instruction(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12, 14))
    (root / "episode_0.npz").unlink()
    (root / "tasks.json").write_text(json.dumps({"episode_0": "press the button"}))
    first, second = scan(root)
    assert first.feature_names == {} and Episode(first).arrays == {}
    assert isinstance(second, SourceError) and second.episode == 1 and second.file == str(root / "episode_1.mp4")
    assert "no instruction found" in second.problem


def test_bad_episodes_are_reported(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12, 14, 16))
    np.savez(root / "episode_0.npz", action=np.zeros((11, 7), np.float32))
    blob = (root / "episode_2.mp4").read_bytes()
    (root / "episode_2.mp4").write_bytes(blob[: len(blob) // 2])
    results = scan(root)
    assert [type(r) for r in results] == [SourceError, EpisodeMeta, SourceError]
    assert (
        results[0].file == str(root / "episode_0.npz")
        and "'action' has 11 rows, the video has 12 frames" in results[0].problem
    )
    assert results[2].file == str(root / "episode_2.mp4") and "truncated" in results[2].problem
    (root / "episode_2.mp4").write_bytes(bytes(range(256)) * 8)  # not a video at all
    assert scan(root)[2].problem == "not an MP4 file (no MP4 box at byte 0)"


def test_lerobot_folder_is_not_a_video_folder():
    assert not VideoFolderReader.detect(V3_H264)
    assert VideoFolderReader.detect(V3_H264 / "videos" / "observation.images.corner" / "chunk-000")


def test_bad_instruction_map_raises(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12,))
    (root / "tasks.json").write_text(json.dumps(["not", "a", "mapping"]))
    with pytest.raises(SourceError, match="must map each video's stem") as err:
        scan(root)
    assert err.value.file == str(root / "tasks.json")


def test_video_pyav_cannot_open(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12,))
    (root / "episode_1.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    (root / "tasks.json").write_text(json.dumps({"episode_0": "a", "episode_1": "b"}))
    good, bad = scan(root)
    assert isinstance(good, EpisodeMeta) and isinstance(bad, SourceError)
    assert bad.file == str(root / "episode_1.mkv") and "cannot be opened" in bad.problem
