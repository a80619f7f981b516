"""Success per task with Wilson 95% intervals, where failed episodes stalled, and the success plot."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atomvla.train.rollout.episode import EpisodeResult

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sensible at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exact at 0/n and n/n: computed, the bound sits a rounding error inside (and the plot's error bar
    # would be negative)
    return (0.0 if successes == 0 else centre - half, 1.0 if successes == n else centre + half)


def task_summary(instruction: str, episodes: Sequence[EpisodeResult]) -> dict[str, Any]:
    """`episodes` of one task: success rate, interval, steps, and per subtask where failures stalled."""
    n = len(episodes)
    wins = sum(e.success for e in episodes)
    sequences: Counter[tuple[str, ...]] = Counter(tuple(e.announced) for e in episodes)
    won: Counter[tuple[str, ...]] = Counter(tuple(e.announced) for e in episodes if e.success)
    ran = [e for e in episodes if e.error is None]
    timed_out = [e for e in ran if not e.success]
    return {
        "instruction": instruction,
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "ci95": list(wilson(wins, n)),
        # over the episodes that ran: a crash would pull the mean towards 0 steps
        "mean_steps": sum(e.steps for e in ran) / len(ran) if ran else 0.0,
        "crashed": sum(e.error is not None for e in episodes),
        "subtasks": {
            # every announced sequence (repeats collapsed), how often, how often it succeeded
            "sequences": [
                {"sequence": list(seq), "episodes": k, "successes": won[seq]} for seq, k in sequences.most_common()
            ],
            # the subtask active when a failed episode ran out of steps: where the policy stalls
            "stalled_in": dict(Counter(e.active_at_end or "" for e in timed_out).most_common()),
        },
    }


def plot_success(tasks: dict[str, dict[str, Any]], path: Path) -> None:
    """One bar per task, its Wilson interval as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(tasks)
    rates = [tasks[t]["success_rate"] for t in names]
    low = [r - tasks[t]["ci95"][0] for t, r in zip(names, rates)]
    high = [tasks[t]["ci95"][1] - r for t, r in zip(names, rates)]
    # env ids run long (LIBERO's SUITE/TASK names): wrapped on several lines, not rotated
    lines = [textwrap.wrap(t, 24, break_on_hyphens=False) for t in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.9 * len(names) + 1.5), 3.2 + 0.18 * max(map(len, lines))))
    ax.bar(range(len(names)), rates, yerr=[low, high], capsize=4, color="#4c72b0")
    labels = ["\n".join([*ls, f"{tasks[t]['successes']}/{tasks[t]['episodes']}"]) for t, ls in zip(names, lines)]
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (95% Wilson)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
