"""Small datasets of every source format, built in a test's tmp_path; shared by the test suites.

The LeRobot v2.1 builder converts the real Meta-World fixture; the HDF5 and video-folder builders
synthesise a pick-and-place motion (reach, close the gripper, carry, open it, retreat) so a
kinematic segmenter has real events to find.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Status, Subtask

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
V3_AV1 = FIXTURES / "metaworld_lerobot_v30"
V3_H264 = FIXTURES / "metaworld_lerobot_v30_h264"
EPISODES = Path("meta/episodes/chunk-000/file-000.parquet")
DATA = Path("data/chunk-000/file-000.parquet")

# Fractions of an episode at which the synthetic gripper closes and opens again.
GRASP_AT, RELEASE_AT = 0.4, 0.75
_WAYPOINTS = np.array(
    [[0.0, 0.0, 0.3], [0.1, 0.2, 0.05], [0.1, 0.2, 0.05], [-0.1, 0.3, 0.15], [-0.1, 0.3, 0.05], [-0.1, 0.3, 0.25]]
)
_WAYPOINT_TIMES = np.array([0.0, GRASP_AT - 0.05, GRASP_AT, RELEASE_AT - 0.1, RELEASE_AT, 1.0])


def encode_video(path: Path, frames_thwc: np.ndarray, fps: int | Fraction) -> Path:
    """Write (n, H, W, 3) uint8 frames as an H.264 MP4 (the codec every decoder reads), at an
    integer or NTSC (`Fraction(30000, 1001)`) rate."""
    return _write_video(
        path, (av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames_thwc), fps, frames_thwc.shape[1:3]
    )


def _write_video(path: Path, frames: Iterable[av.VideoFrame], fps: int | Fraction, height_width: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        # ultrafast: test videos need to exist quickly, not to be small.
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.height, stream.width = height_width
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(frames):
            frame.pts, frame.time_base = i, Fraction(1, fps)  # decoded frames carry their source's timing
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def copy_dataset(src: Path, dest: Path) -> Path:
    """A writable copy of a (read-only) fixture, for tests that damage it."""
    return Path(shutil.copytree(src, dest))


def pick_place_motion(n_frames: int) -> dict[str, np.ndarray]:
    """End-effector positions `ee_pos` (n, 3), `gripper_closed` (n,) bool and 7-d `actions` (n, 7).

    Actions are robosuite-style deltas: xyz, roll/pitch/yaw (zero here), gripper -1 open / +1 closed.
    """
    t = np.linspace(0.0, 1.0, n_frames)
    ee_pos = np.stack([np.interp(t, _WAYPOINT_TIMES, _WAYPOINTS[:, i]) for i in range(3)], axis=1)
    closed = (t >= GRASP_AT) & (t < RELEASE_AT)
    delta = np.diff(ee_pos, axis=0, append=ee_pos[-1:]) * n_frames
    actions = np.concatenate([delta, np.zeros((n_frames, 3)), np.where(closed, 1.0, -1.0)[:, None]], axis=1)
    return {"ee_pos": ee_pos, "gripper_closed": closed, "actions": actions}


def _camera_frames(ee_pos: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8: a bright square that follows the end effector over a gradient."""
    n = len(ee_pos)
    frames = np.broadcast_to(np.linspace(20, 120, size, dtype=np.uint8)[None, :, None, None], (n, size, size, 3)).copy()
    corners = ((ee_pos[:, :2] + 0.3) / 0.6 * (size - size // 4)).astype(int)
    for frame, (x, y) in zip(frames, corners):
        frame[y : y + size // 4, x : x + size // 4] = 230
    return frames


def build_lerobot_v21(dest: Path, src: Path = V3_H264) -> Path:
    """A LeRobot v2.1 dataset with the same episodes as a v3.0 one: rows split per episode, each
    episode's frames re-encoded to its own H.264 MP4."""
    info = json.loads((src / "meta" / "info.json").read_text())
    episodes = pa.concat_tables(pq.read_table(p) for p in sorted((src / "meta" / "episodes").glob("*/*.parquet")))
    data = pa.concat_tables(pq.read_table(p) for p in sorted((src / "data").glob("*/*.parquet")))
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    # The fixture keeps each camera in one file; episodes are cut from it by their from_timestamp.
    # Decoded frames go straight back to the encoder: no RGB round trip.
    frames = {}
    for key in video_keys:
        with av.open(str(next((src / "videos" / key).glob("*/*.mp4")))) as container:
            frames[key] = list(container.decode(video=0))
    fps = info["fps"]
    lines = []
    for ep in episodes.to_pylist():
        index, length = ep["episode_index"], ep["length"]
        rows = data.slice(ep["dataset_from_index"], length)
        out = dest / "data" / "chunk-000" / f"episode_{index:06d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, out)
        for key in video_keys:
            first = round(ep[f"videos/{key}/from_timestamp"] * fps)
            video = dest / "videos" / "chunk-000" / key / f"episode_{index:06d}.mp4"
            cut = frames[key][first : first + length]
            _write_video(video, cut, fps, (cut[0].height, cut[0].width))
        lines.append(json.dumps({"episode_index": index, "tasks": list(ep["tasks"]), "length": length}))
    tasks = pq.read_table(src / "meta" / "tasks.parquet").to_pandas()
    (dest / "meta").mkdir(parents=True, exist_ok=True)
    (dest / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (dest / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": int(i), "task": t}) + "\n" for t, i in tasks["task_index"].items())
    )
    info.update(
        codebase_version="v2.1",
        total_chunks=1,
        data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
    )
    for key in ("data_files_size_in_mb", "video_files_size_in_mb"):
        info.pop(key, None)
    (dest / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return dest


def build_libero_hdf5(
    path: Path,
    lengths: tuple[int, ...] = (40, 52, 46),
    instruction: str = "pick up the black bowl and place it on the plate",
    image_size: int = 32,
    images: bool = True,
) -> Path:
    """A LIBERO-layout file: `problem_info`, `obs/{agentview_rgb, eye_in_hand_rgb, ee_states, ...}`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps(
            {"problem_name": "libero_tabletop_manipulation", "language_instruction": instruction}
        )
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation", "env_kwargs": {}})
        for i, n in enumerate(lengths):
            motion = pick_place_motion(n)
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            demo["actions"] = motion["actions"]
            finger = np.where(motion["gripper_closed"], 0.01, 0.04)
            demo["robot_states"] = np.concatenate(
                [np.stack([finger, -finger], 1), motion["ee_pos"], np.tile([0, 0, 0, 1.0], (n, 1))], 1
            )
            demo["states"] = np.zeros((n, 20))
            obs = demo.create_group("obs")
            obs["ee_states"] = np.concatenate([motion["ee_pos"], np.zeros((n, 3))], axis=1)
            obs["gripper_states"] = np.stack([finger, -finger], axis=1)
            obs["joint_states"] = np.zeros((n, 7))
            if images:
                frames = _camera_frames(motion["ee_pos"], image_size)[:, ::-1]  # LIBERO stores them upside down
                obs["agentview_rgb"] = frames
                obs["eye_in_hand_rgb"] = frames
    return path


def build_robomimic_hdf5(
    path: Path, lengths: tuple[int, ...] = (36, 44), control_freq: int = 20, image_size: int = 32
) -> Path:
    """A robomimic-layout file: `env_args` only (no instruction), `obs/robot0_eef_pos`, `agentview_image`, ..."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(
            {"env_name": "PickPlaceCan", "type": 1, "env_kwargs": {"control_freq": control_freq}}
        )
        data.attrs["total"] = sum(lengths)
        for i, n in enumerate(lengths):
            motion = pick_place_motion(n)
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            demo["actions"] = motion["actions"]
            finger = np.where(motion["gripper_closed"], 0.01, 0.04)
            obs = demo.create_group("obs")
            obs["robot0_eef_pos"] = motion["ee_pos"]
            obs["robot0_eef_quat"] = np.tile([0, 0, 0, 1.0], (n, 1))
            obs["robot0_gripper_qpos"] = np.stack([finger, -finger], axis=1)
            obs["robot0_joint_pos"] = np.zeros((n, 7))
            obs["object"] = np.zeros((n, 14))
            frames = _camera_frames(motion["ee_pos"], image_size)[:, ::-1]
            obs["agentview_image"] = frames
            obs["robot0_eye_in_hand_image"] = frames
    return path


def build_video_folder(
    dest: Path, lengths: tuple[int, ...] = (30, 42), fps: int = 10, arrays: str = "npz", image_size: int = 32
) -> Path:
    """`episode_<i>.mp4` with same-stem arrays (`action`, `observation.state`) and a `tasks.json`."""
    dest.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for i, n in enumerate(lengths):
        stem = f"episode_{i}"
        motion = pick_place_motion(n)
        encode_video(dest / f"{stem}.mp4", _camera_frames(motion["ee_pos"], image_size), fps)
        state = np.concatenate([motion["ee_pos"], motion["gripper_closed"][:, None]], axis=1).astype(np.float32)
        values = {"action": motion["actions"].astype(np.float32), "observation.state": state}
        if arrays == "npz":
            np.savez(dest / f"{stem}.npz", **values)
        else:
            pq.write_table(pa.table({k: list(v) for k, v in values.items()}), dest / f"{stem}.parquet")
        tasks[stem] = f"pick up the block and place it, take {i}"
    (dest / "tasks.json").write_text(json.dumps(tasks))
    return dest


def replicate_lerobot_v3(dest: Path, n_episodes: int, src: Path = V3_AV1) -> int:
    """`src` replicated to `n_episodes` episodes in `dest`: index and data rows repeated with shifted
    indices and timestamps, the video remuxed once per copy (no re-encode). Returns the frame count."""
    info = json.loads((src / "meta/info.json").read_text())
    episodes, data = pq.read_table(src / EPISODES), pq.read_table(src / DATA)
    per_block = episodes.num_rows
    blocks = -(-n_episodes // per_block)
    keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    block_s = {k: _remux_repeated(src / _video(k), dest / _video(k), blocks) for k in keys}

    source = np.arange(n_episodes) % per_block
    block = np.arange(n_episodes) // per_block
    lengths = episodes["length"].to_numpy()[source]
    ends = np.cumsum(lengths)
    new = episodes.take(pa.array(source))
    changes = {"episode_index": np.arange(n_episodes), "dataset_from_index": ends - lengths, "dataset_to_index": ends}
    for key in keys:
        for edge in ("from_timestamp", "to_timestamp"):
            column = f"videos/{key}/{edge}"
            changes[column] = new[column].to_numpy() + block * block_s[key]
    for name, values in changes.items():
        new = new.set_column(new.schema.get_field_index(name), name, pa.array(values, new.schema.field(name).type))
    _write(new, dest / EPISODES)

    rows = pa.concat_tables([data] * blocks).slice(0, int(ends[-1]))
    row_block = np.repeat(block, lengths)
    episode_index = rows["episode_index"].to_numpy() + row_block * per_block
    rows = rows.set_column(rows.schema.get_field_index("episode_index"), "episode_index", pa.array(episode_index))
    rows = rows.set_column(rows.schema.get_field_index("index"), "index", pa.array(np.arange(rows.num_rows)))
    assert pc.all(pc.equal(rows["episode_index"], pa.array(np.repeat(np.arange(n_episodes), lengths)))).as_py()
    _write(rows, dest / DATA)

    for name in ("tasks.parquet", "stats.json"):
        shutil.copy(src / "meta" / name, dest / "meta" / name)
    info.update(total_episodes=n_episodes, total_frames=int(ends[-1]), splits={"train": f"0:{n_episodes}"})
    (dest / "meta/info.json").write_text(json.dumps(info, indent=4))
    return int(ends[-1])


def _video(key: str) -> Path:
    return Path("videos") / key / "chunk-000" / "file-000.mp4"


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _remux_repeated(src: Path, dest: Path, times: int) -> float:
    """`src`'s video stream `times` times in a row, without re-encoding; returns one copy's seconds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        span, seconds = stream.duration, float(stream.duration * stream.time_base)
    with av.open(str(dest), "w") as out:
        for k in range(times):
            # The muxer takes ownership of each packet, so the input is demuxed afresh per copy.
            with av.open(str(src)) as inp:
                in_stream = inp.streams.video[0]
                if k == 0:
                    out_stream = out.add_stream_from_template(in_stream, opaque=True)
                for packet in inp.demux(in_stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += k * span
                    packet.dts += k * span
                    packet.stream = out_stream
                    out.mux(packet)
    return seconds


def accept_halves(store: Store, pick: str) -> None:
    """Accept every episode of `store` as two subtasks split at its middle frame: `pick`, then "place it"."""
    for m in store.episodes():
        half = m.n_frames // 2
        store.add_revision(Decomposition(
            episode_id=m.episode_id, n_frames=m.n_frames, status=Status.accepted, author="ann",
            subtasks=(Subtask(start_frame=0, end_frame=half, instruction=pick, skill="pick"),
                      Subtask(start_frame=half, end_frame=m.n_frames, instruction="place it", skill="place"))))
