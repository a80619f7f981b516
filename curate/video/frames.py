"""`EpisodeFrames`: the frames of one camera of one episode, wherever they are stored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from atomvla.curate.errors import SourceError
from atomvla.curate.video.index import VideoIndex
from atomvla.curate.video.pool import DecoderPool
from atomvla.curate.video.pyav_decoder import iter_rgb
from atomvla.schemas import CameraRef

HDF5_ITER_CHUNK = 64  # frames per read when iterating an HDF5 camera: large reads, bounded memory


class EpisodeFrames(ABC):
    """Frame i is frame i of the episode (0-based); every array is RGB uint8, (H, W, 3) per frame."""

    def __init__(self, n_frames: int, episode: str | None):
        self.n_frames = n_frames
        self.episode = episode

    def __len__(self) -> int:
        return self.n_frames

    def get(self, i: int) -> np.ndarray:
        """(H, W, 3) frame i."""
        return self.get_many([i])[0]

    def get_many(self, indices: Sequence[int]) -> np.ndarray:
        """(k, H, W, 3) frames at `indices`, in the order given (repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no frame index given")
        bad = idx[(idx < 0) | (idx >= self.n_frames)]
        if bad.size:
            raise IndexError(f"episode {self.episode}: frame {bad[0]} is outside [0, {self.n_frames})")
        return self._read(idx)

    def sample(self, k: int) -> tuple[list[int], np.ndarray]:
        """k frames spread evenly over the episode, first and last included (all if k >= length)."""
        if k < 1:
            raise ValueError(f"cannot sample {k} frames")
        # With k <= n the rounded steps are >= 1 apart, so the indices are distinct.
        indices = np.linspace(0, self.n_frames - 1, min(k, self.n_frames)).round().astype(np.int64)
        return indices.tolist(), self._read(indices)

    @abstractmethod
    def _read(self, indices: np.ndarray) -> np.ndarray:
        """(k, H, W, 3) frames at valid episode `indices` (k,)."""

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Every frame in order, decoded sequentially."""


class VideoFrames(EpisodeFrames):
    """Frames of an episode that starts `ref.from_timestamp` seconds into a video file."""

    def __init__(self, ref: CameraRef, n_frames: int, fps: float, episode: str | None, pool: DecoderPool,
                 use_decord: bool):
        super().__init__(n_frames, episode)
        self.path = ref.path
        self._pool = pool
        self._use_decord = use_decord
        with self._labelled():
            index = pool.pyav(ref.path).index
        # LeRobot stores timestamps as float32: match each frame to the nearest one within half a frame.
        times_s = ref.from_timestamp + np.arange(n_frames) / fps
        self._file_index = index.locate(times_s, tolerance_s=0.5 / fps)  # (n_frames,) file indices
        missing = np.flatnonzero(self._file_index < 0)
        if missing.size:
            i = int(missing[0])
            raise SourceError(
                ref.path,
                f"no video frame at {times_s[i]:.3f}s for frame {i} of {n_frames} "
                f"(the video's {len(index)} frames span {index.time_of(0):.3f}-{index.time_of(len(index) - 1):.3f}s)",
                episode,
            )

    @property
    def file_indices(self) -> np.ndarray:
        """(n_frames,) int64: where each episode frame is in the file (`VideoIndex` positions)."""
        return self._file_index

    @property
    def index(self) -> VideoIndex:
        return self._pool.pyav(self.path).index

    def _read(self, indices: np.ndarray) -> np.ndarray:
        with self._labelled():
            # Single frames (scrubbing) go to PyAV for its frame cache; batches to decord when faster.
            decoder = self._pool.decord(self.path) if self._use_decord and indices.size > 1 else None
            return (decoder or self._pool.pyav(self.path)).read(self._file_index[indices].tolist())

    def __iter__(self) -> Iterator[np.ndarray]:
        with self._labelled():
            index = self._pool.pyav(self.path).index
            yield from iter_rgb(index, self._file_index)

    @contextmanager
    def _labelled(self):
        """Name the episode in errors from the decoders, which only know the file."""
        try:
            yield
        except SourceError as exc:
            if exc.episode is not None or self.episode is None:
                raise
            raise SourceError(exc.file, exc.problem, self.episode) from exc


class HDF5Frames(EpisodeFrames):
    """Frames stored as an (n, H, W, 3) uint8 dataset, possibly upside down (LIBERO)."""

    def __init__(self, ref: CameraRef, n_frames: int, episode: str | None, pool: DecoderPool):
        super().__init__(n_frames, episode)
        if ref.dataset is None:
            raise SourceError(ref.path, f"camera {ref.key!r} names no HDF5 dataset", episode)
        try:
            dataset = pool.hdf5(ref.path)[ref.dataset]
        except KeyError:
            raise SourceError(ref.path, f"no dataset {ref.dataset!r} for camera {ref.key!r}", episode) from None
        except SourceError as exc:
            raise SourceError(exc.file, exc.problem, episode) from exc
        if dataset.ndim != 4 or dataset.shape[3] != 3 or dataset.dtype != np.uint8:
            raise SourceError(
                ref.path,
                f"dataset {ref.dataset!r} is {dataset.dtype}{dataset.shape}, expected uint8 (n, H, W, 3)",
                episode,
            )
        if dataset.shape[0] < n_frames:
            raise SourceError(
                ref.path, f"dataset {ref.dataset!r} has {dataset.shape[0]} frames, the episode has {n_frames}", episode
            )
        self._dataset = dataset
        self._flip = ref.flip_vertical
        self._where = (ref.path, ref.dataset)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        # h5py reads only increasing, distinct indices.
        unique, inverse = np.unique(indices, return_inverse=True)
        return self._read_upright(unique)[inverse]

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, self.n_frames, HDF5_ITER_CHUNK):
            yield from self._read_upright(slice(start, min(start + HDF5_ITER_CHUNK, self.n_frames)))

    def _read_upright(self, selection: np.ndarray | slice) -> np.ndarray:
        """(k, H, W, 3) frames of `selection`, the right way up; a damaged chunk names file, episode and dataset."""
        try:
            frames = self._dataset[selection]
        except OSError as exc:
            path, dataset = self._where
            raise SourceError(path, f"{dataset} cannot be read: {exc}", self.episode) from exc
        return frames[:, ::-1] if self._flip else frames
