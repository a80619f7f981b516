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
from builders import V3_H264, build_video_folder, encode_video

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


def _remux(src: Path, dest: Path) -> Path:
    """The packets of `src` in another container (no re-encode)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dest), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dest


def test_a_truncated_matroska_video_is_reported_at_import(tmp_path: Path):
    # Matroska keeps its duration in the header, written before the clusters: a cut-off file still
    # announces every frame, so the frames are counted from the packets that are there.
    root = build_video_folder(tmp_path / "clips", (30, 40))
    for stem in ("episode_0", "episode_1"):
        _remux(root / f"{stem}.mp4", root / f"{stem}.mkv").with_suffix(".mp4").unlink()
    blob = (root / "episode_1.mkv").read_bytes()
    (root / "episode_1.mkv").write_bytes(blob[: len(blob) // 2])
    whole, cut = scan(root)
    assert isinstance(whole, EpisodeMeta) and whole.n_frames == 30
    assert isinstance(cut, SourceError) and (cut.file, cut.episode) == (str(root / "episode_1.mkv"), 1)
    assert cut.problem.startswith("file is truncated: its header announces 40 frames (4.000 s at 10 fps), it holds ")


def test_text_named_mp4_is_not_an_mp4(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (12,))
    (root / "episode_0.mp4").write_text("this is a text file, not a video\n")
    (bad,) = scan(root)
    assert bad.problem == "not an MP4 file (it starts with 'this is ', not an MP4 box such as 'ftyp')"
    (root / "episode_0.mp4").unlink()
    (root / "episode_0.avi").write_bytes(b"GIF89a" + bytes(8))  # FFmpeg opens it: one 14-byte "frame"
    (bad,) = scan(root)
    assert isinstance(bad, SourceError) and (bad.file, bad.episode) == (str(root / "episode_0.avi"), 0)


def test_a_video_at_another_frame_rate_than_the_folders_is_reported(tmp_path: Path):
    root = build_video_folder(tmp_path / "clips", (30, 42, 36))
    encode_video(root / "episode_1.mp4", np.zeros((84, 32, 32, 3), np.uint8), fps=20)  # 4.2 s, as before
    np.savez(root / "episode_1.npz", action=np.zeros((84, 7), np.float32))
    first, odd, last = scan(root)
    assert [first.fps, last.fps] == [10.0, 10.0]
    assert isinstance(odd, SourceError) and (odd.file, odd.episode) == (str(root / "episode_1.mp4"), 1)
    assert odd.problem == (
        "video runs at 20 fps, most of the folder's videos at 10 fps: one dataset has one frame rate "
        "(re-encode it at 10 fps, or import it from a folder of its own)"
    )
