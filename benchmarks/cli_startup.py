"""Start-up time of the four console scripts: `--help`, and a bad argument (an unknown option),
best of 3 wall-clock runs each, against two baselines measured in the same run: the bare
interpreter (`python -c pass`) and `import typer` (the floor any Typer CLI pays).

Target (issue 14): every `--help` and every bad-argument error in <= 0.3 s. Wall-clock time is
inflated by other load on the machine: run it on a quiet one; the ratio to `import typer` travels.
Run: `python benchmarks/cli_startup.py [--runs 3] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ("atom-curate", "atom-annotate", "atom-review", "atom-train")
TARGET_S = 0.3


def best_of(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env={"COLUMNS": "120", "PATH": ""})
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    python = sys.executable
    rows = {
        "python -c pass": best_of([python, "-c", "pass"], args.runs),
        "python -c 'import typer'": best_of([python, "-c", "import typer"], args.runs),
    }
    floor = rows["python -c 'import typer'"]
    for script in SCRIPTS:
        rows[f"{script} --help"] = best_of([str(bin_dir / script), "--help"], args.runs)
        rows[f"{script} --no-such-option"] = best_of([str(bin_dir / script), "--no-such-option"], args.runs)
    print(f"{'command':34s} {'best of ' + str(args.runs):>10s} {'x import typer':>15s}  target <= {TARGET_S} s")
    for name, seconds in rows.items():
        verdict = "" if name.startswith("python") else ("ok" if seconds <= TARGET_S else "OVER")
        print(f"{name:34s} {seconds:9.3f}s {seconds / floor:14.2f}x  {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
