"""A small grammar for task instructions: clauses of verb, object and target, expanded into a plan.

"pick up the black bowl and place it on the plate" -> clauses (pick, black bowl), (place, black
bowl, on the plate) -> plan [pick black bowl, place black bowl on the plate]. No model: a verb
lexicon, prepositions that end a noun phrase, pronouns that refer back, and verbless clauses that
reuse the previous verb ("put the bowl on the plate and the mug in the basket"). A verb outside the
lexicon that opens the instruction and is followed by a definite noun phrase ("dunk the ball into
the hoop") is kept as a verb of skill `other`, so its object and target are still known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from atomvla.schemas import MIN_SUBTASKS, Skill

# Verb phrase -> skill. Multi-word phrases are matched before single words. Verbs of force are
# split by what they do to the object: "push" moves it or drives it in (a struck nail, a swept
# cube); "press" works a control that yields in place (a button, a handle, a switch).
VERBS: dict[str, Skill] = {
    "pick up": "pick", "pick": "pick", "grasp": "pick", "grab": "pick", "lift": "pick",
    "take": "pick", "hold": "pick", "raise": "pick", "fetch": "pick", "retrieve": "pick",
    "get": "pick", "remove": "pick", "collect": "pick",
    "put down": "place", "put": "place", "place": "place", "set": "place", "drop": "place",
    "stack": "place", "move": "place", "bring": "place", "carry": "place", "transfer": "place",
    "lower": "place", "lay": "place", "hang": "place", "load": "place", "deposit": "place",
    "return": "place", "throw": "place", "toss": "place", "deliver": "place",
    "reach": "reach", "approach": "reach", "go to": "reach", "move to": "reach", "touch": "reach",
    "push": "push", "sweep": "push", "slide": "push", "shove": "push", "nudge": "push",
    "knock": "push", "roll": "push", "hit": "push", "strike": "push", "hammer": "push",
    "pull": "pull", "drag": "pull", "tug": "pull", "yank": "pull", "unplug": "pull",
    "open": "open", "close": "close", "shut": "close",
    "turn on": "turn", "turn off": "turn", "turn": "turn", "rotate": "turn", "twist": "turn",
    "flip": "turn", "spin": "turn", "screw": "turn", "unscrew": "turn", "switch on": "turn",
    "switch off": "turn",
    "press": "press", "push down": "press", "tap": "press", "poke": "press", "click": "press",
    "depress": "press",
    "insert": "insert", "plug": "insert", "slot": "insert",
    "pour": "other", "wipe": "other", "stir": "other", "fold": "other", "scoop": "other",
}
# An imperative verb outside the lexicon: a first word followed by a definite noun phrase.
_UNKNOWN_VERB_RE = re.compile(r"^([a-z]+(?:-[a-z]+)?)\s+(?=(?:both\s+)?the\b)")
# Transport verbs a place subtask is worded with as "place"; others keep their own ("stack the
# block on the tower", "transfer the cube to the left arm").
_PLACE_WORDING = {"put", "put down", "place", "set", "lay", "deposit"}
# Verbs named after the tool they are done with ("hammer the nail" = hit it with a hammer).
_TOOL_VERBS = {"hammer": "hammer", "brush": "brush", "shovel": "shovel", "mop": "mop"}
_VERB_RE = re.compile(r"^(" + "|".join(sorted(map(re.escape, VERBS), key=len, reverse=True)) + r")\b")

# Prepositions that end the object noun phrase and introduce the target (longest first).
PREPOSITIONS = (
    "on top of", "in front of", "next to", "to the left of", "to the right of", "inside of",
    "out of", "onto", "into", "inside", "under", "underneath", "below", "above", "over",
    "behind", "between", "toward", "towards", "through", "across", "from", "off", "on", "in",
    "at", "to", "with", "near", "by",
)
# Prepositions that say where a transported object ends up, preferred as the clause's target.
_PLACEMENT = {"on top of", "onto", "into", "inside", "inside of", "in", "on", "under", "underneath"}
_PREP_RE = re.compile(r"\b(" + "|".join(map(re.escape, PREPOSITIONS)) + r")\b")
_DETERMINERS = {"the", "a", "an", "both", "its", "their", "some"}
_PRONOUNS = {"it", "them", "that", "this"}
# Resultative words after the object ("pull the drawer open") describe the outcome, not the object.
_RESULTS = {"open", "opened", "closed", "shut", "up", "down", "away", "out", "back"}
# Skills that act on an object where it is (no transport).
_IN_PLACE = {"push", "pull", "open", "close", "turn", "press", "insert"}
# Parts of the robot itself: "move the gripper in front of the button" is about the button.
_EFFECTORS = {"gripper", "arm", "hand", "robot", "end effector", "end-effector", "effector"}
# The preposition that introduces a tool ("hit the nail with the hammer").
_INSTRUMENT = "with"


@dataclass(frozen=True)
class Clause:
    verb: str
    skill: Skill
    obj: str | None
    prep: str | None = None
    target: str | None = None
    tool: str | None = None  # held to do the work: picked up first


@dataclass(frozen=True)
class Step:
    """One planned subtask: its skill, its instruction, and the object it names."""

    skill: Skill
    instruction: str
    obj: str | None


def _normalise(text: str) -> str:
    """Lower case, punctuation dropped except the commas and semicolons that separate clauses."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s',;-]", " ", text.lower())).strip()


