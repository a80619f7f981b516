"""LIBERO and robomimic HDF5: one file per task (or a folder of them), `data/demo_<i>` groups.

Each demo holds `actions`, low-dimensional observations under `obs/` and camera images under
`obs/` as (n, H, W, 3) uint8 datasets. Episodes are numbered across the files in name order. A
file's task instruction: `<stem>.txt` beside it, else LIBERO's `problem_info`, else the file name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from atomvla.curate.errors import SourceError
from atomvla.curate.sources.base import Reader, register
from atomvla.curate.sources.naming import dataset_name, folder_rate, natural_key, numbered_names
from atomvla.schemas import CameraRef, EpisodeMeta

_SUFFIXES = (".hdf5", ".h5")
_DEMO = re.compile(r"^demo_(\d+)$")
_DEFAULT_FPS = 20.0  # what LIBERO and robomimic record at when env_args does not say
_IMAGE_SUFFIXES = ("_rgb", "_image")
_ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]  # robosuite OSC_POSE deltas
# Dimension names of the low-dim observations the two formats write, so that a segmenter can find
# the end effector and the gripper. LIBERO's ee_states are position + axis-angle.
_OBS_NAMES = {
    "ee_states": ["ee_x", "ee_y", "ee_z", "ee_ax", "ee_ay", "ee_az"],
    "ee_pos": ["ee_x", "ee_y", "ee_z"],
    "ee_ori": ["ee_ax", "ee_ay", "ee_az"],
    "gripper_states": ["gripper_0", "gripper_1"],
    "joint_states": [f"joint_{i}" for i in range(7)],
    "robot0_eef_pos": ["ee_x", "ee_y", "ee_z"],
    "robot0_eef_quat": ["ee_qx", "ee_qy", "ee_qz", "ee_qw"],
    "robot0_gripper_qpos": ["gripper_0", "gripper_1"],
    "robot0_joint_pos": [f"joint_{i}" for i in range(7)],
}
# `observation.state` as LeRobot conversions of these datasets build it: end effector, then gripper.
_STATE_PARTS = (("ee_states", "gripper_states"), ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"))


@register
class HDF5Reader(Reader):
    name = "hdf5"

    @classmethod
    def detect(cls, root: Path) -> bool:
        if root.is_file():
            return root.suffix.lower() in _SUFFIXES
        return root.is_dir() and any(p.suffix.lower() in _SUFFIXES for p in root.iterdir())

    def scan(self) -> Iterator[EpisodeMeta | SourceError]:
        files = [self.root] if self.root.is_file() else self._files()
        dataset = dataset_name(self.root, self.source)
        # A file that cannot be read is a problem of the whole source: every file is opened before
        # the first episode, so an import stops before it stores the episodes of the files before it.
        tasks = {}
        for file in files:
            with _open(file) as h5:
                data = _data(h5, file)
                tasks[file] = _task(data, file), _fps(data)
        # One dataset has one frame rate (see folder_rate); a file at another rate gives bad episodes.
        rate = folder_rate(fps for _, fps in tasks.values())
        index = 0
        for file in files:
            task, fps = tasks[file]
            with _open(file) as h5:
                data = _data(h5, file)
                for demo in sorted((k for k in data if _DEMO.match(k)), key=natural_key):
                    try:
                        if fps != rate:
                            raise SourceError(
                                file,
                                f"{data[demo].name.lstrip('/')} runs at {fps:g} fps, most of the folder's files at "
                                f"{rate:g} fps: one dataset has one frame rate (import this file on its own)",
                                index,
                            )
                        yield self._meta(data[demo], file, index, dataset, task, fps)
                    except SourceError as exc:
                        yield exc
                    index += 1

    def load_arrays(self, meta: EpisodeMeta) -> dict[str, np.ndarray]:
        with _open(Path(str(meta.locator["file"]))) as h5:
            demo = h5[str(meta.locator["group"])]
            return {
                name: np.concatenate([_read(demo, p, meta) for p in paths], axis=1).astype(np.float32)
                for name, paths in _array_paths(demo).items()
            }

    def _files(self) -> list[Path]:
        return sorted(
            (p for p in self.root.iterdir() if p.suffix.lower() in _SUFFIXES), key=lambda p: natural_key(p.name)
        )

    def _meta(self, demo: h5py.Group, file: Path, index: int, dataset: str, task: str, fps: float) -> EpisodeMeta:
        actions = demo.get("actions")
        if not isinstance(actions, h5py.Dataset):
            raise SourceError(file, f"{demo.name} has no 'actions' dataset", index)
        n_frames = actions.shape[0]
        if n_frames == 0:
            raise SourceError(file, f"{demo.name} has zero frames", index)
        obs = demo.get("obs")
        images = [k for k, d in obs.items() if _is_image(d)] if isinstance(obs, h5py.Group) else []
        if not images:
            raise SourceError(file, f"{demo.name} has no camera images (obs/*_rgb or obs/*_image)", index)
        paths = _array_paths(demo)
        for path in [p for ps in paths.values() for p in ps] + [f"obs/{k}" for k in images]:
            if demo[path].shape[0] != n_frames:
                raise SourceError(
                    file, f"{demo.name}/{path} has {demo[path].shape[0]} frames, actions have {n_frames}", index
                )
        names = {name: [n for p in ps for n in _dim_names(p, demo[p].shape)] for name, ps in paths.items()}
        cameras = tuple(
            CameraRef(
                key=f"observation.images.{_camera_name(k)}",
                kind="hdf5",
                path=str(file),
                dataset=f"{demo.name.lstrip('/')}/obs/{k}",
                # robosuite (under LIBERO and robomimic) renders with OpenGL's bottom-left origin.
                flip_vertical=True,
                height=obs[k].shape[1],
                width=obs[k].shape[2],
            )
            for k in images
        )
        return self.episode_meta(
            dataset,
            index,
            fps=fps,
            n_frames=n_frames,
            task=task,
            cameras=cameras,
            feature_names=names,
            locator={"file": str(file), "group": demo.name.lstrip("/")},
        )


def _open(file: Path) -> h5py.File:
    try:
        return h5py.File(file, "r")
    except OSError as exc:
        raise SourceError(file, f"cannot be opened as HDF5: {exc}") from exc


def _data(h5: h5py.File, file: Path) -> h5py.Group:
    data = h5.get("data")
    if not isinstance(data, h5py.Group):
        raise SourceError(file, "no 'data' group: not a LIBERO / robomimic file")
    return data


def _read(demo: h5py.Group, path: str, meta: EpisodeMeta) -> np.ndarray:
    """(n_frames, d) of one dataset; a damaged chunk (the file opens, a chunk does not inflate) is a
    SourceError naming the file, the episode and the dataset."""
    try:
        return demo[path][:].reshape(meta.n_frames, -1)
    except OSError as exc:
        raise SourceError(demo.file.filename, f"{demo.name.lstrip('/')}/{path} cannot be read: {exc}", meta.episode_index) from exc


def _array_paths(demo: h5py.Group) -> dict[str, list[str]]:
    """Array name -> the HDF5 datasets (relative to the demo) concatenated to make it.

    The simulator's `states`, `rewards` and `dones` are left out: they are not robot signals; so are
    depth maps and masks ((n, H, W) or (n, H, W, 1)): images, not per-frame vectors.
    """
    obs = demo.get("obs")
    low_dim = [k for k, d in obs.items() if isinstance(d, h5py.Dataset) and d.ndim <= 2] if obs else []
    paths = {"action": ["actions"]}
    state = next((parts for parts in _STATE_PARTS if all(p in low_dim for p in parts)), None)
    if state:
        paths["observation.state"] = [f"obs/{p}" for p in state]
    if "robot_states" in demo:
        paths["observation.robot_states"] = ["robot_states"]
    paths.update({f"observation.{k}": [f"obs/{k}"] for k in low_dim})
    return paths


def _dim_names(path: str, shape: tuple[int, ...]) -> list[str]:
    key = path.rsplit("/", 1)[-1]
    dim = int(np.prod(shape[1:]))
    known = _ACTION_NAMES if key == "actions" else _OBS_NAMES.get(key)
    return list(known) if known and len(known) == dim else numbered_names(key, dim)


def _is_image(data: Any) -> bool:
    return isinstance(data, h5py.Dataset) and data.ndim == 4 and data.shape[-1] == 3


def _camera_name(key: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _json_attr(data: h5py.Group, name: str) -> dict[str, Any]:
    raw = data.attrs.get(name)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SourceError(data.file.filename, f"data.attrs['{name}'] is not valid JSON: {exc}") from exc
    return value if isinstance(value, dict) else {}


def _task(data: h5py.Group, file: Path) -> str:
    """`<stem>.txt` beside the file (robomimic files hold no instruction, and its own file names,
    `image_v141.hdf5`, do not name the task); else LIBERO's language instruction; else the file name."""
    written = file.with_suffix(".txt")
    if written.is_file():
        text = written.read_text().strip()
        if not text:
            raise SourceError(written, "the instruction file is empty")
        return text
    instruction = _json_attr(data, "problem_info").get("language_instruction")
    return str(instruction).strip() if instruction else file.stem.replace("_", " ")


def _fps(data: h5py.Group) -> float:
    control_freq = _json_attr(data, "env_args").get("env_kwargs", {}).get("control_freq")
    return float(control_freq) if control_freq else _DEFAULT_FPS
