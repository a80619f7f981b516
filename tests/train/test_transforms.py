"""The transform chain: the outputs chain inverts the inputs chain, resize-with-pad keeps the aspect ratio,
augmentation is seeded per draw, missing cameras are masked out of attention, the dataset and the
policy feed the model identically; and the model ingredients it feeds (prefix-LM mask, Beta flow time)."""

import dataclasses

import numpy as np
import pytest
import torch

from atomvla.train.assemble import make_model, make_processor
from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.data.normalize import Stats
from atomvla.train.data.samples import ChunkDataset
from atomvla.train.data.transforms import ActionOutputs, AugmentImages, input_chain, resize_images
from atomvla.train.models.backbone import load_tokenizer
from atomvla.train.models.vla import attention_allowed

CAMERA = "observation.images.corner"
DELTA = ("data.delta_action_dims=[0,1,2]", "data.max_state_dim=8", "data.max_action_dim=8")


@pytest.fixture(scope="module")
def episodes(export_dir):
    return open_dataset(export_dir)


def test_the_outputs_chain_gives_back_the_actions_the_inputs_chain_took(episodes):
    cfg = get_config("tiny-cpu", DELTA)
    stats = Stats.compute(episodes, "observation.state", "action", cfg.data.delta_action_dims, cfg.data.horizon)
    ds = ChunkDataset(episodes, cfg.data, stats, (CAMERA,))
    raw, model_side = ds.raw(40), ds.sample(40)
    assert model_side.state.shape == (8,) and model_side.actions.shape == (4, 8)
    assert (model_side.actions[:, 4:] == 0).all() and (model_side.state[4:] == 0).all()  # padding
    # The model's chunk back in the robot's units: delta dims made absolute again, padding dropped.
    outputs = ActionOutputs.of(cfg.data, stats)
    back = outputs(model_side.actions[None], raw.state[None])[0]
    np.testing.assert_allclose(back, raw.actions, atol=1e-5)
    on_device = outputs(torch.tensor(model_side.actions[None]), torch.tensor(raw.state[None]))[0]
    np.testing.assert_allclose(on_device.numpy(), raw.actions, atol=1e-5)
    # Statistics describe the actions as the model sees them (relative to the state on the delta dims).
    relative = np.concatenate([e.array("action")[:, :3] - e.array("observation.state")[:, :3] for e in episodes])
    assert abs(stats.action.mean[0] - relative[:, 0].mean()) < 0.5 * relative[:, 0].std()


def test_resize_with_pad_keeps_the_aspect_ratio_and_stretch_does_not():
    image = np.full((1, 32, 64, 3), 200, np.uint8)  # wide
    padded, stretched = resize_images(image, 64, pad=True), resize_images(image, 64, pad=False)
    assert padded.shape == stretched.shape == (1, 64, 64, 3)
    assert (padded[0, :16] == 0).all() and (padded[0, 48:] == 0).all() and (padded[0, 16:48] == 200).all()
    assert (stretched == 200).all()


def test_augmentation_is_seeded_per_draw_and_only_in_training(episodes):
    cfg = get_config("tiny-cpu", ("data.augment=true",))
    stats = Stats.compute(episodes, "observation.state", "action")
    train = ChunkDataset(episodes, cfg.data, stats, (CAMERA,), train=True)
    plain = ChunkDataset(episodes, cfg.data, stats, (CAMERA,))
    n = len(train)
    a, again, next_epoch = train.sample(7), train.sample(7), train.sample(7 + n)
    assert np.array_equal(a.images, again.images)  # a resumed run augments as the first did
    assert not np.array_equal(a.images, next_epoch.images)  # each epoch differently
    clean = plain.sample(7)
    assert not np.array_equal(a.images, clean.images)
    assert np.array_equal(clean.images, resize_images(plain.raw(7).images, 64, True))
    np.testing.assert_array_equal(a.actions, clean.actions)  # images only
    # A photometric-only augmentation keeps the geometry: with no crop/rotation, brightness etc. move
    # the mean but an image's darkest and brightest places stay put.
    aug = AugmentImages(crop=1.0, degrees=0.0)
    img = np.zeros((1, 64, 64, 3), np.uint8)
    img[0, 10:20, 10:20] = 255
    out = aug.augment(img, torch.Generator().manual_seed(0))
    assert out[0, 15, 15].mean() > out[0, 40, 40].mean()


