"""Readers: LeRobot v3.0 / v2.1, LIBERO / robomimic HDF5, folders of videos, registered in `READERS`
(each reader module is imported on the first lookup)."""

from atomvla.curate.sources.base import READERS, Reader, detect_format, open_source, register

__all__ = ["READERS", "Reader", "detect_format", "open_source", "register"]
