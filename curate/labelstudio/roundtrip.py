"""Export store episodes to a Label Studio project, import its annotations back as revisions."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from atomvla.curate.errors import SourceError
from atomvla.curate.labelstudio.config import VIDEO, label_config
from atomvla.curate.labelstudio.regions import RegionError, from_results, to_results
from atomvla.curate.labelstudio.server import LabelStudioError, Server
from atomvla.curate.store import Store
from atomvla.curate.video.clip import write_clip
from atomvla.schemas import SKILLS, Decomposition, DecompositionError, EpisodeMeta, Provenance, Status

CLIPS_DIR = "atomvla"  # under the server's document root: <root>/atomvla/<project>/<episode>.<camera>.mp4
BACKEND = "labelstudio"


@dataclass
class ExportReport:
    project_id: int
    tasks: int
    predictions: int
    copied: int = 0  # clips cut by packet copy
    encoded: int = 0  # clips encoded (source not cuttable, or not a video)
    reused: int = 0  # clips already there from an earlier export


@dataclass
class ImportReport:
    stored: list[Decomposition] = field(default_factory=list)
    unchanged: int = 0  # annotations imported before and not edited since
    problems: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def export_project(
    store: Store,
    server: Server,
    title: str,
    media_root: Path,
    episodes: Sequence[EpisodeMeta],
    camera: str | None = None,
    progress: Callable[[EpisodeMeta], None] = lambda meta: None,
) -> ExportReport:
    """Create project `title` with one task per episode; clips go under `media_root`, the folder the
    server serves local files from (its LOCAL_FILES_DOCUMENT_ROOT). Raises `LabelStudioError` or
    `SourceError`; a project created before a failure is deleted again."""
    if not episodes:
        raise LabelStudioError("no episodes selected")
    rates = sorted({m.fps for m in episodes})
    if len(rates) > 1:
        raise LabelStudioError(f"the episodes have several frame rates ({', '.join(f'{r:g}' for r in rates)}); "
                               "a project plays one: select one dataset with --dataset-name")
    if not media_root.is_dir():
        raise LabelStudioError(f"{media_root}: media root is not a folder (it must be the server's LOCAL_FILES_DOCUMENT_ROOT)")
    if server.project_id(title) is not None:
        raise LabelStudioError(f"{server.url}: a project titled {title!r} exists already; choose another --project")

    folder = (media_root / CLIPS_DIR / slug(title)).resolve()
    report = ExportReport(project_id=-1, tasks=0, predictions=0)
    latest = store.latest_all(episode_ids=[m.episode_id for m in episodes])
    tasks = []
    for meta in episodes:  # every clip first: nothing is created on the server if one fails
        clip = _clip(meta, camera, folder, report)
        task = {"data": {VIDEO: "/data/local-files/?d=" + quote(str(clip.relative_to(media_root.resolve()))),
                         "episode_id": meta.episode_id, "task": meta.task, "fps": meta.fps, "n_frames": meta.n_frames}}
        dec = latest.get(meta.episode_id)
        if dec is not None and dec.subtasks:
            task["data"]["revision"] = dec.revision
            task["predictions"] = [{
                "model_version": f"{dec.author} r{dec.revision}",
                "score": dec.provenance.confidence if dec.provenance and dec.provenance.confidence is not None else 1.0,
                "result": to_results(dec.subtasks),
            }]
            report.predictions += 1
        tasks.append(task)
        progress(meta)

    description = f"atomvla subtasks of {len(episodes)} episode(s); frames {rates[0]:g} fps"
    project_id = server.create_project(title, label_config(rates[0], SKILLS), description)
    try:
        server.add_local_storage(project_id, folder, title=f"atomvla clips of {title}")
        server.import_tasks(project_id, tasks)
    except LabelStudioError:
        server.delete_project(project_id)
        raise
    report.project_id, report.tasks = project_id, len(tasks)
    return report


def _clip(meta: EpisodeMeta, camera: str | None, folder: Path, report: ExportReport) -> Path:
    cams = {c.key: c for c in meta.cameras}
    if not cams:
        raise SourceError(meta.source, "episode has no camera", meta.episode_id)
    if camera is not None and camera not in cams:
        raise SourceError(meta.source, f"no camera {camera!r} (has {', '.join(cams)})", meta.episode_id)
    ref = cams[camera] if camera is not None else next(iter(cams.values()))
    out = folder / f"{slug(meta.episode_id)}.{slug(ref.key)}.mp4"
    if out.exists():  # cut once: a second export of the same episodes reuses the clip
        report.reused += 1
    elif write_clip(ref, meta.n_frames, meta.fps, out, meta.episode_id) == "copy":
        report.copied += 1
    else:
        report.encoded += 1
    return out


def import_annotations(store: Store, server: Server, title: str) -> ImportReport:
    """Each submitted annotation of project `title` becomes an accepted revision authored by its
    Label Studio user; an annotation already imported and not edited since is skipped."""
    project_id = server.project_id(title)
    if project_id is None:
        raise LabelStudioError(f"{server.url}: no project titled {title!r}")
    report = ImportReport()
    decs: list[Decomposition] = []
    for ann in server.annotations(project_id):
        where = f"task {ann.task_id}, annotation {ann.annotation_id}"
        try:
            meta = store.episode(ann.episode_id)
        except KeyError:
            report.problems.append(f"{where}: episode {ann.episode_id!r} is not in the store")
            continue
        marker = f"Label Studio {server.url} project {project_id} {where}, updated {ann.updated_at}"
        if any(old.note == marker for old in store.history(meta.episode_id)):
            report.unchanged += 1
            continue
        try:
            decs.append(Decomposition(
                episode_id=meta.episode_id, n_frames=meta.n_frames, subtasks=tuple(from_results(ann.result)),
                status=Status.accepted, author=ann.author, provenance=Provenance(backend=BACKEND), note=marker,
            ))
        except RegionError as exc:
            report.problems.append(f"episode {meta.episode_id} ({where}): {exc}")
        except DecompositionError as exc:
            report.problems.append(f"episode {meta.episode_id} ({where}): " + "; ".join(exc.problems))
    report.stored = store.add_revisions(decs)
    return report
