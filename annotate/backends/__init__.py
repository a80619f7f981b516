"""Decomposition backends, registered in `BACKENDS` (each backend module is imported on the first lookup)."""

from atomvla.annotate.backends.base import BACKENDS, Backend, BackendConfig, BackendError, get_backend, register

__all__ = ["BACKENDS", "Backend", "BackendConfig", "BackendError", "get_backend", "register"]
