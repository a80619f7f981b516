"""`atom-curate report`: one static HTML page (index.html + img/) about a store: dataset summary,
histograms (subtasks per episode, duration per skill), quality findings and agreement, model
cost, and a timeline strip with key frames for each of the first episodes."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from atomvla.curate.episode import Episode
from atomvla.curate.errors import SourceError
from atomvla.output import OutputExistsError, check_output, new_folder
from atomvla.curate.quality.checks import QaConfig, QaReport, run_qa
from atomvla.curate.report import plots
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, EpisodeMeta

log = logging.getLogger(__name__)

MAX_KEYFRAMES = 6


@dataclass(frozen=True)
class ReportConfig:
    timelines: int = 24  # episodes drawn as a timeline strip with key frames (the first ones)
    dataset: str | None = None


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing OUT without `overwrite`, and any folder that is not a previous report."""
    if out.is_dir() and not (out / "index.html").is_file():
        raise OutputExistsError(f"{out}: exists and is not a report (no index.html); choose another folder")
    check_output(out, overwrite, folder=True)


def build_report(store: Store, out: Path, config: ReportConfig = ReportConfig(),
                 progress: Callable[[], None] | None = None, overwrite: bool = False) -> Path:
    """Write the report to the folder `out`; an existing report there is replaced only with
    `overwrite`, once the new one is complete."""
    out = Path(out)
    _check_out(out, overwrite)
    metas = store.episodes(config.dataset)
    latest = store.latest_all()
    decs = {m.episode_id: latest[m.episode_id] for m in metas if m.episode_id in latest}
    qa = run_qa(store, QaConfig(motion=False), config.dataset)
    with new_folder(out, overwrite) as root:
        img = root / "img"
        img.mkdir()
        labelled = [(m, decs[m.episode_id]) for m in metas if m.episode_id in decs and decs[m.episode_id].subtasks]
        durations: dict[str, list[float]] = defaultdict(list)
        for m, d in labelled:
            for s in d.subtasks:
                durations[s.skill].append(s.n_frames / m.fps)
        figures = {
            "subtasks per episode": plots.subtasks_per_episode([len(d.subtasks) for _, d in labelled], img / "subtasks_per_episode.png"),
            "duration per skill": plots.duration_per_skill(durations, img / "duration_per_skill.png"),
        }
        strips = []
        for i, (m, d) in enumerate(labelled[: config.timelines]):
            strips.append((m, d, plots.timeline(d, m.fps, _keyframes(m, d), img / f"timeline_{i:04d}.png")))
            if progress is not None:
                progress()
        html = _page(store, metas, decs, qa, figures, strips, _costs(store, metas), ledger_by_job(store))
        (root / "index.html").write_text(html, encoding="utf-8")
    return Path(out)


def _keyframes(meta: EpisodeMeta, dec: Decomposition) -> list[tuple]:
    """The first frame of each subtask and the last frame (at most MAX_KEYFRAMES), as (index, image)."""
    indices = sorted({s.start_frame for s in dec.subtasks} | {meta.n_frames - 1})
    if len(indices) > MAX_KEYFRAMES:
        indices = [*indices[: MAX_KEYFRAMES - 1], indices[-1]]
    if not meta.cameras:
        return []
    try:
        images = Episode(meta).frames().get_many(indices)
    except (SourceError, OSError) as exc:
        log.warning("episode %s: no key frames (%s)", meta.episode_id, exc)
        return []
    return list(zip(indices, images))


@dataclass(frozen=True)
class _Cost:
    revisions: int
    tokens_in: int
    tokens_out: int
    usd: float


def ledger_by_job(store: Store) -> list[dict]:
    """Spend per annotation job from annotate's ledger table, oldest first. Read here with SQL, not
    through `atomvla.annotate` (which owns the table): curate sits below annotate."""
    rows = store.connection().execute(
        "SELECT job_id, group_concat(DISTINCT model) AS models, count(DISTINCT episode_id) AS episodes,"
        " sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd,"
        " sum(cached) AS cached FROM ledger GROUP BY job_id ORDER BY min(id)"
    )
    return [dict(r) for r in rows]


