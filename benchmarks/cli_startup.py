"""Start-up time of the four console scripts: `--help`, and a bad argument (an unknown option),
best of 3 wall-clock runs each, against two baselines measured in the same run: the bare
interpreter (`python -c pass`) and `import typer` (the floor any Typer CLI pays).

Target (issue 14): every `--help` and every bad-argument error in <= 0.3 s. Wall-clock time is
inflated by other load on the machine: run it on a quiet one. The CPU time the child used (user +
system, best of the runs) is printed too: on a loaded machine it is the closer estimate of the
quiet wall clock, and the ratio to `import typer` travels between machines.
Run: `python benchmarks/cli_startup.py [--runs 3] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ("atom-curate", "atom-annotate", "atom-review", "atom-train")
TARGET_S = 0.3


def best_of(argv: list[str], runs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child), each the best of `runs`."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env={"COLUMNS": "120", "PATH": ""})
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(wall), min(cpu)


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
    for script in SCRIPTS:
        rows[f"{script} --help"] = best_of([str(bin_dir / script), "--help"], args.runs)
        rows[f"{script} --no-such-option"] = best_of([str(bin_dir / script), "--no-such-option"], args.runs)
    floor_wall, floor_cpu = rows["python -c 'import typer'"]
    print(f"best of {args.runs}; target: wall <= {TARGET_S} s on a quiet machine")
    print(f"{'command':34s} {'wall':>8s} {'x typer':>8s} {'CPU':>8s} {'x typer':>8s}")
    for name, (wall, cpu) in rows.items():
        verdict = "" if name.startswith("python") else ("ok" if wall <= TARGET_S else "over (wall)")
        print(f"{name:34s} {wall:7.3f}s {wall / floor_wall:7.2f}x {cpu:7.3f}s {cpu / floor_cpu:7.2f}x  {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: {"wall_s": w, "cpu_s": c} for k, (w, c) in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
