"""Pretraining options of the boundary network (train.TrainConfig): what dropping the heuristic's
event channels and drawing tasks equally do to what the network is trained on."""

from dataclasses import replace

import numpy as np
import pytest
from test_learned import TINY, episode

from atomvla.annotate.learned.data import features_for, make_sample
from atomvla.annotate.learned.features import EVENT_CHANNELS
from atomvla.annotate.learned.train import TrainConfig, _batch, _task_weights


@pytest.fixture(scope="module")
def samples():
    pairs = [episode(s) for s in range(3)]
    return [make_sample(features_for(TINY.channels, e), t, task=f"task{i % 2}", source="synthetic") for i, (e, t) in enumerate(pairs)]


def test_a_dropped_sample_loses_its_event_channels_and_keeps_every_other(samples):
    events = [i for i, c in enumerate(TINY.channels) if c in EVENT_CHANNELS]
    others = [i for i in range(len(TINY.channels)) if i not in events]
    kept = _batch(samples, np.random.default_rng(0), TrainConfig()).x.numpy()
    dropped = _batch(samples, np.random.default_rng(0), TrainConfig(drop_events=1.0), events).x.numpy()
    assert np.abs(kept[..., events]).sum() > 0  # the synthetic episodes have events to lose
    assert np.all(dropped[..., events] == 0)
    np.testing.assert_array_equal(dropped[..., others], kept[..., others])
    # a chance of one half drops some samples of a batch and not others
    half = _batch(samples * 4, np.random.default_rng(0), TrainConfig(drop_events=0.5), events).x.numpy()
    lost = [bool(np.all(x[..., events] == 0)) for x in half]
    assert 0 < sum(lost) < len(lost)
    assert samples[0].features.x[:, events].any()  # the samples themselves are untouched


def test_balanced_draws_give_every_source_task_the_same_share_whatever_its_episode_count(samples):
    many = [replace(samples[0], task="common")] * 9 + [replace(samples[1], task="rare")]
    weights = _task_weights(many)
    assert weights[:9].sum() == pytest.approx(0.5) and weights[9] == pytest.approx(0.5)
    # the same task from another source is another share
    mixed = [replace(samples[0], task="a", source="scripted")] * 3 + [replace(samples[0], task="a", source="human")]
    np.testing.assert_allclose(_task_weights(mixed), [1 / 6, 1 / 6, 1 / 6, 1 / 2])