def _costs(store: Store, metas: list[EpisodeMeta]) -> dict[tuple[str, str], _Cost]:
    """Model cost per (backend, model), from the provenance of every stored revision."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for m in metas:
        for d in store.history(m.episode_id):
            if d.provenance is None:
                continue
            row = sums[(d.provenance.backend, d.provenance.model or "-")]
            row[0] += 1
            row[1] += d.provenance.tokens_in
            row[2] += d.provenance.tokens_out
            row[3] += d.provenance.cost_usd
    return {k: _Cost(int(a), int(b), int(c), float(e)) for k, (a, b, c, e) in sorted(sums.items())}


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
section { margin: 28px 0; } table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; } .cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { background: #f6f8fa; border-radius: 8px; padding: 10px 16px; min-width: 120px; }
.card b { display: block; font-size: 22px; } .figs { display: flex; gap: 16px; flex-wrap: wrap; }
figure { margin: 0; } figcaption { font-size: 13px; color: #555; }
.episode { margin: 14px 0; } .episode h3 { font-size: 14px; margin: 4px 0; }
.legend span { display: inline-block; padding: 1px 8px; margin: 2px; border-radius: 4px; font-size: 12px; }
"""


def _page(store: Store, metas, decs, qa: QaReport, figures, strips, costs, ledger: list[dict]) -> str:
    statuses = Counter(decs[m.episode_id].status.value if m.episode_id in decs else "unlabelled" for m in metas)
    frames = sum(m.n_frames for m in metas)
    seconds = sum(m.duration_s for m in metas)
    labelled = [d for d in decs.values() if d.subtasks]
    cards = [
        ("episodes", len(metas)), ("frames", frames), ("minutes of video", f"{seconds / 60:.1f}"),
        ("datasets", len({m.dataset for m in metas})), ("tasks", len({m.task for m in metas})),
        ("subtasks / episode", f"{sum(len(d.subtasks) for d in labelled) / max(len(labelled), 1):.2f}"),
        *((k, v) for k, v in sorted(statuses.items())),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>atomvla report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Subtask curation report</h1>",
        f"<p class='sub'>{escape(str(store.path))} — generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
        "<section><h2>Dataset</h2><div class='cards'>",
        *(f"<div class='card'><b>{escape(str(v))}</b>{escape(k)}</div>" for k, v in cards),
        "</div></section>",
        "<section><h2>Subtasks</h2><div class='figs'>",
        *(f"<figure><img src='img/{p.name}' alt='{escape(name)}'><figcaption>{escape(name)}</figcaption></figure>"
          for name, p in figures.items()),
        "</div></section>",
        "<section><h2>Quality</h2>",
        f"<p>{qa.count('error')} error(s), {qa.count('warning')} warning(s) — details: <code>atom-curate qa</code>.</p>",
        _table(["rule", "severity", "findings"],
               [[r, s, str(n)] for (r, s), n in sorted(Counter((f.rule, f.severity) for f in qa.findings).items())])
        if qa.findings else "<p>No findings.</p>",
        "<h3>Agreement (latest revision of each author)</h3>",
        _table(["kind", "first", "second", "episodes", "boundary F1", "segment IoU"],
               [[p.kind, p.first, p.second, str(p.episodes), f"{p.f1:.3f}", f"{p.mean_iou:.3f}"] for p in qa.agreement])
        if qa.agreement else "<p>Only one author per episode: nothing to compare.</p>",
        "</section>",
        "<section><h2>Cost</h2>",
        _table(["backend", "model", "revisions", "tokens in", "tokens out", "USD"],
               [[b, m, str(c.revisions), str(c.tokens_in), str(c.tokens_out), f"{c.usd:.4f}"]
                for (b, m), c in costs.items()]) if costs else "<p>No model-made revisions.</p>",
        f"<p>Total over stored revisions: ${sum(c.usd for c in costs.values()):.4f}</p>",
        "<h3>Spend by annotation job (ledger: every request, retries and cache hits included)</h3>",
        _table(["job", "models", "episodes", "tokens in", "tokens out", "cached", "USD"],
               [[j["job_id"], j["models"] or "-", str(j["episodes"]), str(j["input_tokens"]), str(j["output_tokens"]),
                 str(j["cached"]), f"{j['cost_usd']:.4f}"] for j in ledger]) if ledger else "<p>No annotation jobs recorded.</p>",
        "</section>",
        "<section><h2>Timelines</h2><div class='legend'>",
        *(f"<span style='background:{_hex(c)}'>{escape(s)}</span>" for s, c in plots.SKILL_COLOURS.items()),
        "</div>",
        *(f"<div class='episode'><h3>{escape(m.episode_id)} — {escape(m.task)} ({escape(d.status.value)}, "
          f"revision {d.revision} by {escape(d.author)})</h3><img src='img/{p.name}' alt='timeline {escape(m.episode_id)}'></div>"
          for m, d, p in strips),
        f"<p>{len(strips)} of {len(labelled)} decomposed episodes shown.</p></section>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb[:3])
