"""Named backend settings kept in the store (`profiles` table), e.g. those `atom-annotate calibrate` fits.

A profile is a backend's full frozen config, saved by name; a backend built from it has that
config, so its settings hash (and so the runner's "already proposed" check) follows the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from atomvla.errors import UserError
from atomvla.annotate.backends.base import Backend, BackendConfig, get_backend
from atomvla.annotate import store_tables
from atomvla.curate.store import Store


class ProfileError(UserError, ValueError):
    """A profile is missing, or its settings do not fit the backend's config (any more)."""


@dataclass(frozen=True)
class Profile:
    backend: str
    name: str
    settings: dict[str, Any]
    report: dict[str, Any] | None
    author: str | None
    created_at: str
    weights: bytes | None = None  # a learned backend's fine-tuned weights (safetensors bytes)


def save_profile(
    store: Store, backend: Backend, name: str, report: Mapping[str, Any] | None = None, author: str | None = None,
    weights: bytes | None = None,
) -> None:
    """Save `backend`'s config (and `weights`, if any) as profile `name`, replacing an earlier one of that name."""
    store_tables.save_profile(
        store,
        backend.name, name, backend.config.model_dump(mode="json"), dict(report) if report else None, author, weights
    )


def load_profile(store: Store, backend_name: str, name: str) -> Profile:
    found = store_tables.profile(store, backend_name, name)
    if found is None:
        known = [p["name"] for p in store_tables.profiles(store, backend_name)]
        listed = ", ".join(known) if known else "none; make one with `atom-annotate calibrate`"
        raise ProfileError(f"{store.path}: no {backend_name} profile {name!r} (profiles: {listed})")
    return Profile(**found)


def config_from_profile(
    store: Store, backend_name: str, profile_name: str | None, overrides: Mapping[str, Any] | None = None
) -> BackendConfig:
    """The backend's config: its defaults, or profile `profile_name`, then `overrides` (None values ignored)."""
    cls = get_backend(backend_name)
    settings = dict(load_profile(store, backend_name, profile_name).settings) if profile_name else {}
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls.Config.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f"profile {profile_name!r}" if profile_name else "settings"
        loc = ".".join(map(str, first["loc"]))
        # A model validator's error has no field, and pydantic prefixes its message with "Value error, ".
        msg = first["msg"].removeprefix("Value error, ")
        raise ProfileError(f"{where} for the {backend_name} backend: {f'{loc}: ' if loc else ''}{msg}") from exc


def backend_from_profile(
    store: Store, backend_name: str, profile_name: str | None, overrides: Mapping[str, Any] | None = None
) -> Backend:
    """A ready backend: `get_backend(backend_name)` built with `config_from_profile(...)`.

    A profile's fine-tuned weights (the learned backend's) go to the backend too.
    Raises KeyError for an unknown backend, ProfileError for a missing or unusable profile.
    """
    cls = get_backend(backend_name)
    config = config_from_profile(store, backend_name, profile_name, overrides)
    saved = load_profile(store, backend_name, profile_name) if profile_name else None
    return cls(config) if saved is None or saved.weights is None else with_weights(cls, config, saved)


def with_weights(cls: type[Backend], config: BackendConfig, saved: Profile) -> Backend:
    """The backend of a profile that carries model weights (the learned backend's fine-tuned ones),
    naming the profile and how many accepted episodes it was fitted on in its proposals' provenance."""
    fitted_on = (saved.report or {}).get("n_examples")
    return cls(config, weights=saved.weights, profile=saved.name, learned_from=fitted_on)  # type: ignore[call-arg]
