"""The labeling config: the episode's video at the dataset's frame rate, one timeline row per
skill, and an instruction text box per region."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

VIDEO = "video"  # the <Video> tag, and the task data key of the clip's URL
SKILL = "skill"  # the <TimelineLabels> tag
INSTRUCTION = "instruction"  # the per-region <TextArea>


def label_config(fps: float, skills: Sequence[str]) -> str:
    labels = "\n".join(f"    <Label value={quoteattr(s)}/>" for s in skills)
    return f"""<View>
  <Header value="$task"/>
  <Video name="{VIDEO}" value="${VIDEO}" frameRate="{fps:g}" timelineHeight="120"/>
  <TimelineLabels name="{SKILL}" toName="{VIDEO}">
{labels}
  </TimelineLabels>
  <TextArea name="{INSTRUCTION}" toName="{VIDEO}" perRegion="true" editable="true" maxSubmissions="1"
            rows="1" placeholder="short imperative instruction, e.g. pick up the bowl"/>
</View>
"""
