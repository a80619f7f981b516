"""SFT of the `qwen3vl-4b` config (or `--config qwen3vl-4b-full`) on GPUs, with the 4B backbone built
from its published dimensions and random weights (nothing is downloaded): step time, tokens/s, peak
memory against the `--dry-run` memory plan, MFU.

The backbone has Qwen3-VL-4B-Instruct's architecture (text: 36 layers, hidden 2560, 32 heads / 8
KV heads, MLP 9728, vocab 151936; vision: 24 layers, hidden 1024, patch 16, merge 2, DeepStack at
5/11/17); it is written as a local model folder with the byte-level tokenizer (the special-token
ids are set to the tokenizer's, which changes no shape) and run through the real `atom-train sft`
loop (`train_sft`) with the config's bf16, gradient checkpointing and full fine-tuning, on the
curated Meta-World fixture (or `--dataset`). Under `torchrun` every rank runs it (FSDP2 when several).

MFU counts model FLOPs per token each part sees (text tokens for the language model, patches for the
vision tower, H+1 tokens for the action head, whose cross-attention to the context is added): 2 x
parameters forward, 2 x parameters of the parts gradients pass through (input gradients), 2 x
trainable parameters (weight gradients): 6 x parameters for full fine-tuning, less for LoRA and a
frozen vision tower; against the GPU's dense bf16 peak (`--peak-tflops`, default H100/H200 SXM: 989).

    .venv/bin/python benchmarks/train_gpu_4b.py [--steps 200] [--batch-size 16] [--dataset DIR]
    torchrun --nproc_per_node 8 benchmarks/train_gpu_4b.py --config qwen3vl-4b-full
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 benchmarks/train_gpu_4b.py --dims tiny --steps 4   # CPU, FSDP
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import Qwen3VLConfig  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402

from atomvla.train.config import get_config  # noqa: E402
from atomvla.train.loop import uses_fsdp  # noqa: E402
from atomvla.train.memory_plan import _visual, plan_sft  # noqa: E402
from atomvla.train.models.tokenizer import byte_tokenizer  # noqa: E402
from atomvla.train.sft import train_sft  # noqa: E402
from train_throughput import curated_fixture  # noqa: E402

QWEN3VL_4B = {
    "text_config": {
        "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                            "mrope_interleaved": True},
    },
    "vision_config": {
        "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2560,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17], "hidden_act": "gelu_pytorch_tanh",
    },
    "tie_word_embeddings": True,
}
# Same architecture, CPU-sized: checks the script end to end without a GPU.
TINY = {
    "text_config": {**QWEN3VL_4B["text_config"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                        "mrope_interleaved": True}},
    "vision_config": {**QWEN3VL_4B["vision_config"], "depth": 2, "hidden_size": 32, "intermediate_size": 64,
                      "num_heads": 2, "out_hidden_size": 64, "deepstack_visual_indexes": [0]},
    "tie_word_embeddings": True,
}


def write_model_folder(folder: Path, dims: dict) -> None:
    tokenizer = byte_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        **dims, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                             image_std=[0.5] * 3).save_pretrained(folder)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_token(module: torch.nn.Module, grads_through: bool) -> int:
    """Forward, input gradients (when gradients pass through), weight gradients (trainable only)."""
    total = count(module)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return 2 * total + (2 * total if grads_through else 0) + 2 * trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen3vl-4b", choices=["qwen3vl-4b", "qwen3vl-4b-full"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dims", choices=["4b", "tiny"], default="4b")
    parser.add_argument("--dataset", help="curated export, Hub id or store (default: the curated fixture)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    parser.add_argument("overrides", nargs="*", help="more config overrides (key=value)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    log_every = max(1, min(20, args.steps // 4))
    # Every rank builds its own model folder and fixture; the run folder is shared (sharded checkpoints).
    shared = Path(tempfile.gettempdir()) / f"train_gpu_4b-{os.environ.get('MASTER_PORT', os.getpid())}"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "qwen3vl-random"
        write_model_folder(folder, QWEN3VL_4B if args.dims == "4b" else TINY)
        dataset = args.dataset or curated_fixture(tmp)
        overrides = [
            f"backbone.model={folder}", "backbone.init=random", f"train.max_steps={args.steps}",
            f"train.batch_size={args.batch_size}", f"train.log_every={log_every}", f"train.save_every={10**9}",
            "train.warmup_steps=10", "data.val_fraction=0", *args.overrides,
        ]
        if not cuda:
            overrides += ["data.num_workers=0"]
        cfg = get_config(args.config, overrides)
        plan = plan_sft(cfg, world, cuda=cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        result = train_sft(cfg, dataset, shared / "run", overrides=tuple(overrides))
        wall = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
        if rank != 0:
            return
        rows = [json.loads(line) for line in (shared / "run" / "metrics.jsonl").read_text().splitlines()]
        shutil.rmtree(shared, ignore_errors=True)

    model = result.model
    steady = rows[1:] or rows  # the first interval pays compilation, allocator warm-up, worker start
    step_time = statistics.mean(r["step_time_s"] for r in steady)
    tokens_per_s = statistics.mean(r["tokens_per_s"] for r in steady)
    samples_per_s = statistics.mean(r["samples_per_s"] for r in steady)
    visual = _visual(model.backbone)
    grads_through_lm = any(p.requires_grad for p in model.backbone.parameters())
    vision_trains = any(p.requires_grad for p in visual.parameters())
    n_vision = count(visual)
    text_flops = flops_per_token(model.backbone, grads_through_lm) - flops_per_token(visual, vision_trains)
    grid = cfg.data.image_size // 16
    patches_per_sample = grid * grid * len(result.model.config.data.cameras or ("cam",))
    text_tokens_per_sample = tokens_per_s / samples_per_s
    head_tokens = cfg.data.horizon + 1
    cross = 6 * 2 * head_tokens * text_tokens_per_sample * cfg.head.hidden_size * cfg.head.depth
    flops_per_sample = (text_flops * text_tokens_per_sample + flops_per_token(visual, vision_trains) * patches_per_sample
                        + 6 * count(model.head) * head_tokens + cross)
    achieved = flops_per_sample * samples_per_s / 1e12 / world  # per GPU
    print(json.dumps({
        "config": args.config, "dims": args.dims, "device": torch.cuda.get_device_name() if cuda else "cpu",
        "processes": world, "fsdp": uses_fsdp(cfg.train, world), "steps": args.steps,
        "batch_size": args.batch_size, "params_backbone_M": round(count(model.backbone) / 1e6, 1),
        "params_vision_M": round(n_vision / 1e6, 1), "params_head_M": round(count(model.head) / 1e6, 1),
        "wall_s": round(wall, 1), "step_time_s": round(step_time, 4), "samples_per_s": round(samples_per_s, 2),
        "tokens_per_s": round(tokens_per_s, 1), "peak_memory_GB": round(peak, 2),
        "planned_memory_GB": round(plan.total / 1e9, 2), "plan_fits": plan.fits,
        "model_TFLOPs_per_s_per_gpu": round(achieved, 2), "MFU": round(achieved / args.peak_tflops, 4) if cuda else None,
        "first_loss": round(result.losses[0], 4), "last_loss": round(result.losses[-1], 4),
    }, indent=2))


if __name__ == "__main__":
    main()