def strip_determiners(phrase: str) -> str:
    words = [w for w in phrase.split() if w not in _DETERMINERS]
    while len(words) > 1 and words[-1] in _RESULTS:
        words.pop()
    return " ".join(words)


def _split_np(rest: str) -> tuple[str, str | None, str | None]:
    """`the black bowl on the plate` -> ("the black bowl", "on", "the plate").

    The object ends at the first preposition; the target follows a containment or support
    preposition when there is one ("the butter at the front in the drawer" goes in the drawer),
    else the first preposition.
    """
    found = list(_PREP_RE.finditer(rest))
    if not found:
        return rest.strip(), None, None
    m = next((f for f in found if f.group(1) in _PLACEMENT), found[0])
    target = rest[m.end():].strip() or None
    inner = _PREP_RE.search(target) if target else None
    if inner is not None and inner.start() > 0:
        target = target[: inner.start()].strip()  # "on the plate next to the mug": the rest is detail
    return rest[: found[0].start()].strip(), m.group(1), target


def _chunks(text: str) -> list[str]:
    """Split on "and"/"then"/commas only where a new clause starts, not inside a noun phrase."""
    parts = re.split(r"\s*(?:,|;|\bthen\b|\band\b|\bafter that\b)\s*", text)
    chunks: list[str] = []
    for part in (p for p in parts if p):
        # A verbless part continues the previous noun phrase ("between the plate and the ramekin",
        # "put the yellow and white mug on ...") unless both parts carry their own preposition
        # ("put the bowl on the plate and the mug in the basket").
        continues = chunks and not _VERB_RE.match(part) and not (
            _PREP_RE.search(part) and _PREP_RE.search(chunks[-1])
        )
        if continues:
            chunks[-1] = f"{chunks[-1]} and {part}"
        else:
            chunks.append(part)
    return chunks


