"""openpi's message encoding: msgpack, numpy arrays as `{"__ndarray__": True, "data", "dtype", "shape"}`
and numpy scalars as `{"__npgeneric__": True, "data", "dtype"}` (openpi_client/msgpack_numpy.py),
so openpi's clients and servers read what these functions write."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def _pack(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"cannot send a numpy array of dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _unpack(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_unpack)
