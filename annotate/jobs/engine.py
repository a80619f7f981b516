"""Build the backend a command runs: its class, a saved profile, flag overrides, and for a paid API
the key variable, the response cache next to the store and the retry policy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atomvla.errors import UserError
from atomvla.annotate.backends.base import Backend, get_backend
from atomvla.annotate.backends.hybrid import HybridBackend
from atomvla.annotate.backends.openai_backend import OpenAIBackend
from atomvla.annotate.jobs.cache import ResponseCache
from atomvla.annotate.jobs.retry import RetryPolicy
from atomvla.annotate.profiles import config_from_profile
from atomvla.curate.store import Store


class SettingsError(UserError, ValueError):
    """A flag that does not apply to the chosen backend."""


def build_engine(
    store: Store,
    backend: str,
    profile: str | None,
    overrides: Mapping[str, Any],
    *,
    flags: Mapping[str, str] | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    retry: RetryPolicy = RetryPolicy(),
    cache: bool = True,
) -> Backend:
    """The backend, configured. `overrides` maps config fields to flag values (None: not given);
    `flags` names the flag of each field, for the error when one does not apply.

    Raises KeyError (unknown backend), ProfileError, or SettingsError.
    """
    cls = get_backend(backend)
    given = {k: v for k, v in overrides.items() if v is not None}
    foreign = [k for k in given if k not in cls.Config.model_fields]
    if foreign:
        names = ", ".join((flags or {}).get(k, k) for k in foreign)
        raise SettingsError(f"{names} does not apply to the {backend} backend")
    config = config_from_profile(store, backend, profile, given)
    responses = ResponseCache.beside(Path(store.path)) if cache else None

    def instantiate(cls: type[Backend], config: Any) -> Backend:
        if issubclass(cls, OpenAIBackend):
            return cls(config, api_key_env=api_key_env, cache=responses, retry=retry)
        if issubclass(cls, HybridBackend):
            # Its parts get the same wiring, so a paid part is cached and its key checked up front.
            def make_part(name: str, settings: dict[str, Any]) -> Backend:
                part = get_backend(name)
                return instantiate(part, part.Config(**settings))

            return cls(config, make_part=make_part)
        return cls(config)

    return instantiate(cls, config)
