"""Backbones outside the Qwen-VL family: tiny random LLaVA, Idefics3 (SmolVLM's architecture) and
Gemma 3 models saved to folders with their own processors and a byte-level tokenizer made here,
loaded by path through `AutoModelForImageTextToText` / `AutoProcessor` like Hub models. SFT trains
the LLaVA one and the policy built from its checkpoint generates a subtask and an action chunk."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from atomvla.train.assemble import load_trained, make_processor
from atomvla.train.config import get_config
from atomvla.train.data.episodes import open_dataset
from atomvla.train.data.samples import ChunkDataset, Sample
from atomvla.train.models.generic_vlm import HFVLAProcessor
from atomvla.train.models.vla import VLA
from atomvla.train.policy import load_policy
from atomvla.train.sft import train_sft

IMAGE, PATCH = 32, 8
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=IMAGE,
              patch_size=PATCH)
SIZE = {"height": IMAGE, "width": IMAGE}
NORM = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3)


def byte_tokenizer(specials: list[str], named: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges, `<pad> <s> </s>` and the model's image tokens."""
    specials = ["<pad>", "<s>", "</s>", *specials]
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    vocab |= {s: len(vocab) + i for i, s in enumerate(specials)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   extra_special_tokens=named or {"image_token": "<image>"})


def llava(folder: Path) -> int:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tok = byte_tokenizer(["<image>"])
    images = LlavaImageProcessorPil(size=SIZE, crop_size=SIZE, **NORM)
    LlavaProcessor(images, tok, patch_size=PATCH, vision_feature_select_strategy="full").save_pretrained(folder)
    config = LlavaConfig(
        text_config=dict(model_type="llama", vocab_size=len(tok), **TEXT, pad_token_id=tok.pad_token_id),
        vision_config=dict(model_type="siglip_vision_model", **VISION), vision_feature_select_strategy="full",
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    return (IMAGE // PATCH) ** 2


def idefics3(folder: Path) -> int:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    grid = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = byte_tokenizer(["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *grid])
    images = Idefics3ImageProcessorPil(size={"longest_edge": IMAGE}, max_image_size={"longest_edge": IMAGE},
                                       do_image_splitting=False, **NORM)
    tokens = (IMAGE // PATCH) ** 2 // 4  # pixel shuffle with scale factor 2
    Idefics3Processor(images, tok, image_seq_len=tokens).save_pretrained(folder)
    config = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(tok), **TEXT, pad_token_id=tok.pad_token_id),
        vision_config=VISION, scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    return tokens


def gemma3(folder: Path) -> int:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    named = {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"}
    tok = byte_tokenizer(list(named.values()), named)
    tokens = 4
    Gemma3Processor(Gemma3ImageProcessorPil(size=SIZE, **NORM), tok, image_seq_length=tokens).save_pretrained(folder)
    ids = {k.replace("token", "token_id"): tok.convert_tokens_to_ids(v) for k, v in named.items()}
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tok), **TEXT, head_dim=8, pad_token_id=tok.pad_token_id, sliding_window=16),
        vision_config=VISION, mm_tokens_per_image=tokens, **ids,
    )
    Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    return tokens


FAMILIES = {"llava": llava, "idefics3": idefics3, "gemma3": gemma3}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """`model_folder(family) -> (folder, image tokens per camera)`, each built once."""
    built = {}

    def get(family: str) -> tuple[Path, int]:
        if family not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}")
            torch.manual_seed(0)
            built[family] = folder, FAMILIES[family](folder)
        return built[family]

    return get


def fixed_batch_loss(checkpoint: Path, export_dir: Path) -> float:
    trained = load_trained(checkpoint)
    data = ChunkDataset(open_dataset(export_dir), trained.config.data, trained.stats, trained.cameras,
                        trained.processor)
    batch = trained.processor.collate([data[i] for i in range(0, len(data), len(data) // 8)])
    trained.model.eval()
    with torch.no_grad():
        return float(trained.model(batch, torch.Generator().manual_seed(0)).total)


def test_a_llava_backbone_trains_and_its_policy_thinks_then_acts(model_folder, export_dir, fast, tmp_path):
    folder, _ = model_folder("llava")
    overrides = (*fast, f"backbone.model={folder}", "train.max_steps=8", "train.save_every=4")
    result = train_sft(get_config("tiny-cpu", overrides), export_dir, tmp_path / "run")
    assert len(result.losses) == 8 and all(np.isfinite(result.losses))
    first, last = (fixed_batch_loss(c, export_dir) for c in (tmp_path / "run" / "step-000004", result.checkpoint))
    assert last < first

    policy = load_policy(result.checkpoint)
    assert isinstance(policy.processor, HFVLAProcessor)
    assert type(policy.model.backbone).__name__ == "LlavaForConditionalGeneration"
    episode = open_dataset(export_dir)[0]
    camera = policy.trained.cameras[0]
    observation = {"images": {camera: episode.episode.frames(camera).get(0)}, "task": episode.meta.task,
                   "state": episode.array(policy.stats.state_key)[0]}
    out = policy.infer(observation)
    assert out.actions.shape == (policy.model.head.horizon, len(policy.stats.action.names))
    assert np.isfinite(out.actions).all() and isinstance(out.subtask, str)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_gets_its_image_tokens_a_loss_and_a_generated_subtask(model_folder, family):
    folder, per_camera = model_folder(family)
    config = get_config("tiny-cpu", (f"backbone.model={folder}",))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    proc = make_processor(config, tokenizer, ("reach",))
    model = VLA(config, tokenizer, state_dim=3, action_dim=2, n_skills=1)
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 64, 3), np.uint8)  # two cameras

    item = proc(_sample(frames, "open the drawer", "go"))
    image_id = model.backbone.config.image_token_id
    assert int((item["input_ids"] == image_id).sum()) == 2 * per_camera
    target = (item["labels"] != -100).nonzero()[:, 0]
    assert tokenizer.decode(item["input_ids"][target]) == "reach: go</s>"

    batch = proc.collate([item, proc(_sample(frames, "a longer task text", "go on"))])
    losses = model(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(losses.total) and losses.lm > 0
    losses.total.backward()
    assert all(p.grad is not None for p in model.backbone.get_input_embeddings().parameters())

    prompts = proc.collate([proc.prompt_item(frames, "x"), proc.prompt_item(frames, "open it")], left_pad=True)
    assert prompts["attention_mask"][0, 0] == 0
    generated = model.generate_subtask(prompts, proc.end, proc.pad, max_new_tokens=3)
    assert generated.tokens.shape[0] == 2 and 1 <= generated.tokens.shape[1] <= 4  # the end forced after 3
    assert (generated.tokens == proc.end).any(1).all()
    # The head's context read off the generation is the one a second forward over prompt + subtask gives.
    items = [proc.prompt_item(frames, t, row[: row.index(proc.end) + 1])
             for t, row in zip(("x", "open it"), generated.tokens.tolist())]
    ctx, mask = model.context(proc.collate(items))
    for b in range(2):
        torch.testing.assert_close(generated.context[b][:, generated.context_mask[b]], ctx[b][:, mask[b]],
                                   atol=1e-4, rtol=1e-4)


def _sample(frames: np.ndarray, task: str, subtask: str) -> Sample:
    return Sample(images=frames, state=np.zeros(3, np.float32), actions=np.zeros((4, 2), np.float32),
                  action_mask=np.ones(4, bool), task=task, subtask=subtask, skill="reach", episode_id="e", frame=0,
                  subtask_index=0, boundary_distance=0)
