import pytest

from atomvla.annotate.backends import get_backend
from atomvla.annotate.overrides import OverrideError, merge, parse_overrides, settings_rows


def test_key_value_settings_parse_to_what_the_config_validates():
    heuristic = get_backend("heuristic").Config
    given = parse_overrides("heuristic", heuristic, ["window_s=0.4", "ee_dims=[0,1,2]", "arms=none", "pick_end=closed"])
    assert given == {"window_s": "0.4", "ee_dims": ["0", "1", "2"], "arms": None, "pick_end": "closed"}
    config = heuristic.model_validate(given)
    assert (config.window_s, config.ee_dims, config.pick_end) == (0.4, (0, 1, 2), "closed")


def test_dotted_keys_set_a_hybrid_part_s_settings_over_a_profile_s():
    hybrid = get_backend("hybrid").Config
    given = parse_overrides("hybrid", hybrid, ["language=openai", "language_settings.frames=8"])
    profile = {"language": "heuristic", "language_settings": {"frames": 4, "detail": "high"}, "snap_s": 0.0}
    assert merge(profile, given) == {
        "language": "openai", "language_settings": {"frames": "8", "detail": "high"}, "snap_s": 0.0,
    }


@pytest.mark.parametrize(("item", "message"), [
    ("frames", "setting 'frames' is not key=value"),
    ("=3", "is not key=value"),
    ("window_s.x=1", "'window_s' is a value, not a group of settings"),
    ("windows=1", "has no setting 'windows'; did you mean window_s?"),
])
def test_malformed_or_unknown_settings_are_one_line(item, message):
    with pytest.raises(OverrideError, match=message.replace("?", r"\?")):
        parse_overrides("heuristic", get_backend("heuristic").Config, [item])


def test_the_listing_shows_how_to_write_each_value():
    rows = {name: (kind, default) for name, kind, default, _ in settings_rows(get_backend("heuristic").Config)}
    assert rows["pick_end"] == ("closed|moved|lifted", "moved")
    assert rows["ee_dims"] == ("list of int (a,b) or none", "none")


def test_a_part_setting_written_as_text_hashes_like_the_typed_value():
    hybrid = get_backend("hybrid")
    text = hybrid(hybrid.Config.model_validate(parse_overrides("hybrid", hybrid.Config, ["language_settings.window_s=0.4"])))
    typed = hybrid(hybrid.Config(language_settings={"window_s": 0.4}))
    assert text.config.language_settings == {"window_s": 0.4} and text.settings_hash == typed.settings_hash
