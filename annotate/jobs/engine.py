"""Build the backend a command runs: its class, a saved profile, `key=value` settings, and for a
paid API the key variable, the response cache next to the store and the retry policy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atomvla.annotate.backends.base import Backend, get_backend
from atomvla.annotate.backends.hybrid import HybridBackend
from atomvla.annotate.backends.openai_backend import OpenAIBackend
from atomvla.annotate.client.cache import ResponseCache
from atomvla.annotate.client.retry import RetryPolicy
from atomvla.annotate.overrides import merge, parse_overrides
from atomvla.annotate.profiles import config_from_profile, load_profile, with_weights
from atomvla.curate.store import Store


def build_engine(
    store: Store,
    backend: str,
    profile: str | None = None,
    settings: Sequence[str] = (),
    *,
    api_key_env: str = "OPENAI_API_KEY",
    retry: RetryPolicy = RetryPolicy(),
    cache: bool = True,
    prepare: bool = True,
) -> Backend:
    """The backend, configured from its defaults, then profile `profile` (with the model weights
    it carries, if any), then `settings` (`key=value` items); `prepare` loads what every episode needs (key, model), so a missing one
    stops the command before any work.

    Raises UserErrors: an unknown backend, a missing or unusable profile, a bad setting, a setup
    problem.
    """
    cls = get_backend(backend)
    given = parse_overrides(backend, cls.Config, settings)
    saved = load_profile(store, backend, profile) if profile else None
    base = dict(saved.settings) if saved else {}
    config = config_from_profile(store, backend, None, merge(base, given))
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

    # A profile's fine-tuned weights (the learned backend's) go to the backend it configures.
    engine = instantiate(cls, config) if saved is None or saved.weights is None else with_weights(cls, config, saved)
    if prepare:
        engine.prepare()
    return engine
