#!/usr/bin/env bash
# The whole offline pipeline on the bundled sample: import, annotate with the kinematic heuristic,
# evaluate against the ground truth, export. Everything lands in demo-out/ (or the folder given).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out=${1:-demo-out}
rm -rf "$out" && mkdir -p "$out"
export ATOMVLA_STORE="$out/atomvla.sqlite"

echo "== 1. import the sample (11 Meta-World episodes, LeRobot v3.0, AV1 video)"
$bin/atom-curate import examples/metaworld_sample
$bin/atom-curate ls

echo "== 2. propose subtasks offline with the kinematic heuristic"
$bin/atom-annotate run --backend heuristic

echo "== 3. evaluate the proposals against the ground truth"
$bin/atom-annotate eval --truth examples/metaworld_sample_truth.jsonl --plots "$out/plots" --json "$out/eval.json"

echo "== 4. export the proposals as JSON Lines"
$bin/atom-curate export --to jsonl "$out/proposals.jsonl"
echo "done: see $out/ (store, plots/, eval.json, proposals.jsonl)"
