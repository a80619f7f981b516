"""`atom-curate export --to lerobot`: the Meta-World fixture with its truth subtasks, read back with
`datasets`, the project's own LeRobot reader and a fresh store; video sources encoded once; bad input."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.episode import Episode
from atomvla.curate.exports.lerobot_v3 import EpisodeRecording, write_lerobot_v3
from atomvla.curate.sources import open_source
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Status, Subtask
from builders import FIXTURES, V3_AV1, accept_halves, build_video_folder, encode_video

TRUTH = FIXTURES / "metaworld_truth.jsonl"
CAMERA = "observation.images.corner"
REJECTED = 2  # the fixture episode whose latest revision is rejected, so it is not exported
runner = CliRunner()


def curate(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Store, Path]:
    tmp = tmp_path_factory.mktemp("export")
    db = tmp / "s.sqlite"
    assert curate("import", V3_AV1, "--store", db).exit_code == 0
    assert curate("import-annotations", TRUTH, "--store", db, "--author", "truth").exit_code == 0
    store = Store(db)
    rejected = store.latest(f"{V3_AV1.name}/{REJECTED}")
    store.add_revision(rejected.model_copy(update={"status": Status.rejected, "author": "ann"}))
    result = curate("export", tmp / "ds", "--to", "lerobot", "--store", db)
    assert result.exit_code == 0, result.output
    return store, tmp / "ds"


def _accepted(store: Store) -> list[Decomposition]:
    latest = store.latest_all(status=Status.accepted)
    return [latest[m.episode_id] for m in store.episodes() if m.episode_id in latest]


def test_subtask_columns_match_the_store_frame_by_frame(exported):
    import datasets

    store, out = exported
    decs = _accepted(store)
    assert len(decs) == 10
    ds = datasets.load_dataset("parquet", data_files=str(out / "data/*/*.parquet"), split="train",
                               cache_dir=str(out.parent / "hf_cache"))
    assert len(ds) == sum(d.n_frames for d in decs)
    subtasks = pd.read_parquet(out / "meta/subtasks.parquet")
    text_of = dict(zip(subtasks["subtask_index"], subtasks.index))
    frame_index, episode_index = np.array(ds["frame_index"]), np.array(ds["episode_index"])
    subtask_index = np.array(ds["subtask_index"])
    for i, dec in enumerate(decs):
        rows = np.flatnonzero(episode_index == i)
        assert frame_index[rows].tolist() == list(range(dec.n_frames))
        expected = [s.instruction for s in dec.subtasks for _ in range(s.n_frames)]
        assert [text_of[k] for k in subtask_index[rows]] == expected
        # LeRobot's persistent language rows: the same on every frame, one `subtask` row per subtask
        # stamped with its first frame's timestamp, so active_at(t) gives the frame's subtask.
        language = ds[int(rows[0])]["language_persistent"]
        assert ds[int(rows[-1])]["language_persistent"] == language
        assert [(r["role"], r["style"], r["content"]) for r in language] == [
            ("assistant", "subtask", s.instruction) for s in dec.subtasks]
        timestamps = np.array(ds[int(rows[0]):int(rows[-1]) + 1]["timestamp"], dtype=np.float32)
        starts = [np.float32(r["timestamp"]) for r in language]
        assert starts == [timestamps[s.start_frame] for s in dec.subtasks]
        assert ds[int(rows[0])]["language_events"] == []


def test_interchange_file_and_metadata_agree_with_the_data(exported):
    store, out = exported
    decs = _accepted(store)
    lines = [json.loads(line) for line in (out / "meta/atomvla_subtasks.jsonl").read_text().splitlines()]
    assert [r["episode_index"] for r in lines] == list(range(10))
    assert [r["episode_id"] for r in lines] == [d.episode_id for d in decs]
    assert lines[REJECTED]["source_episode_index"] == REJECTED + 1
    assert all(r["author"] == "truth" and r["status"] == "accepted" and r["reviewed_by_person"] for r in lines)
    info = json.loads((out / "meta/info.json").read_text())
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert (info["total_episodes"], info["total_frames"]) == (10, data.num_rows)
    assert info["features"]["subtask_index"] == {"dtype": "int64", "shape": [1], "names": None}
    assert info["features"]["language_persistent"]["dtype"] == "language"
    assert info["features"][CAMERA] == json.loads((V3_AV1 / "meta/info.json").read_text())["features"][CAMERA]
    stats = json.loads((out / "meta/stats.json").read_text())
    actions = np.stack(data.column("action").to_pylist())
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(axis=0), atol=1e-5)
    assert stats["subtask_index"]["max"] == [data.column("subtask_index").to_numpy().max()]


def test_video_frames_match_the_source(exported):
    # Ten of the eleven episodes: their video is cut out of the source's file (test_export_subset_video.py).
    store, out = exported
    reader = open_source(str(out))
    metas = [m for m in reader.scan()]
    assert [m.n_frames for m in metas] == [d.n_frames for d in _accepted(store)]
    src = Episode(store.episode(f"{V3_AV1.name}/{REJECTED + 1}"))
    ours = Episode(metas[REJECTED])
    np.testing.assert_array_equal(ours.frames().get_many([0, 7, ours.meta.n_frames - 1]),
                                  src.frames().get_many([0, 7, src.meta.n_frames - 1]))
    np.testing.assert_array_equal(ours.arrays["action"], src.arrays["action"])


def test_reimports_into_a_new_store_with_the_same_decompositions(exported, tmp_path):
    store, out = exported
    db = tmp_path / "new.sqlite"
    assert curate("import", out, "--store", db).exit_code == 0
    result = curate("import-annotations", out / "meta/atomvla_subtasks.jsonl", "--store", db, "--author", "hub")
    assert result.exit_code == 0, result.output
    new = Store(db)
    again = [new.latest(m.episode_id) for m in new.episodes()]
    assert [d.subtasks for d in again] == [d.subtasks for d in _accepted(store)]


def test_refusals_are_one_line_and_write_nothing(exported, tmp_path):
    store, out = exported
    before = sorted(p.name for p in out.parent.iterdir())
    result = curate("export", out, "--to", "lerobot", "--store", store.path)
    assert result.exit_code == 2 and "already exists" in result.output
    result = curate("export", out.parent / "none", "--to", "lerobot", "--store", store.path, "--status", "needs_review")
    # One message (the console wraps it at the test's 80 columns).
    assert result.exit_code == 2 and "no episodes with status needs_review" in " ".join(result.output.split())
    assert result.output.count("error:") == 1
    assert sorted(p.name for p in out.parent.iterdir()) == before


def test_an_interrupted_export_leaves_no_folder(tmp_path):
    def episodes():
        yield EpisodeRecording("t", {}, {"action": np.zeros((4, 2), np.float32)})
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C half way

    with pytest.raises(KeyboardInterrupt):
        write_lerobot_v3(tmp_path / "ds", episodes(), fps=10, feature_names={})
    assert list(tmp_path.iterdir()) == []


def test_a_video_folder_is_encoded_once_and_files_roll_over_at_the_size_limits(tmp_path):
    src = build_video_folder(tmp_path / "src", lengths=(30, 42, 36), fps=10)
    db = tmp_path / "s.sqlite"
    assert curate("import", src, "--store", db).exit_code == 0
    store = Store(db)
    accept_halves(store, "pick up the block")
    out = tmp_path / "ds"
    assert curate("export", out, "--to", "lerobot", "--store", db).exit_code == 0
    video = out / "videos" / next(iter(os.listdir(out / "videos"))) / "chunk-000/file-000.mp4"
    with av.open(str(video)) as c:
        assert c.streams.video[0].frames == 108 or sum(1 for _ in c.decode(video=0)) == 108

    # The same episodes with tiny limits: every episode after the first starts a new file.
    records = [(m, store.latest(m.episode_id)) for m in store.episodes()]
    recs = [EpisodeRecording(m.task, {"cam": np.stack(list(Episode(m).frames()))}, Episode(m).arrays)
            for m, _ in records]
    rolled = write_lerobot_v3(tmp_path / "rolled", recs, fps=10, feature_names={}, codec="h264",
                              data_files_size_in_mb=0.001, video_files_size_in_mb=0.001)
    eps = pq.read_table(rolled / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert eps["data/file_index"] == [0, 1, 2] and eps["videos/cam/file_index"] == [0, 1, 2]
    assert eps["videos/cam/from_timestamp"] == [0.0, 0.0, 0.0]
    metas = list(open_source(str(rolled)).scan())
    assert [m.n_frames for m in metas] == [30, 42, 36]
    np.testing.assert_array_equal(Episode(metas[2]).arrays["action"], Episode(records[2][0]).arrays["action"])
    assert Episode(metas[2]).frames().get(5).shape == (32, 32, 3)


def test_no_language_leaves_out_the_columns_older_lerobot_rejects(exported, tmp_path):
    store, _ = exported
    out = tmp_path / "plain"
    result = curate("export", out, "--to", "lerobot", "--store", store.path, "--no-language")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "meta/info.json").read_text())
    assert not any(f["dtype"] == "language" for f in info["features"].values())
    names = pq.read_schema(out / "data/chunk-000/file-000.parquet").names
    assert "subtask_index" in names and "language_persistent" not in names


def test_datasets_at_different_rates_are_refused_with_the_filter_that_separates_them(tmp_path):
    db = tmp_path / "s.sqlite"
    for name, fps in (("slow", 10), ("fast", 20)):
        assert curate("import", build_video_folder(tmp_path / name, (24,), fps=fps), "--store", db).exit_code == 0
    store = Store(db)
    for m in store.episodes():
        store.add_revision(Decomposition(
            episode_id=m.episode_id, n_frames=m.n_frames, status=Status.accepted, author="ann",
            subtasks=(Subtask(start_frame=0, end_frame=12, instruction="pick up the block", skill="pick"),
                      Subtask(start_frame=12, end_frame=24, instruction="place it", skill="place"))))
    result = curate("export", tmp_path / "ds", "--to", "lerobot", "--store", db)
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "different frame rates (10, 20)" in message
    assert "--dataset-name" in message and not (tmp_path / "ds").exists()
    assert curate("export", tmp_path / "ds", "--to", "lerobot", "--store", db, "--dataset-name", "fast").exit_code == 0



LEROBOT_TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s between a queried timestamp and a decoded frame


def _frame_with_its_number(frame_index: int) -> np.ndarray:
    """(64, 64, 3) uint8: eight 8-pixel stripes, white where the frame number has a 1 bit (robust to lossy codecs)."""
    bits = (frame_index >> np.arange(8)) & 1
    return np.repeat(np.where(bits, 230, 20).astype(np.uint8), 8)[None, :, None].repeat(64, 0).repeat(3, 2)


def _number_of(frame: np.ndarray) -> int:
    bits = frame.reshape(64, 8, 8, 3).mean(axis=(0, 2, 3)) > 125
    return int((bits << np.arange(8)).sum())


def _phone_store(tmp_path: Path, fps: Fraction) -> Path:
    """A video folder of two episodes (45 and 61 frames) at `fps`, imported and accepted split at the
    middle. Each frame shows its number, so a decoded frame says which source frame it is."""
    src = tmp_path / "phone"
    for i, n in enumerate((45, 61)):
        frames = np.stack([_frame_with_its_number(f) for f in range(n)])
        encode_video(src / f"episode_{i}.mp4", frames, fps)
        np.savez(src / f"episode_{i}.npz", action=np.arange(2 * n, dtype=np.float32).reshape(n, 2))
    (src / "task.txt").write_text("pick up the cup")
    db = tmp_path / "s.sqlite"
    assert curate("import", src, "--store", db).exit_code == 0
    accept_halves(Store(db), "pick up the cup")
    return db


def test_ntsc_footage_is_conformed_to_the_integer_rate_frame_for_frame(tmp_path):
    db = _phone_store(tmp_path, Fraction(30000, 1001))
    store = Store(db)
    out = tmp_path / "ds"
    result = curate("export", out, "--to", "lerobot", "--store", db)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "29.97 fps conformed to 30 fps" in said and "phone/1 (61 frames) ends 0.002 s earlier" in said

    info = json.loads((out / "meta/info.json").read_text())
    assert info["fps"] == 30
    camera = next(k for k, f in info["features"].items() if f["dtype"] == "video")
    assert info["features"][camera]["info"]["video.fps"] == 30
    assert info["features"][camera]["info"]["video.source_fps"] == pytest.approx(30000 / 1001)
    data = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pydict()
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    frame_index, episode_index = np.array(data["frame_index"]), np.array(data["episode_index"])
    np.testing.assert_array_equal(data["timestamp"], (frame_index / 30).astype(np.float32))
    assert eps["length"] == [45, 61]

    # What LeRobot's pyav decoder checks: each frame's timestamp (its episode's from_timestamp plus
    # its data timestamp) has a decoded frame within tolerance_s; here that frame is the source's same frame.
    video = out / "videos" / camera / "chunk-000/file-000.mp4"
    with av.open(str(video)) as c:
        assert c.streams.video[0].average_rate == 30
        decoded = [(float(f.pts * f.time_base), _number_of(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
    times, numbers = np.array([t for t, _ in decoded]), np.array([k for _, k in decoded])
    wanted = np.array(eps[f"videos/{camera}/from_timestamp"])[episode_index] + np.array(data["timestamp"])
    nearest = np.abs(times[None, :] - wanted[:, None]).argmin(axis=1)
    assert np.abs(times[nearest] - wanted).max() < LEROBOT_TOLERANCE_S
    np.testing.assert_array_equal(numbers[nearest], frame_index)

    # Subtask boundaries are the same frames; their timestamps are those frames' at 30 fps.
    lines = [json.loads(line) for line in (out / "meta/atomvla_subtasks.jsonl").read_text().splitlines()]
    for line, meta in zip(lines, store.episodes()):
        assert line["fps"] == 30
        assert [(s["start_frame"], s["end_frame"]) for s in line["subtasks"]] == [
            (s.start_frame, s.end_frame) for s in store.latest(meta.episode_id).subtasks]
    language = pq.read_table(out / "data/chunk-000/file-000.parquet", columns=["language_persistent"]).column(0)
    first_of_episode_1 = int(np.flatnonzero(episode_index == 1)[0])
    assert [r["timestamp"] for r in language[first_of_episode_1].as_py()] == [0.0, 1.0]  # split at frame 30


def test_a_rate_far_from_any_integer_is_refused_naming_the_episodes_and_what_to_do(tmp_path):
    db = _phone_store(tmp_path, Fraction(25, 2))
    result = curate("export", tmp_path / "ds", "--to", "lerobot", "--store", db)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "phone/0, phone/1 run at 12.5 fps" in said
    assert "--to parquet" in said and not (tmp_path / "ds").exists()


def test_the_dataset_card_names_the_recorded_and_the_stored_rate(exported, tmp_path):
    from atomvla.curate.card import build_card

    db = _phone_store(tmp_path, Fraction(24000, 1001))
    assert curate("export", tmp_path / "ds", "--to", "lerobot", "--store", db).exit_code == 0
    card = " ".join(str(build_card(tmp_path / "ds", "team/phone")).split())
    assert "recorded at 23.976 fps and conformed to 24 fps" in card and "play 0.1% faster" in card
    assert "conformed" not in str(build_card(exported[1], "team/metaworld"))  # recorded at an integer rate
