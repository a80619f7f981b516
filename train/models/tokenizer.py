"""A byte-level Qwen2 tokenizer made locally (no download): 256 byte symbols plus Qwen's specials."""

from __future__ import annotations

from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
)


def byte_tokenizer() -> Qwen2Tokenizer:
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", extra_special_tokens=list(SPECIALS),
    )
