"""The VLA ingredients ablated on `tiny-cpu`: held-out action error and subtask match per variant.

Each variant is `tiny-cpu` with all of openpi's defaults (prefix-LM attention, the head reading several
VLM layers, Beta(1.5, 1) flow time, image augmentation, which `tiny-cpu` itself leaves off, and
resize-with-pad) and one ingredient switched (off,
or on for those off by default: delta actions, camera dropout, padding to 32 dims), plus the recipe
with all of the defaults off (what `tiny-cpu` trained before them). Same seed, same steps, same
held-out episodes for every variant; `atom-train eval` scores each checkpoint on its held-out episodes.

The dataset is the Meta-World fixture curated the user's way (see `train_throughput.py`) unless
`--dataset` names one. Its one camera is square (128 px), so resize-with-pad equals stretching here,
and camera dropout runs on the camera shown twice (dropping one copy of two).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/vla_ablations.py --steps 300 --out runs/ablations
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import curated_fixture  # noqa: E402

from atomvla.train.config import get_config  # noqa: E402
from atomvla.train.eval import evaluate  # noqa: E402
from atomvla.train.sft import train_sft  # noqa: E402

CAMERA = "observation.images.corner"
OFF = ("backbone.attention=causal", "head.context_layers=last", "head.time_sampling=uniform", "data.augment=false",
       "data.resize=stretch")
VARIANTS: dict[str, tuple[str, ...]] = {
    "openpi defaults": (),
    "causal attention": ("backbone.attention=causal",),
    "last VLM layer only": ("head.context_layers=last",),
    "uniform flow time": ("head.time_sampling=uniform",),
    "no augmentation": ("data.augment=false",),
    "stretch, no pad": ("data.resize=stretch",),
    "delta actions (xyz)": ("data.delta_action_dims=[0,1,2]",),
    "pad state/action to 32": ("data.max_state_dim=32", "data.max_action_dim=32"),
    "2 views, camera dropout 0.3": (f"data.cameras=[{CAMERA},{CAMERA}]", "data.camera_dropout=0.3"),
    "all defaults off (before)": OFF,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="curated export, Hub id or store (default: the curated fixture)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=128, help="held-out samples scored per variant")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="runs and results.json (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="ablations-"))
    dataset = args.dataset or str(curated_fixture(Path(tempfile.mkdtemp())))
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    base = ("data.augment=true", f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.save_every={args.steps}",
            "train.log_every=100", "train.warmup_steps=20")
    for name, overrides in VARIANTS.items():
        if (args.only and name not in args.only) or name in results:
            continue
        run = out / name.replace(" ", "_").replace("/", "-").replace(",", "").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        result = train_sft(get_config("tiny-cpu", (*base, *overrides)), dataset, run)
        train_s = time.perf_counter() - t0
        report = evaluate(result.checkpoint, None, run / "eval", max_samples=args.samples)
        results[name] = {
            "overrides": list(overrides), "train_s": round(train_s, 1), "final_loss": result.losses[-1],
            "action_mse": report["action_mse"], "action_mse_generated_subtask": report["action_mse_generated_subtask"],
            "subtask_match_rate": report["subtask_match_rate"], "held_out_episodes": report["episodes"],
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"{name}: {results[name]}", flush=True)
    print(f"\n{args.steps} steps of {args.batch_size}, {args.samples} held-out samples; results in {out}")
    print(f"| variant | action MSE (labelled subtask) | action MSE (generated subtask) | subtask match | train s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['action_mse']:.4f} | {r['action_mse_generated_subtask']:.4f} | "
              f"{r['subtask_match_rate']:.3f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
