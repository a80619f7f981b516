"""Checks a person would make of the subtasks planned from a task wording, written without the
grammar's own lexicon: the plan has 2-5 steps; every step reads as an imperative with no
determiner before a verb, a preposition or another determiner; the instruction's content words
all appear in the plan; each noun phrase and prepositional phrase of a step is copied from the
instruction (a missing "the" may be added, nothing else changed); and every prepositional phrase
of the instruction ("out from under the coffee machine", "from one arm to the other") is kept.
A step may name an object the instruction refers to by a pronoun ("in the drawer" for "in it",
"the puck back" for "it back") when the instruction names that object elsewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

WORDINGS = Path(__file__).parent / "data" / "task_wordings.jsonl"

DETERMINERS = {"the", "a", "an"}
# Prepositions and particles, longest first where one contains another.
PREPOSITIONS = [
    "out from under", "out of", "on top of", "in front of", "next to", "to the left of", "to the right of",
    "away from", "off of", "inside of", "onto", "into", "inside", "under", "underneath", "below", "above", "over",
    "behind", "between", "toward", "towards", "through", "across", "from", "off", "on", "in", "at", "to", "with",
    "near", "by", "around", "beside", "along", "against", "of", "using",
]
_PREP_RE = re.compile(r"\b(" + "|".join(map(re.escape, PREPOSITIONS)) + r")\b")
# Verbs an instruction or a plan step may begin with (the test's own list, not the grammar's).
VERBS = set("""pick place put set lay lower drop stack move bring carry transfer hang load deposit return throw toss
deliver reach approach touch go push sweep slide shove nudge knock roll hit strike hammer kick dunk pull drag tug yank
unplug open close shut turn rotate twist flip spin screw unscrew switch press tap poke click depress insert plug slot
pour wipe stir fold scoop grasp grab lift take hold raise fetch retrieve get remove collect use store drive hand
give lock unlock bypass empty water straighten beat play solve seal leave make cover uncover fill rinse wash cut
drag lean point""".split())
MULTI_VERBS = ["pick up", "put down", "turn on", "turn off", "switch on", "switch off", "push down", "pull up",
               "pull out", "take out", "take off", "lift up", "put away", "screw in", "screw on", "hand over"]
# Words that carry no object or place: function words and the instruction's verbs.
FUNCTION = DETERMINERS | {w for p in PREPOSITIONS for w in p.split()} | VERBS | {
    "and", "then", "it", "them", "its", "their", "both", "up", "down", "that", "this", "these", "those", "please",
    "so", "each", "other", "after", "before", "while", "is", "are", "be", "falls", "s"}


def _verb_form(word: str) -> bool:
    """"grasping", "rotating": a verb's -ing form carries no object either."""
    stem = word[:-3] if word.endswith("ing") else ""
    return bool(stem) and any(v in VERBS for v in (stem, stem + "e", stem[:-1]))


def load(split: str) -> list[dict]:
    rows = [json.loads(line) for line in WORDINGS.read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("'s ", " 's ")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'-]", " ", text)).strip()


def _contains(haystack: str, needle: str) -> bool:
    return re.search(r"(?:^| )" + re.escape(needle) + r"(?: |$)", haystack) is not None


def _body(step: str) -> str:
    """A step without its leading verb phrase."""
    for verb in MULTI_VERBS:
        if step.startswith(verb + " "):
            return step[len(verb) + 1:]
    return step.split(" ", 1)[1] if " " in step else ""


def _segments(text: str) -> list[str]:
    """`text` cut before each preposition and at each "and"/"then" (not inside "between X and Y"):
    ["the black bowl", "on the plate"]."""
    cuts, until = [], -1
    for m in re.finditer(_PREP_RE.pattern + r"|\b(?:and|then)\b", text):
        if m.start() < until:
            continue
        cuts.append(m.start())
        if m.group(0) == "between":
            a = re.search(r"\band\b", text[m.end():])
            until = m.end() + a.end() if a else -1
    bounds = [0] + cuts + [len(text)]
    parts = [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]
    return [re.sub(r"^(?:and|then) ?", "", p) for p in parts if re.sub(r"^(?:and|then) ?", "", p)]


def _worded_as(source: str, seg: str) -> bool:
    """`seg` is written in `source`, maybe with "the" added after its preposition, or stands for a
    pronoun of `source` ("in the drawer" for "in it", the drawer being named elsewhere)."""
    m = _PREP_RE.match(seg)
    prep, np = (m.group(1), seg[m.end():].strip()) if m else ("", seg)
    bare = re.sub(r"^the ", "", np)
    if any(_contains(source, " ".join(x for x in (prep, n) if x)) for n in (np, bare)):
        return True
    if not prep:  # "the puck back" for "it back", the puck named elsewhere: the words after it as written
        words = np.split()
        return any(_contains(source, f"{p} {' '.join(words[i:])}")
                   and _contains(source, re.sub(r"^the ", "", " ".join(words[:i])))
                   for i in range(1, len(words)) for p in ("it", "them"))
    return any(_contains(source, f"{prep} {p}") for p in ("it", "them")) and any(
        _contains(source, n) for n in (np, bare))


def problems(instruction: str, steps: list[str]) -> list[str]:
    """Everything wrong with `steps` as the subtasks of `instruction` ([] when nothing is)."""
    found = []
    if not 2 <= len(steps) <= 5:
        found.append(f"{len(steps)} steps (2-5 wanted)")
    source = normalise(instruction)
    text = " ".join(normalise(s) for s in steps)
    # A word the instruction writes where a verb goes (first, or after "and", "then", "to" or a
    # comma) is one of its verbs, in this list or not ("preheat the oven", "navigate to the sink").
    placed = {m.group(1) for m in re.finditer(r"(?:^|[,;]|\b(?:and|then|to)\b)\s*([a-z]+)", instruction.lower())}
    for raw in steps:
        step = normalise(raw)
        words = step.split()
        if not words or (words[0] not in VERBS and words[0] not in placed - DETERMINERS):
            found.append(f"{raw!r} does not start with a verb")
        for a, b in zip(words, words[1:] + [""]):
            if a in DETERMINERS and (b in VERBS - {"hand", "drive", "switch", "water", "set", "stack", "place", "lock", "plug", "hammer", "store", "drop", "screw", "tap", "cover", "turn", "press"}
                                     or b in DETERMINERS or _PREP_RE.fullmatch(b) or not b):
                found.append(f"{raw!r}: {a!r} before {b or 'the end'!r}")
            if a == b:
                found.append(f"{raw!r}: {a!r} twice")
        for seg in _segments(_body(step)):
            if seg in ("it", "them") or _worded_as(source, seg):
                continue
            found.append(f"{raw!r}: {seg!r} is not worded as in the instruction")
    missing = [w for w in dict.fromkeys(source.split())
               if w not in FUNCTION and not w.isdigit() and not _verb_form(w) and not _contains(text, w)]
    if missing:
        found.append(f"lost {', '.join(map(repr, missing))}")
    for seg in _segments(source):
        m = _PREP_RE.match(seg)
        rest = seg[m.end():].strip() if m else ""
        head = rest.split(" ")[0] if rest else ""
        if not m or head in VERBS or head in ("it", "them", "") or seg.startswith("of "):
            continue  # a purpose clause ("to open the drawer"), a pronoun, a bare particle, a noun's "of"
        if not any(_worded_as(normalise(s), seg) or _contains(normalise(s), seg) for s in steps):
            found.append(f"lost {seg!r}")
    return found
