"""The HDF5 reader on LIBERO- and robomimic-layout files built by `builders`."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.curate.sources import detect_format, open_source
from atomvla.schemas import EpisodeMeta
from builders import build_libero_hdf5, build_robomimic_hdf5

LENGTHS = (40, 52, 46)


def scan(source: Path) -> list[EpisodeMeta | SourceError]:
    return list(open_source(str(source)).scan())


def test_libero_file(tmp_path: Path):
    path = build_libero_hdf5(
        tmp_path / "put_the_bowl_on_the_plate_demo.hdf5", LENGTHS, instruction="put the bowl on the plate"
    )
    metas = scan(path)
    assert detect_format(path) == "hdf5"
    assert [m.n_frames for m in metas] == list(LENGTHS)
    assert [m.episode_id for m in metas] == [f"put_the_bowl_on_the_plate_demo/{i}" for i in range(3)]
    assert {m.task for m in metas} == {"put the bowl on the plate"} and {m.fps for m in metas} == {20.0}
    cameras = {c.key: c for c in metas[1].cameras}
    assert set(cameras) == {"observation.images.agentview", "observation.images.eye_in_hand"}
    agentview = cameras["observation.images.agentview"]
    assert (agentview.kind, agentview.path, agentview.dataset) == ("hdf5", str(path), "data/demo_1/obs/agentview_rgb")
    assert agentview.flip_vertical and (agentview.height, agentview.width) == (32, 32)
    names = metas[1].feature_names
    assert names["action"] == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert names["observation.ee_states"][:3] == ["ee_x", "ee_y", "ee_z"]
    assert names["observation.gripper_states"] == ["gripper_0", "gripper_1"]
    assert names["observation.state"] == names["observation.ee_states"] + names["observation.gripper_states"]


def test_libero_arrays_are_the_stored_datasets(tmp_path: Path):
    path = build_libero_hdf5(tmp_path / "task.hdf5", LENGTHS)
    meta = scan(path)[2]
    arrays = Episode(meta).arrays
    assert set(arrays) == set(meta.feature_names)
    for key, array in arrays.items():
        assert array.dtype == np.float32 and array.shape == (LENGTHS[2], len(meta.feature_names[key]))
    with h5py.File(path) as f:
        demo = f["data/demo_2"]
        np.testing.assert_array_equal(arrays["action"], demo["actions"][:].astype(np.float32))
        np.testing.assert_array_equal(
            arrays["observation.gripper_states"], demo["obs/gripper_states"][:].astype(np.float32)
        )
        state = np.concatenate([demo["obs/ee_states"][:], demo["obs/gripper_states"][:]], axis=1)
        np.testing.assert_array_equal(arrays["observation.state"], state.astype(np.float32))


def test_robomimic_file_without_instruction(tmp_path: Path):
    path = build_robomimic_hdf5(tmp_path / "can_pick_place.hdf5", (30, 34), control_freq=10)
    metas = scan(path)
    assert [m.n_frames for m in metas] == [30, 34]
    assert {m.task for m in metas} == {"can pick place"}  # the file name stands in
    assert {m.fps for m in metas} == {10.0}  # env_args' control_freq
    assert [c.key for c in metas[0].cameras] == [
        "observation.images.agentview",
        "observation.images.robot0_eye_in_hand",
    ]
    names = metas[0].feature_names
    assert names["observation.state"][:3] == ["ee_x", "ee_y", "ee_z"] and names["observation.state"][-2:] == [
        "gripper_0",
        "gripper_1",
    ]
    assert Episode(metas[1]).arrays["observation.state"].shape == (34, 9)


def test_folder_numbers_episodes_across_files_and_demos_numerically(tmp_path: Path):
    build_libero_hdf5(tmp_path / "suite" / "a_task.hdf5", (20, 21), instruction="task a")
    path = build_libero_hdf5(tmp_path / "suite" / "b_task.hdf5", (22, 23, 24), instruction="task b")
    with h5py.File(path, "a") as f:  # demo_10 must come after demo_2, not after demo_1
        f.move("data/demo_1", "data/demo_10")
    metas = scan(tmp_path / "suite")
    assert detect_format(tmp_path / "suite") == "hdf5"
    assert [(m.episode_id, m.task, m.n_frames) for m in metas] == [
        ("suite/0", "task a", 20),
        ("suite/1", "task a", 21),
        ("suite/2", "task b", 22),
        ("suite/3", "task b", 24),
        ("suite/4", "task b", 23),
    ]
    assert metas[4].locator["group"] == "data/demo_10"


def test_demo_without_images_is_reported_and_others_kept(tmp_path: Path):
    path = build_libero_hdf5(tmp_path / "task.hdf5", LENGTHS)
    with h5py.File(path, "a") as f:
        del f["data/demo_1/obs/agentview_rgb"], f["data/demo_1/obs/eye_in_hand_rgb"]
    results = scan(path)
    assert [type(r) for r in results] == [EpisodeMeta, SourceError, EpisodeMeta]
    bad = results[1]
    assert bad.file == str(path) and bad.episode == 1
    assert "data/demo_1" in bad.problem and "no camera images" in bad.problem
    assert str(path) in str(bad) and "episode 1" in str(bad)


def test_empty_demo_and_mismatched_lengths(tmp_path: Path):
    path = build_libero_hdf5(tmp_path / "task.hdf5", LENGTHS)
    with h5py.File(path, "a") as f:
        del f["data/demo_0/actions"]
        f["data/demo_0/actions"] = np.zeros((0, 7))
        del f["data/demo_2/obs/gripper_states"]
        f["data/demo_2/obs/gripper_states"] = np.zeros((LENGTHS[2] - 1, 2))
    first, _, last = scan(path)
    assert isinstance(first, SourceError) and "data/demo_0 has zero frames" in first.problem
    assert isinstance(last, SourceError) and last.episode == 2
    assert f"obs/gripper_states has {LENGTHS[2] - 1} frames, actions have {LENGTHS[2]}" in last.problem


def test_unreadable_files_raise(tmp_path: Path):
    garbage = tmp_path / "broken.hdf5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(SourceError, match="cannot be opened as HDF5") as err:
        scan(garbage)
    assert err.value.file == str(garbage)
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(SourceError, match="no 'data' group"):
        scan(other)


def test_instruction_attr_must_be_json(tmp_path: Path):
    path = build_libero_hdf5(tmp_path / "task.hdf5", (20,))
    with h5py.File(path, "a") as f:
        f["data"].attrs["problem_info"] = "{not json"
    with pytest.raises(SourceError, match=r"data.attrs\['problem_info'\] is not valid JSON"):
        scan(path)


def _corrupt(path: Path, dataset: str) -> None:
    """Rewrite `dataset` gzip-compressed, then overwrite bytes inside its first stored chunk (a bad
    disk sector or a damaged copy: the file opens, the chunk no longer inflates)."""
    with h5py.File(path, "a") as f:
        data = f[dataset][:]
        del f[dataset]
        f.create_dataset(dataset, data=data, compression="gzip", chunks=(1, *data.shape[1:]))
        chunk = f[dataset].id.get_chunk_info(0)
    with path.open("r+b") as raw:
        raw.seek(chunk.byte_offset + 4)
        raw.write(b"\xff" * min(32, chunk.size - 8))


def test_a_corrupt_array_is_an_error_naming_file_episode_and_dataset(tmp_path: Path):
    path = build_robomimic_hdf5(tmp_path / "can.hdf5", LENGTHS)
    _corrupt(path, "data/demo_1/actions")
    meta = scan(path)[1]  # the scan reads shapes only
    with pytest.raises(SourceError) as err:
        Episode(meta).arrays
    assert (err.value.file, err.value.episode) == (str(path), 1)
    assert "data/demo_1/actions cannot be read" in err.value.problem
    assert Episode(scan(path)[0]).arrays["action"].shape == (LENGTHS[0], 7)


def test_a_corrupt_image_chunk_is_an_error_naming_file_episode_and_dataset(tmp_path: Path):
    path = build_robomimic_hdf5(tmp_path / "can.hdf5", LENGTHS)
    _corrupt(path, "data/demo_2/obs/agentview_image")
    frames = Episode(scan(path)[2]).frames("observation.images.agentview")
    for read in (lambda: frames.get_many([0, 5]), lambda: list(frames)):
        with pytest.raises(SourceError) as err:
            read()
        assert (err.value.file, err.value.episode) == (str(path), "can/2")
        assert "data/demo_2/obs/agentview_image cannot be read" in err.value.problem
    assert frames.get_many([5]).shape == (1, 32, 32, 3)  # the other chunks still read


def test_depth_and_mask_images_are_not_per_frame_vectors(tmp_path: Path):
    # robomimic's depth observations (`agentview_depth`, (n, H, W, 1)) and masks are images, not state.
    path = build_robomimic_hdf5(tmp_path / "can.hdf5", LENGTHS)
    with h5py.File(path, "a") as f:
        for i, n in enumerate(LENGTHS):
            f[f"data/demo_{i}/obs/agentview_depth"] = np.zeros((n, 32, 32, 1), np.float32)
            f[f"data/demo_{i}/obs/agentview_segmentation"] = np.zeros((n, 32, 32), np.uint8)
    meta = scan(path)[0]
    assert not {"observation.agentview_depth", "observation.agentview_segmentation"} & set(meta.feature_names)
    assert set(Episode(meta).arrays) == set(meta.feature_names)
    assert {c.key for c in meta.cameras} == {"observation.images.agentview", "observation.images.robot0_eye_in_hand"}


def test_an_instruction_file_beside_a_robomimic_file_names_its_task(tmp_path: Path):
    # robomimic ships datasets/can/ph/image_v141.hdf5: the file name says nothing of the task, and
    # the file holds no instruction.
    path = build_robomimic_hdf5(tmp_path / "image_v141.hdf5", (30, 34))
    path.with_suffix(".txt").write_text("pick up the can and place it in its bin\n")
    assert {m.task for m in scan(path)} == {"pick up the can and place it in its bin"}
    path.with_suffix(".txt").write_text("  \n")
    with pytest.raises(SourceError, match="image_v141.txt: the instruction file is empty"):
        scan(path)


def test_an_unreadable_file_in_a_folder_stops_the_scan_before_any_episode(tmp_path: Path):
    # A whole-source problem: the folder is refused before any episode is yielded (and so stored).
    build_libero_hdf5(tmp_path / "suite" / "a_task.hdf5", (20, 21))
    blob = build_libero_hdf5(tmp_path / "suite" / "b_task.hdf5", (22,)).read_bytes()
    (tmp_path / "suite" / "b_task.hdf5").write_bytes(blob[: len(blob) // 2])
    build_libero_hdf5(tmp_path / "suite" / "c_task.hdf5", (23,))
    episodes = open_source(str(tmp_path / "suite")).scan()
    with pytest.raises(SourceError, match="cannot be opened as HDF5") as err:
        next(episodes)
    assert err.value.file == str(tmp_path / "suite" / "b_task.hdf5")


def test_a_file_at_another_rate_than_the_folders_is_reported_episode_by_episode(tmp_path: Path):
    build_robomimic_hdf5(tmp_path / "suite" / "a.hdf5", (20,), control_freq=20)
    build_robomimic_hdf5(tmp_path / "suite" / "b.hdf5", (21, 22), control_freq=10)
    build_robomimic_hdf5(tmp_path / "suite" / "c.hdf5", (23,), control_freq=20)
    first, *odd, last = scan(tmp_path / "suite")
    assert (first.fps, last.fps, last.episode_id) == (20.0, 20.0, "suite/3")
    assert [(e.file, e.episode) for e in odd] == [(str(tmp_path / "suite" / "b.hdf5"), 1), (str(tmp_path / "suite" / "b.hdf5"), 2)]
    assert odd[0].problem == (
        "data/demo_0 runs at 10 fps, most of the folder's files at 20 fps: one dataset has one frame rate "
        "(import this file on its own)"
    )
