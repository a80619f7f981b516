"""Does `--add-skill` reach the deployed policy? A `tiny-cpu` MoE policy trained without one skill, then
extended with `--add-skill` on data that has it: how often the policy *generates* the new skill (and the
exact subtask) on that skill's frames, before and after, and how the old skills fare.

The dataset is the Meta-World fixture with its ground truth accepted (a store made the user's way:
`atom-curate import` + `import-annotations`); stage 1 sees only the episodes without `--skill`, stage 2
all of them. The fixture has two episodes per skill, so the new skill's episodes are scored after being
trained on (no held-out episode of it exists); the old skills are scored on the same frames before/after.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/add_skill_eval.py --skill press --steps 600 400
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from atomvla.curate.cli import app as curate_app  # noqa: E402
from atomvla.train.config import get_config  # noqa: E402
from atomvla.train.eval import evaluate  # noqa: E402
from atomvla.train.sft import train_sft  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def store_of(path: Path, keep) -> Path:
    lines = [ln for ln in (FIXTURES / "metaworld_truth.jsonl").read_text().splitlines() if ln.strip() and keep(json.loads(ln))]
    truth = path.with_suffix(".jsonl")
    truth.write_text("\n".join(lines) + "\n")
    for args in (["import", str(FIXTURES / "metaworld_lerobot_v30"), "--store", str(path)],
                 ["import-annotations", str(truth), "--author", "truth", "--store", str(path)]):
        result = CliRunner().invoke(curate_app, args)
        assert result.exit_code == 0, result.output
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skill", default="press")
    parser.add_argument("--steps", type=int, nargs=2, default=(600, 400), help="stage 1 and stage 2 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="add-skill-"))
    out.mkdir(parents=True, exist_ok=True)
    has = lambda d: any(s["skill"] == args.skill for s in d["subtasks"])  # noqa: E731
    without, everything = store_of(out / "without.sqlite", lambda d: not has(d)), store_of(out / "all.sqlite", lambda d: True)
    own = store_of(out / "own.sqlite", has)
    common = ("head.moe=true", "train.batch_size=16", "train.log_every=100", "data.val_fraction=0")
    first = train_sft(get_config("tiny-cpu", (*common, f"train.max_steps={args.steps[0]}", f"train.save_every={args.steps[0]}")),
                      without, out / "first")
    added = train_sft(get_config("tiny-cpu", (f"train.max_steps={args.steps[1]}", f"train.save_every={args.steps[1]}")),
                      everything, out / "added", add_skill=args.skill, from_checkpoint=first.checkpoint)
    rows = {}
    for name, ck in (("before (no expert)", first.checkpoint), ("after --add-skill", added.checkpoint)):
        report = evaluate(ck, str(own), out / f"eval-{name.split()[0]}", max_samples=256)
        rows[name] = {k: v for k, v in report["per_skill"].items()}
    print(f"`{args.skill}` episodes, {args.steps[0]} + {args.steps[1]} steps of 16 ({out})")
    print("| policy | skill | subtask match (skill and instruction) | action MSE | frames |")
    print("|---|---|---|---|---|")
    for name, per in rows.items():
        for skill, r in per.items():
            print(f"| {name} | {skill} | {r['subtask_match_rate']:.3f} | {r['action_mse']:.4f} | {r['samples']} |")


if __name__ == "__main__":
    main()
