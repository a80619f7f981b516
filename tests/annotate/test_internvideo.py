"""`internvideo` end to end on a CPU: the backend's own loading code (AutoModel, trust_remote_code)
loads a tiny random-init Qwen3-VL that speaks InternVL's `chat` API (tiny_vlm_chat.py), and the
shared path runs generate -> parse -> repair -> proposed or failed.

The random model answers garbage: parse failure, repair, `failed` with the reason. The same model
constrained token by token to chosen answers covers the repair that works and the success path.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from atomvla.annotate.backends import BackendError, get_backend
from atomvla.annotate.backends.internvideo import InternVideoConfig, chat_turns, load_model, pixel_values
from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.schemas import EpisodeMeta, Status

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "metaworld_lerobot_v30"
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|endoftext|>"]


def build_tiny_model(folder: Path) -> Path:
    """A random-init Qwen3-VL (text hidden 64, 2 layers; vision depth 2, hidden 32, patch 16) with a
    byte-level tokenizer, saved with the remote code that gives it `chat`."""
    from tiny_vlm_chat import TinyChatQwen3VL
    from transformers import Qwen2Tokenizer, Qwen3VLConfig
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    vocab.update({tok: len(vocab) + i for i, tok in enumerate(SPECIAL)})
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=SPECIAL[:-1])
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL}
    config = Qwen3VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
                       "out_hidden_size": 64, "deepstack_visual_indexes": [1], "num_position_embeddings": 64},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config.auto_map = {"AutoModel": "tiny_vlm_chat.TinyChatQwen3VL"}
    # Seeded: an unlucky random init can end its answer at once (no output tokens to count).
    torch.manual_seed(0)
    TinyChatQwen3VL(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(Path(__file__).with_name("tiny_vlm_chat.py"), folder / "tiny_vlm_chat.py")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "random")


def constrained(tiny_model: Path, folder: Path, answers: list[str]) -> Path:
    """The same weights, constrained to `answers` (one per chat call)."""
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "forced_answers": answers}))
    return folder


@pytest.fixture(scope="module")
def episode() -> Episode:
    meta = next(m for m in open_source(str(FIXTURE)).scan() if isinstance(m, EpisodeMeta))
    return Episode(meta)  # pick up the puck and place it at the goal, 69 frames


def backend(folder: Path, **settings):
    # 64 px tiles: 4 image tokens per frame keep the CPU run short; 5 frames, no event frames.
    config = InternVideoConfig(model=str(folder), image_size=64, frames=5, kinematic_events=False, **settings)
    return get_backend("internvideo")(config)


def valid_answer(n: int, cut: int) -> str:
    # Compact: every byte is a generation step of the tiny model.
    return json.dumps({"subtasks": [
        {"start_frame": 0, "end_frame": cut, "instruction": "pick up the puck", "skill": "pick"},
        {"start_frame": cut, "end_frame": n, "instruction": "place the puck", "skill": "place"},
    ]}, separators=(",", ":"))


def test_prompt_in_internvl_chat_format():
    messages = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": [
            {"type": "text", "text": "Task instruction: open the drawer"},
            {"type": "text", "text": "Frame 0:"}, {"type": "image_url", "image_url": {"url": "data:"}},
            {"type": "text", "text": "Frame 37:"}, {"type": "image_url", "image_url": {"url": "data:"}},
        ]},
        {"role": "assistant", "content": "oops"},
        {"role": "user", "content": "Your answer is invalid"},
    ]
    system, history, question = chat_turns(messages)
    assert system == "rules" and question == "Your answer is invalid"
    assert history == [("Task instruction: open the drawer\nFrame0: <image>\nFrame37: <image>", "oops")]
    tiles = pixel_values(np.zeros((3, 30, 40, 3), np.uint8), 28)
    assert tiles.shape == (3, 3, 28, 28) and tiles.dtype == np.float32
    assert np.allclose(tiles[0, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_random_model_garbage_is_repaired_once_then_failed(tiny_model, episode):
    dec = backend(tiny_model, max_new_tokens=12).propose(episode)
    assert dec.status is Status.failed and dec.subtasks == ()
    assert dec.note.startswith("invalid answer after one repair request: ")
    p = dec.provenance
    assert p.model == str(tiny_model) and p.prompt_version
    assert p.tokens_out > 0 and p.tokens_in > 2 * 5 * 4  # two calls, 5 frames of 4 image tokens each
    assert load_model(str(tiny_model)).model.chat_calls == 2


def test_constrained_model_is_repaired_in_the_same_chat_then_proposes(tiny_model, tmp_path, episode):
    # The first answer breaks the contract (no subtasks), the repair request gets a valid one.
    folder = constrained(tiny_model, tmp_path / "forced", ['{"subtasks":[]}', valid_answer(episode.meta.n_frames, 30)])
    dec = backend(folder).propose(episode)
    assert dec.status is Status.proposed, dec.note
    assert dec.boundaries == [30]
    assert [s.instruction for s in dec.subtasks] == ["pick up the puck", "place the puck"]
    assert load_model(str(folder)).model.chat_calls == 2


def test_a_model_that_cannot_be_loaded_fails_each_episode_with_the_reason(tmp_path, episode):
    with pytest.raises(BackendError, match="cannot load model '.*no-such-model'"):
        backend(tmp_path / "no-such-model").propose(episode)
