"""Readers: LeRobot v3.0 / v2.1, LIBERO / robomimic HDF5, folders of videos. Importing registers them."""

from atomvla.curate.sources import hdf5, lerobot_v3, lerobot_v21, video_folder  # noqa: F401  (register)
from atomvla.curate.sources.base import READERS, Reader, detect_format, open_source, register

__all__ = ["READERS", "Reader", "detect_format", "open_source", "register"]
