"""Decomposition backends; importing this package registers the built-in ones."""

from atomvla.annotate.backends import heuristic  # noqa: F401  (registers `heuristic`)
from atomvla.annotate.backends import openai_backend  # noqa: F401  (registers `openai`)
from atomvla.annotate.backends import uvd  # noqa: F401  (registers `uvd`)
from atomvla.annotate.backends import hybrid  # noqa: F401  (registers `hybrid`)
from atomvla.annotate.backends import internvideo  # noqa: F401  (registers `internvideo`)
from atomvla.annotate.backends.base import BACKENDS, Backend, BackendConfig, BackendError, get_backend, register

__all__ = ["BACKENDS", "Backend", "BackendConfig", "BackendError", "get_backend", "register"]
