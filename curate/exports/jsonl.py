"""The JSON Lines interchange export (DESIGN.md), one episode per line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atomvla.curate.exports.base import Exporter, Progress, register_exporter
from atomvla.output import write_text
from atomvla.curate.exports.records import Proposals
from atomvla.schemas import Decomposition, EpisodeMeta, InterchangeRecord


@register_exporter
class JsonlExporter(Exporter):
    name = "jsonl"
    description = "JSON Lines interchange file, one episode per line"

    def write(self, records: Sequence[tuple[EpisodeMeta, Decomposition]], out: Path,
              proposals: Proposals | None = None, progress: Progress | None = None, overwrite: bool = False) -> None:
        lines = [
            InterchangeRecord.from_decomposition(dec, meta.episode_index, meta.task, meta.fps).model_dump_json(
                exclude_none=True
            )
            for meta, dec in records
        ]
        write_text(out, "".join(line + "\n" for line in lines), overwrite)