def parse(instruction: str) -> list[Clause]:
    """The clauses of an instruction, with pronouns resolved; [] when no verb is recognised."""
    clauses: list[Clause] = []
    last_obj: str | None = None
    last_target: str | None = None
    for chunk in _chunks(_normalise(instruction)):
        m = _VERB_RE.match(chunk)
        if m is not None:
            verb, skill, rest = m.group(1), VERBS[m.group(1)], chunk[m.end():].strip()
        elif clauses:
            verb, skill, rest = clauses[-1].verb, clauses[-1].skill, chunk
        elif (u := _UNKNOWN_VERB_RE.match(chunk)) is not None:
            verb, skill, rest = u.group(1), "other", chunk[u.end():].strip()
        else:
            continue
        obj, prep, target = _split_np(rest)
        # "both the soup and the sauce in the basket": each object is its own clause.
        objects = re.split(r"\s+and\s+", obj) if obj.startswith("both ") else [obj]
        for o in objects:
            o = strip_determiners(o) or None
            if o is None and target:  # "reach under the lever": the lever is what it is about
                o, prep, target = strip_determiners(target), None, None
            if o in _PRONOUNS:
                # "put the butter in the drawer and close it": what is closed is where the butter
                # went; "pick up the puck and place it": what is placed is the puck.
                o = last_target if skill in _IN_PLACE and last_target else last_obj
            t = strip_determiners(target) if target else None
            if t in _PRONOUNS:
                t = last_obj
            if o in _EFFECTORS and t:  # "move the gripper to the button" reaches the button
                clauses.append(Clause(verb, "reach", t))
            else:
                clauses.append(Clause(verb, skill, o, prep, t, _tool(verb, skill, prep, t)))
            last_obj = clauses[-1].obj or last_obj
            last_target = clauses[-1].target or last_target
    return clauses


def _tool(verb: str, skill: Skill, prep: str | None, target: str | None) -> str | None:
    """The tool a clause is done with: named by the verb, or introduced by "with" (an in-place
    action done with a held object; not a part of the robot, and not for transport verbs, where
    "with" describes the object: "pick up the mug with the red lid")."""
    if verb in _TOOL_VERBS:
        return _TOOL_VERBS[verb]
    if prep == _INSTRUMENT and target and target not in _EFFECTORS and skill in _IN_PLACE | {"other"}:
        return target
    return None


def the_object(obj: str | None) -> str:
    """How a planned instruction names an object: "the <obj>", or "the object" when none is known."""
    return f"the {obj}" if obj else "the object"


@lru_cache(maxsize=1024)
def plan(instruction: str) -> tuple[Step, ...]:
    """Subtasks the instruction implies, in order.

    A transport verb becomes pick then place (consecutive picks of one object collapse); a verb
    acting in place is one subtask, approach included, preceded by picking up its tool when it
    is done with one ("hammer the nail in": pick up the hammer, hammer the nail). Only when that
    leaves fewer than MIN_SUBTASKS is the approach its own subtask ("open the drawer": reach it, then open it; the
    backend calls the approach a grasp when it ends with the gripper closing).
    """
    steps: list[Step] = []
    for c in parse(instruction):
        target = f" {c.prep} {the_object(c.target)}" if c.prep and c.target else ""
        pick = Step("pick", f"pick up {the_object(c.obj)}", c.obj)
        if c.skill in ("pick", "place") and not (steps and steps[-1] == pick):
            steps.append(pick)
        if c.tool and not (steps and steps[-1].skill == "pick" and steps[-1].obj == c.tool):
            steps.append(Step("pick", f"pick up {the_object(c.tool)}", c.tool))
        if c.skill == "place":
            wording = "place" if c.verb in _PLACE_WORDING else c.verb
            steps.append(Step("place", f"{wording} {the_object(c.obj)}{target}", c.obj))
        elif c.skill == "reach":
            steps.append(Step("reach", f"reach {the_object(c.obj)}", c.obj))
        elif c.skill != "pick":
            steps.append(Step(c.skill, f"{c.verb} {the_object(c.obj)}{target}", c.obj))
    if 0 < len(steps) < MIN_SUBTASKS and steps[0].skill != "reach":
        steps.insert(0, Step("reach", f"reach {the_object(steps[0].obj)}", steps[0].obj))
    return tuple(steps)


def object_of(instruction: str) -> str | None:
    """The object a subtask instruction names (the first clause's object)."""
    clauses = parse(instruction)
    return clauses[0].obj if clauses else None
