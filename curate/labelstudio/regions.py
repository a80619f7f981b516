"""Decompositions <-> Label Studio results.

Label Studio numbers video frames from 1 and a timeline region's range includes both ends; a
subtask is `[start_frame, end_frame)` counted from 0. So subtask frames [s, e) are the range
{start: s + 1, end: e}, and back. Each subtask is one `timelinelabels` region (the skill) plus a
`textarea` result with the same region id (the instruction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from atomvla.errors import UserError
from atomvla.curate.labelstudio.config import INSTRUCTION, SKILL, VIDEO
from atomvla.schemas import Subtask


class RegionError(UserError, ValueError):
    """An annotation cannot be read as subtasks; the message says which region and why."""


def to_ls_range(subtask: Subtask) -> dict[str, int]:
    return {"start": subtask.start_frame + 1, "end": subtask.end_frame}


def from_ls_range(start: int, end: int) -> tuple[int, int]:
    """(start_frame, end_frame) of the subtask covering Label Studio frames start..end."""
    return start - 1, end


def to_results(subtasks: Sequence[Subtask]) -> list[dict[str, Any]]:
    results = []
    for k, s in enumerate(subtasks):
        region = {"id": f"subtask{k}", "from_name": SKILL, "to_name": VIDEO}
        ranges = [to_ls_range(s)]
        results.append({**region, "type": "timelinelabels", "value": {"ranges": ranges, "timelinelabels": [s.skill]}})
        results.append({**region, "from_name": INSTRUCTION, "type": "textarea",
                        "value": {"ranges": ranges, "text": [s.instruction]}})
    return results


def from_results(results: Sequence[dict[str, Any]]) -> list[Subtask]:
    """The subtasks of an annotation's results, in frame order (contract rules not checked here)."""
    spans: dict[str, tuple[int, int, str]] = {}
    texts: dict[str, str] = {}
    for r in results:
        rid, value = r.get("id"), r.get("value", {})
        if r.get("type") == "timelinelabels" and r.get("from_name") == SKILL:
            ranges, labels = value.get("ranges") or [], value.get("timelinelabels") or []
            if len(ranges) != 1 or len(labels) != 1:
                raise RegionError(f"region {rid} has {len(ranges)} range(s) and {len(labels)} skill(s), expected one of each")
            start, end = from_ls_range(int(ranges[0]["start"]), int(ranges[0]["end"]))
            spans[rid] = (start, end, labels[0])
        elif r.get("type") == "textarea" and r.get("from_name") == INSTRUCTION:
            texts[rid] = " ".join(t.strip() for t in value.get("text", []) if t.strip())
    subtasks = []
    for rid, (start, end, skill) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        where = f"region {rid} (Label Studio frames {start + 1}-{end}, {skill})"
        if not texts.get(rid):
            raise RegionError(f"{where} has no instruction")
        try:
            subtasks.append(Subtask(start_frame=start, end_frame=end, instruction=texts[rid], skill=skill))
        except ValidationError as exc:
            raise RegionError(f"{where}: {exc.errors()[0]['msg']}") from exc
    return subtasks
