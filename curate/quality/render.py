"""The qa report as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from atomvla.curate.quality.checks import QaReport

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def print_report(report: QaReport, console: Console, limit: int = 50) -> None:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items()))
    console.print(f"[bold]{report.n_episodes} episode(s)[/] ({statuses}); "
                  f"{report.count('error')} error(s), {report.count('warning')} warning(s), {report.count('info')} note(s)")
    if report.findings:
        table = Table(title="Findings")
        for col in ("severity", "rule", "episode", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings[: limit or None]:
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.rule, f.episode_id, f.message)
        console.print(table)
        if limit and len(report.findings) > limit:
            console.print(f"... {len(report.findings) - limit} more (--limit 0 or --json for all)")
    if report.agreement:
        table = Table(title="Agreement (latest revision of each author)")
        for col in ("kind", "first", "second", "episodes", "boundary F1", "precision", "recall", "segment IoU"):
            table.add_column(col, justify="right" if col not in ("kind", "first", "second") else "left")
        for p in report.agreement:
            table.add_row(p.kind, p.first, p.second, str(p.episodes), f"{p.f1:.3f}",
                          f"{p.boundaries.precision:.3f}", f"{p.boundaries.recall:.3f}", f"{p.mean_iou:.3f}")
        console.print(table)
