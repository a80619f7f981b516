"""The cache of open decoders, keyed by file, so scrubbing and repeated reads never reopen a file."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py

from atomvla.curate.errors import SourceError
from atomvla.curate.video.decord_decoder import DecordDecoder
from atomvla.curate.video.frame_cache import FrameCache
from atomvla.curate.video.pyav_decoder import PyAVDecoder


FileVersion = tuple[str, int, int]


def file_version(path: str | Path) -> FileVersion:
    """Path, mtime and size: a file rewritten in place (a re-export) gets a fresh decoder."""
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        raise SourceError(path, "file does not exist") from None
    return str(path), stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class CacheInfo:
    opens: int  # files opened (decoders created): a reused decoder does not count
    reuses: int  # requests served by an already open decoder
    open_decoders: int
    frame_cache_bytes: int
    frame_cache_hits: int
    frame_cache_misses: int


class DecoderPool:
    """LRU of open decoders. An evicted decoder is only dropped from the pool: a caller still using
    it keeps it alive, and the file closes when the last reference goes."""

    def __init__(self, max_open: int, frame_cache_bytes: int):
        self.max_open = max_open
        self.frames = FrameCache(frame_cache_bytes)
        # One thread decodes ahead for every decoder: background work never outgrows one core.
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead")
        self._open: OrderedDict[tuple[str, FileVersion], object] = OrderedDict()
        self._decord_readable: dict[FileVersion, bool] = {}  # probed once per file
        self._lock = threading.Lock()
        self._opens = 0
        self._reuses = 0

    def pyav(self, path: str | Path) -> PyAVDecoder:
        return self._get("pyav", str(path), lambda p: PyAVDecoder(p, self.frames, file_version(p), self._background))

    def decord(self, path: str | Path) -> DecordDecoder | None:
        """decord's decoder for the file, or None where decord cannot decode it."""
        if self._decord_readable.get(file_version(path)) is False:
            return None
        index = self.pyav(path).index
        decoder = self._get("decord", path, lambda p: DecordDecoder.probe(index))
        self._decord_readable[file_version(path)] = decoder is not None
        return decoder

    def hdf5(self, path: str | Path) -> h5py.File:
        def open_h5(p: str) -> h5py.File:
            try:
                return h5py.File(p, "r")
            except OSError as exc:
                raise SourceError(p, f"cannot open HDF5 file: {exc}") from exc

        return self._get("hdf5", str(path), open_h5)

    def wait_background(self) -> None:
        """Return once the decoding ahead requested so far is done (benchmarks and tests)."""
        self._background.submit(lambda: None).result()

    def info(self) -> CacheInfo:
        return CacheInfo(
            opens=self._opens,
            reuses=self._reuses,
            open_decoders=len(self._open),
            frame_cache_bytes=self.frames.nbytes,
            frame_cache_hits=self.frames.hits,
            frame_cache_misses=self.frames.misses,
        )

    def _get(self, kind: str, path: str, open_fn):
        key = (kind, file_version(path))
        with self._lock:
            if key in self._open:
                self._open.move_to_end(key)
                self._reuses += 1
                return self._open[key]
            decoder = open_fn(path)
            self._opens += 1
            if decoder is not None:
                self._open[key] = decoder
                while len(self._open) > self.max_open:
                    self._open.popitem(last=False)
            return decoder
