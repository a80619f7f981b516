"""Profiles: named backend settings saved in the store and turned back into a backend."""

import pytest

from atomvla.annotate import store_tables as annotate_tables
from atomvla.annotate.backends import get_backend
from atomvla.annotate.profiles import ProfileError, backend_from_profile, load_profile, save_profile
from atomvla.curate.store import Store


def test_a_saved_profile_rebuilds_the_backend_with_its_settings_and_a_new_hash(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    cls = get_backend("heuristic")
    tuned = cls(cls.Config(window_s=0.5))
    save_profile(store, tuned, "team-a", {"f1_before": 0.4, "f1_after": 0.9}, "ann")
    rebuilt = backend_from_profile(store, "heuristic", "team-a")
    assert rebuilt.config == tuned.config
    assert rebuilt.settings_hash == tuned.settings_hash != backend_from_profile(store, "heuristic", None).settings_hash
    assert load_profile(store, "heuristic", "team-a").report == {"f1_before": 0.4, "f1_after": 0.9}
    # overrides win over the profile; None means "not given"
    assert backend_from_profile(store, "heuristic", "team-a", {"window_s": 0.2, "gripper_dim": None}).config.window_s == 0.2
    # saving again under the same name replaces it
    save_profile(store, cls(cls.Config(window_s=0.4)), "team-a")
    assert backend_from_profile(store, "heuristic", "team-a").config.window_s == 0.4


def test_missing_or_unusable_profiles_are_named(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(ProfileError, match="no heuristic profile 'nope' \\(profiles: none; make one with"):
        backend_from_profile(store, "heuristic", "nope")
    annotate_tables.save_profile(store, "heuristic", "old", {"no_such_setting": 1})
    with pytest.raises(ProfileError, match="profile 'old' for the heuristic backend: no_such_setting"):
        backend_from_profile(store, "heuristic", "old")
    with pytest.raises(KeyError, match="unknown backend"):
        backend_from_profile(store, "nope", None)
