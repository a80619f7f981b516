import pytest

from atomvla.train.config import ConfigError, get_config


def test_overrides_reach_nested_fields_with_their_types():
    cfg = get_config("tiny-cpu", ["head.moe=true", "train.lr=3e-4", "data.cameras=[a, b]", "data.horizon=8"])
    assert cfg.head.moe is True and cfg.train.lr == 3e-4
    assert cfg.data.cameras == ("a", "b") and cfg.data.horizon == 8
    assert get_config("tiny-cpu").head.moe is False  # the registered config is untouched


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("tiny-cpo", [], "did you mean tiny-cpu"),
        ("tiny-cpu", ["head.moee=1"], "did you mean moe"),
        ("tiny-cpu", ["train.lr=fast"], "'fast' is not a number"),
        ("tiny-cpu", ["train.max_steps=abc"], "'abc' is not an integer"),
        ("tiny-cpu", ["train.mixed_precision=fp8"], "choose one of no, bf16"),
        ("tiny-cpu", ["train.lr"], "not key=value"),
        # Values the loop cannot run: a division by zero, or a run that trains nothing and says nothing.
        ("tiny-cpu", ["train.batch_size=0"], "'train.batch_size': train.batch_size must be at least 1, not 0"),
        ("tiny-cpu", ["train.max_steps=-5"], "train.max_steps must be at least 1, not -5"),
        ("tiny-cpu", ["train.lr=0"], "train.lr must be above 0"),
    ],
)
def test_bad_names_and_overrides_say_what_to_do(name, overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config(name, overrides)
