#!/usr/bin/env bash
# The whole offline pipeline on the bundled sample: import, annotate with the kinematic heuristic,
# evaluate, check quality, take reviewed decompositions, export a LeRobot dataset with subtasks,
# write the HTML report, and train (SFT, world model, GRPO) with the tiny CPU configs.
# Everything lands in demo-out/ (or the folder given).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out=${1:-demo-out}
rm -rf "$out" && mkdir -p "$out"
export ATOMVLA_STORE="$out/atomvla.sqlite"
# One thread each: torch's default oversubscribes a small shared machine (see README, Training).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
steps=${DEMO_STEPS:-40}

echo "== 1. import the sample (11 Meta-World episodes, LeRobot v3.0, AV1 video)"
$bin/atom-curate import examples/metaworld_sample
$bin/atom-curate ls

echo "== 2. propose subtasks offline with the kinematic heuristic"
$bin/atom-annotate run --backend heuristic

echo "== 3. evaluate the proposals against the ground truth"
$bin/atom-annotate eval --truth examples/metaworld_sample_truth.jsonl --plots "$out/plots" --json "$out/eval.json"
$bin/atom-curate export --to jsonl "$out/proposals.jsonl"

echo "== 4. review: here the sample's accepted truth stands in for what annotators accept in atom-review"
$bin/atom-curate import-annotations examples/metaworld_sample_truth.jsonl --author reviewer
$bin/atom-curate qa --json "$out/qa.json" || true   # findings are for reading; the demo goes on

echo "== 5. export the accepted episodes as a LeRobot v3.0 dataset with subtasks, and the report"
$bin/atom-curate export --to lerobot "$out/curated"
$bin/atom-curate report --out "$out/report"

echo "== 6. train on the curated dataset (tiny-cpu configs, $steps steps each)"
$bin/atom-train sft --config tiny-cpu --dataset "$out/curated" --out "$out/sft" train.max_steps=$steps
$bin/atom-train eval --checkpoint "$out/sft" --out "$out/sft-eval"
$bin/atom-train wm --config tiny-cpu --dataset "$out/curated" --out "$out/wm" train.max_steps=$steps
$bin/atom-train grpo --config tiny-cpu --policy "$out/sft" --world-model "$out/wm" --dataset "$out/curated" \
    --out "$out/grpo" train.max_steps=$((steps / 4))
echo "done: see $out/ (store, plots/, eval.json, qa.json, curated/, report/index.html, sft/, sft-eval/, wm/, grpo/)"
