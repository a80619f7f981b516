"""The JSON Lines interchange export (DESIGN.md), one episode per line."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from atomvla.curate.exports.base import Exporter, Progress, register_exporter
from atomvla.curate.exports.records import Proposals
from atomvla.schemas import Decomposition, EpisodeMeta, InterchangeRecord


def write_atomically(out: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        # mkstemp makes the file private (0600); the export gets the mode any new file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@register_exporter
class JsonlExporter(Exporter):
    name = "jsonl"
    description = "JSON Lines interchange file, one episode per line"

    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path,
              proposals: Proposals | None = None, progress: Progress | None = None) -> None:
        lines = [
            InterchangeRecord.from_decomposition(dec, meta.episode_index, meta.task, meta.fps).model_dump_json(
                exclude_none=True
            )
            for meta, dec in records
        ]
        write_atomically(out, "".join(line + "\n" for line in lines))