def test_a_missing_camera_is_masked_out_of_the_vlm_and_the_head(episodes):
    cfg = get_config("tiny-cpu", (f"data.cameras=[{CAMERA},{CAMERA}]", "data.camera_dropout=1.0", "data.augment=false"))
    stats = Stats.compute(episodes, "observation.state", "action")
    tokenizer = load_tokenizer(cfg.backbone)
    proc = make_processor(cfg, tokenizer, ("pick", "place"))
    ds = ChunkDataset(episodes, cfg.data, stats, (CAMERA, CAMERA), proc, train=True)
    s = ds.sample(3)
    assert s.image_mask.sum() == 1  # dropout 1.0 still keeps one camera
    dropped = int(np.flatnonzero(~s.image_mask)[0])
    assert (s.images[dropped] == 0).all()
    item = proc(s)
    image_tokens = item["input_ids"] == proc.image_token
    assert image_tokens.sum() == 2 * (~item["visible"]).sum()  # one camera's tokens of two are hidden
    assert not item["visible"][~image_tokens].logical_not().any()
    # The model: hidden keys change no visible token's hidden state; the head's context excludes them.
    torch.manual_seed(0)
    model = make_model(cfg, tokenizer, stats, proc.skills).eval()
    batch = proc.collate([item])
    ctx, mask = model.context(batch)
    assert torch.equal(mask[0], item["visible"])
    other = batch["pixel_values"].clone()
    n = len(other) // 2
    other[slice(0, n) if dropped == 0 else slice(n, None)] = torch.randn(n, other.shape[1])
    ctx2, _ = model.context({**batch, "pixel_values": other})
    assert torch.allclose(ctx[:, :, mask[0]], ctx2[:, :, mask[0]], atol=1e-5)


def test_the_dataset_and_the_policy_feed_the_model_the_same_inputs(episodes, tmp_path):
    from atomvla.train.assemble import Trained
    from atomvla.train.policy import Policy

    cfg = get_config("tiny-cpu", DELTA)
    stats = Stats.compute(episodes, "observation.state", "action", cfg.data.delta_action_dims, cfg.data.horizon)
    tokenizer = load_tokenizer(cfg.backbone)
    proc = make_processor(cfg, tokenizer, ("pick", "place"))
    model = make_model(cfg, tokenizer, stats, proc.skills)
    policy = Policy(Trained(tmp_path, cfg, model, proc, stats, {"skills": ["pick", "place"], "cameras": [CAMERA]}))
    ds = ChunkDataset(episodes, cfg.data, stats, (CAMERA,), proc)
    raw = ds.raw(50)
    observation = {"images": {CAMERA: raw.images[0]}, "state": raw.state, "task": raw.task}
    from_policy = policy._batch([policy.observation_sample(observation)], [proc.subtask_ids(raw.skill, raw.subtask)])
    from_data = proc.collate([ds[50]])
    for key in ("input_ids", "pixel_values", "image_grid_thw", "state", "visible", "suffix_mask"):
        assert torch.equal(from_policy[key], from_data[key]), key
    with pytest.raises(KeyError, match="observation has no camera"):
        policy.observation_sample({"images": {}, "state": raw.state, "task": raw.task})


def test_prefix_lm_attention_is_bidirectional_over_the_prompt_and_causal_over_the_subtask():
    real = torch.tensor([[True, True, True, True, False]])  # 3 prompt tokens, 1 subtask token, 1 pad
    suffix = torch.tensor([[False, False, False, True, False]])
    prefix = attention_allowed(real, suffix, prefix_lm=True)[0, 0]
    causal = attention_allowed(real, suffix, prefix_lm=False)[0, 0]
    assert prefix[0, :3].all() and not prefix[0, 3]  # a prompt token sees the whole prompt, not the subtask
    assert prefix[3, :4].all()  # the subtask sees the prompt and itself
    assert not prefix[:4, 4].any() and not causal[:4, 4].any()  # nobody sees padding (but itself)
    assert causal[0, 0] and not causal[0, 1:].any()  # causal: only what came before
    assert torch.equal(causal[3, :4], torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("sampling, mean", [("beta", 0.4), ("uniform", 0.5)])
def test_flow_time_follows_pi0s_beta_or_is_uniform(episodes, sampling, mean):
    cfg = get_config("tiny-cpu", (f"head.time_sampling={sampling}",))
    stats = Stats.compute(episodes, "observation.state", "action")
    model = make_model(cfg, load_tokenizer(cfg.backbone), stats, ("pick",))
    s = model.head.flow_time(40_000, torch.Generator().manual_seed(0), "cpu", torch.float32)
    # pi0: noise level 1 - s ~ Beta(1.5, 1) (mean 0.6), scaled into [0.001, 1].
    assert abs(float(s.mean()) - mean) < 0.01 and 0 <= float(s.min()) and float(s.max()) < 1


def test_inputs_chain_order_is_delta_normalise_pad_resize_then_random_ones():
    cfg = get_config("tiny-cpu", (*DELTA, "data.camera_dropout=0.1", "data.augment=true"))
    names = [type(t).__name__ for t in input_chain(cfg.data, None, train=True).transforms]
    assert names == ["DeltaActions", "Normalize", "PadDims", "ResizeImages", "DropCameras", "AugmentImages"]
    plain = [type(t).__name__ for t in input_chain(dataclasses.replace(cfg.data, delta_action_dims=()), None).transforms]
    assert plain == ["Normalize", "PadDims", "ResizeImages"]
