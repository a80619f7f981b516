"""The VLM backbone: a Hub image-text-to-text model, or a tiny random Qwen3-VL built from
`BackboneConfig` for CPU runs and tests; freeze / LoRA / full training. Qwen-VL models get the
hand-built image path below; other models their own processor (`generic_vlm`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from atomvla.train.config import BackboneConfig
from atomvla.train.models.tokenizer import byte_tokenizer

log = logging.getLogger(__name__)
TINY = "tiny"
_PATCH, _MERGE, _TEMPORAL = 16, 2, 2


def tiny_qwen3vl_config(cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase):
    from transformers import Qwen3VLConfig

    ids = tokenizer.convert_tokens_to_ids
    head_dim = cfg.hidden_size // cfg.heads
    # mrope splits head_dim/2 rotary pairs into (t, h, w) sections.
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
            head_dim=head_dim, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section,
                             "mrope_interleaved": True},
        ),
        vision_config=dict(
            depth=cfg.vision_depth, hidden_size=cfg.vision_hidden_size, intermediate_size=2 * cfg.vision_hidden_size,
            num_heads=2, out_hidden_size=cfg.hidden_size, patch_size=_PATCH, spatial_merge_size=_MERGE,
            temporal_patch_size=_TEMPORAL, deepstack_visual_indexes=[0], num_position_embeddings=256,
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def load_tokenizer(cfg: BackboneConfig, saved: Path | None = None) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer: from a checkpoint's copy if given, else made (tiny) or from the Hub."""
    if saved is not None and saved.is_dir():
        return AutoTokenizer.from_pretrained(saved)
    return byte_tokenizer() if cfg.model == TINY else AutoTokenizer.from_pretrained(cfg.model)


def image_processor(cfg: BackboneConfig, image_size: int) -> Qwen2VLImageProcessorPil:
    """Resize each camera to `image_size`² and patchify it the Qwen-VL way (no torchvision)."""
    pixels = image_size * image_size
    if cfg.model == TINY:
        return Qwen2VLImageProcessorPil(
            patch_size=_PATCH, temporal_patch_size=_TEMPORAL, merge_size=_MERGE, image_mean=[0.5] * 3,
            image_std=[0.5] * 3, min_pixels=pixels, max_pixels=pixels,
        )
    return Qwen2VLImageProcessorPil.from_pretrained(cfg.model, min_pixels=pixels, max_pixels=pixels)


def build_backbone(cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The VLM in fp32 with its training mode applied: `freeze` (no grads), `lora` (peft adapters), `full`."""
    dtype = torch.float32  # master weights; bf16 is autocast in the forward
    if cfg.model == TINY:
        from transformers import Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration(tiny_qwen3vl_config(cfg, tokenizer))
    elif cfg.init == "random":
        from transformers import AutoConfig

        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(cfg.model), dtype=dtype)
    else:
        log.info("loading %s", cfg.model)
        model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype)
    if cfg.gradient_checkpointing and cfg.train != "freeze":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.train == "freeze":
        model.requires_grad_(False)
    elif cfg.train == "lora":
        from peft import LoraConfig, get_peft_model

        # q/k/v/o name the language model's attention projections (the vision tower's are `qkv`/`proj`).
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        model = get_peft_model(model, lora)
    return model
