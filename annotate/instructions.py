"""A small grammar for task instructions: clauses of verb, object and phrases, expanded into a plan
whose steps are worded the way a person would write them.

"pick up the black bowl on the stove and place it on the plate" -> clauses (pick, black bowl, "on
the stove"), (place, black bowl, "on the plate") -> plan [pick up the black bowl on the stove,
place the black bowl on the plate]. No model: a verb lexicon, prepositions that end a noun phrase,
pronouns that refer back, and verbless clauses that reuse the previous verb ("put the bowl on the
plate and the mug in the basket"). A step copies the instruction's own words (its determiners,
adjectives and every prepositional phrase: "out from under the coffee machine", "from one arm to
the other"), changing only the verb where a transport becomes pick then place and a pronoun into
what it stands for; a noun phrase written without a determiner gets "the" ("put rubbish in bin" ->
"pick up the rubbish"), never a determiner before a verb or a preposition. A verb outside the
lexicon that opens the instruction and is followed by a noun phrase ("dunk the ball into the
hoop") is kept as a verb of skill `other`, so its object and target are still known.
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
    "return": "place", "throw": "place", "toss": "place", "deliver": "place", "store": "place",
    "hand": "place", "give": "place", "leave": "place",
    "reach": "reach", "approach": "reach", "go to": "reach", "move to": "reach", "touch": "reach",
    "bypass": "reach",
    "push": "push", "sweep": "push", "slide": "push", "shove": "push", "nudge": "push",
    "knock": "push", "roll": "push", "hit": "push", "strike": "push", "hammer": "push", "kick": "push",
    "drive": "push",
    "pull": "pull", "drag": "pull", "tug": "pull", "yank": "pull", "unplug": "pull",
    "open": "open", "close": "close", "shut": "close",
    "turn on": "turn", "turn off": "turn", "turn": "turn", "rotate": "turn", "twist": "turn",
    "flip": "turn", "spin": "turn", "screw": "turn", "unscrew": "turn", "switch on": "turn",
    "switch off": "turn", "switch": "turn", "lock": "turn", "unlock": "turn",
    "press": "press", "push down": "press", "tap": "press", "poke": "press", "click": "press",
    "depress": "press",
    "insert": "insert", "plug": "insert", "slot": "insert",
    "pour": "other", "wipe": "other", "stir": "other", "fold": "other", "scoop": "other",
    "use": "other", "water": "other",
}
# Words before the verb that add nothing to what is done ("go push the block", "please open ...").
_FILLERS = {"go", "please", "now", "then", "also", "next", "first", "finally"}
# An imperative verb outside the lexicon: a first word followed by a definite noun phrase.
_UNKNOWN_VERB_RE = re.compile(r"^([a-z]+(?:-[a-z]+)?)\s+(?=(?:both\s+)?the\b)")
# Transport verbs a place subtask is worded with as "place"; others keep their own ("stack the
# block on the tower", "transfer the cube to the left arm").
_PLACE_WORDING = {"put", "put down", "place", "set", "lay", "deposit"}
# Verbs that pass an object from one holder to another: every phrase says where it goes.
_HANDOVER = {"hand", "give", "transfer", "pass"}
# Verbs named after the tool they are done with ("hammer the nail" = hit it with a hammer).
_TOOL_VERBS = {"hammer": "hammer", "brush": "brush", "shovel": "shovel", "mop": "mop"}
# What is used in place, not picked up ("use the switch to turn on the light").
_CONTROLS = {"switch", "button", "handle", "lever", "knob", "dial", "pedal", "trigger"}
_VERB_RE = re.compile(r"^(" + "|".join(sorted(map(re.escape, VERBS), key=len, reverse=True)) + r")\b")

# Prepositions that end the object noun phrase and introduce a phrase (longest first).
PREPOSITIONS = (
    "out from under", "out from behind", "on top of", "in front of", "next to", "to the left of",
    "to the right of", "inside of", "away from", "out of", "off of", "onto", "into", "inside", "under",
    "underneath", "below", "above", "over", "behind", "between", "beside", "toward", "towards",
    "through", "across", "around", "along", "against", "from", "off", "on", "in", "at", "to",
    "with", "near", "by", "using",
)
# Prepositions that say where a transported object ends up, preferred as the clause's target.
_PLACEMENT = {"on top of", "onto", "into", "inside", "inside of", "in", "on", "under", "underneath", "to",
              "at", "in front of", "next to", "to the left of", "to the right of", "between", "beside",
              "over", "above", "near", "toward", "towards", "around", "behind", "below", "across"}
_PREP_RE = re.compile(r"\b(" + "|".join(map(re.escape, PREPOSITIONS)) + r")\b")
_PURPOSE_RE = re.compile(r"\bto (?=(?:" + "|".join(sorted(map(re.escape, VERBS), key=len, reverse=True)) + r")\b)")
# Particles written between a verb and its object ("pull up the handle", "slide open the drawer").
_PARTICLE_RE = re.compile(r"^(up|down|out|off|away|back|over|open|closed|shut|in|on)\s+(?=(?:both\s+)?(?:the|a|an)\b)")
_DETERMINERS = {"the", "a", "an", "both", "its", "their", "some", "all", "each", "every", "this", "that", "these", "those"}
_PRONOUNS = {"it", "them", "that", "this"}
# Resultative words after the object ("pull the drawer open") describe the outcome, not the object.
_RESULTS = {"open", "opened", "closed", "close", "shut", "up", "down", "away", "out", "back", "sideways", "over",
            "upright", "in", "left", "right", "clockwise", "counter-clockwise", "counterclockwise", "forward",
            "backward", "aside", "off", "on"}
# A place phrase naming a spot, not an object ("at the front", "in the middle", "on the left"):
# it says which object is meant or where on the target, never the target itself.
_SPOTS = {"front", "back", "middle", "left", "right", "center", "centre", "side", "top", "bottom", "corner",
          "edge", "way"}
# Prepositions that say which way a moved object goes: with a spot ("to the left") the phrase is
# where a transport ends even though it names no object.
_DIRECTIONS = {"to", "toward", "towards", "into", "onto"}
# Skills that act on an object where it is (no transport).
_IN_PLACE = {"push", "pull", "open", "close", "turn", "press", "insert"}
# Parts of the robot itself: "move the gripper in front of the button" is about the button.
_EFFECTORS = {"gripper", "arm", "hand", "robot", "end effector", "end-effector", "effector"}
# The preposition that introduces a tool ("hit the nail with the hammer").
_INSTRUMENT = "with"


@dataclass(frozen=True)
class Phrase:
    """A prepositional phrase as written: "on the plate" = Phrase("on", "the plate")."""

    prep: str
    np: str  # may be empty: a particle ("hammer the nail in")

    @property
    def text(self) -> str:
        return f"{self.prep} {self.np}".strip()

    @property
    def head(self) -> str | None:
        return strip_determiners(self.np) or None

    @property
    def is_spot(self) -> bool:
        words = strip_determiners(self.np).split()
        return bool(words) and words[-1] in _SPOTS and " of " not in f" {self.np} "


@dataclass(frozen=True)
class Clause:
    verb: str
    skill: Skill
    obj: str | None  # the object, without its leading determiner (a key to compare objects by)
    prep: str | None = None
    target: str | None = None
    tool: str | None = None  # held to do the work: picked up first
    np: str = ""  # the object as written ("the black bowl", "rubbish")
    phrases: tuple[Phrase, ...] = ()  # every prepositional phrase after the object, as written
    tail: str = ""  # what follows the object and its phrases ("to open the drawer")
    lead: str = ""  # the verb as written, with a coordinated first verb ("grasp and lift")
    particle: str = ""  # result words written after the object ("back", "open", "up"): part of the verb

    @property
    def where_from(self) -> int:
        """Index of the first phrase that says where the object goes (the target phrase, else a
        direction: "to the left"); the phrases before it say which object is meant."""
        target = self.target_phrase
        if target is not None:
            return self.phrases.index(target)
        return next((i for i, p in enumerate(self.phrases) if p.prep in _DIRECTIONS and p.is_spot), len(self.phrases))

    @property
    def target_phrase(self) -> Phrase | None:
        return next((p for p in self.phrases if p.prep == self.prep and p.head == self.target), None)


@dataclass(frozen=True)
class Step:
    """One planned subtask: its skill, its instruction, and the object it names."""

    skill: Skill
    instruction: str
    obj: str | None


def _normalise(text: str) -> str:
    """Lower case, punctuation dropped except the commas and semicolons that separate clauses."""
    text = text.lower().replace("\u2019", "'")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s',;-]", " ", text)).strip()


def strip_determiners(phrase: str) -> str:
    """The phrase without its leading determiners and trailing result words ("the drawer open" -> "drawer")."""
    words = phrase.split()
    while words and words[0] in _DETERMINERS:
        words.pop(0)
    while len(words) > 1 and words[-1] in _RESULTS:
        words.pop()
    if len(words) > 2 and words[-2].isdigit() and not words[0].isdigit():
        words = words[:-2]  # "the dial 180 degrees": a measure of the action, not of the object
    return " ".join(words)


def the_object(obj: str | None) -> str:
    """How a planned instruction names an object: "the <obj>", or "the object" when none is known."""
    if not obj:
        return "the object"
    first = obj.split()[0]
    return obj if first in _DETERMINERS or first in _PRONOUNS or first.isdigit() else f"the {obj}"


def _particle(np: str) -> tuple[str, str]:
    """"the puck back" -> ("the puck", "back"): result words written after the object belong to the
    verb ("move the puck back", "pick the cup up"), not to the object's name."""
    words = np.split()
    cut = len(words)
    while cut > 1 and words[cut - 1] in _RESULTS and strip_determiners(" ".join(words[: cut - 1])):
        cut -= 1
    return " ".join(words[:cut]), " ".join(words[cut:])


def _split_phrases(rest: str) -> tuple[str, tuple[Phrase, ...], str]:
    """`the black bowl on the stove to open it` -> ("the black bowl", (on the stove,), "to open it").

    The object ends at the first preposition; each phrase runs to the next preposition, except that
    "between" takes its "and" ("between the plate and the ramekin"). "to" before a verb starts the
    tail, a purpose clause ("pull the handle to open the drawer").
    """
    tail = ""
    purpose = _PURPOSE_RE.search(rest)
    if purpose is not None:
        rest, tail = rest[: purpose.start()].strip(), rest[purpose.start():].strip()
    starts: list[re.Match] = []
    until = -1  # the end of a "between X and Y" phrase
    for m in _PREP_RE.finditer(rest):
        if m.start() < until:
            continue
        starts.append(m)
        if m.group(1) == "between" and (a := re.search(r"\band\b", rest[m.end():])) is not None:
            after = rest[m.end() + a.end():]
            nxt = _PREP_RE.search(after)
            until = m.end() + a.end() + (nxt.start() if nxt else len(after))
    if not starts:
        return rest.strip(), (), tail
    phrases = []
    for m, nxt in zip(starts, starts[1:] + [None]):
        end = nxt.start() if nxt is not None else len(rest)
        phrases.append(Phrase(m.group(1), rest[m.end(): end].strip()))
    return rest[: starts[0].start()].strip(), tuple(phrases), tail


def _chunks(text: str) -> list[str]:
    """Split on "and"/"then"/commas only where a new clause starts, not inside a noun phrase."""
    parts = re.split(r"\s*(?:,|;|\bthen\b|\band\b|\bafter that\b)\s*", text)
    chunks: list[str] = []
    for part in (p for p in parts if p):
        # A verbless part continues the previous noun phrase ("between the plate and the ramekin",
        # "put the yellow and white mug on ...") unless both parts carry their own preposition
        # ("put the bowl on the plate and the mug in the basket").
        continues = chunks and not _VERB_RE.match(_unfilled(part)) and not (
            _PREP_RE.search(part) and _PREP_RE.search(chunks[-1])
        )
        if continues:
            chunks[-1] = f"{chunks[-1]} and {part}"
        else:
            chunks.append(part)
    return chunks


def _imperative(chunk: str) -> str:
    """"grasping the lid" -> "grasp the lid": a known verb's -ing form opening a clause."""
    first, _, rest = chunk.partition(" ")
    if first.endswith("ing") and not _VERB_RE.match(chunk):
        stem = first[:-3]
        for verb in (stem, stem + "e", stem[:-1]):
            if verb in VERBS:
                return f"{verb} {rest}".strip()
    return chunk


def _unfilled(chunk: str) -> str:
    words = chunk.split()
    while len(words) > 1 and words[0] in _FILLERS and _VERB_RE.match(" ".join(words[1:])):
        words.pop(0)
    return " ".join(words)


def _target(skill: Skill, phrases: tuple[Phrase, ...]) -> Phrase | None:
    """The phrase that says where a transported object goes (or what an in-place verb acts toward):
    the first placement phrase that names an object, not a spot."""
    placing = [p for p in phrases if p.prep in _PLACEMENT and p.np and not p.is_spot]
    if skill == "pick":
        return None
    if placing:
        return placing[0]
    return next((p for p in phrases if p.np and not p.is_spot), None) if skill != "place" else None


def parse(instruction: str) -> list[Clause]:
    """The clauses of an instruction, with pronouns resolved; [] when no verb is recognised."""
    clauses: list[Clause] = []
    last: Clause | None = None
    pending_lead: str | None = None  # a verb with no object of its own ("grasp and lift the block")
    for chunk in map(_unfilled, _chunks(_normalise(instruction))):
        chunk = _imperative(chunk)
        m = _VERB_RE.match(chunk)
        if m is not None:
            verb, rest = m.group(1), chunk[m.end():].strip()
        elif clauses:
            verb, rest = clauses[-1].verb, chunk
        elif (u := _UNKNOWN_VERB_RE.match(chunk)) is not None:
            verb, rest = u.group(1), chunk[u.end():].strip()
        else:
            continue
        skill: Skill = VERBS.get(verb, "other")
        particle = _PARTICLE_RE.match(rest)
        if particle is not None and not (skill == "place" and particle.group(1) in ("in", "on")):
            verb_text, rest = f"{verb} {particle.group(1)}", rest[particle.end():]
        else:
            verb_text = verb
        if not rest:
            pending_lead = f"{pending_lead} and {verb}" if pending_lead else verb
            continue
        lead = f"{pending_lead} and {verb_text}" if pending_lead else verb_text
        pending_lead = None
        np, phrases, tail = _split_phrases(rest)
        tool = None
        if verb == "use" and tail.startswith("to "):
            # "use the stick to push the thermos": the stick is the tool, the thermos the object.
            inner = parse(tail[3:])
            if inner:
                if np in _PRONOUNS and last is not None:  # "pick up the stick and use it to ..."
                    np = last.np
                used = strip_determiners(np)
                tool = None if used.split()[-1:] and used.split()[-1] in _CONTROLS else used
                c = inner[0]
                clauses.append(Clause("use", c.skill, (c.obj if tool else used) or used, c.prep, c.target, tool,
                                      np, phrases, tail, lead))
                last = clauses[-1]
                continue
        # "both the soup and the sauce in the basket": each object is its own clause.
        nps = re.split(r"\s+and\s+", np) if np.startswith("both ") else [np]
        for one in nps:
            one, particle = _particle(one.removeprefix("both ").strip())
            obj = strip_determiners(one) or None
            if obj is None and skill in ("pick", "place") and last is not None:
                one, obj = last.np, last.obj  # "grab the cheese and put into the basket": the cheese
            if obj is None and phrases and phrases[0].np:  # "reach under the lever": about the lever
                obj = phrases[0].head
            if obj in _PRONOUNS and last is not None:
                # "put the butter in the drawer and close it": what is closed is where the butter
                # went; "pick up the puck and place it": what is placed is the puck.
                ref_np, ref = (last.target_phrase.np, last.target) if (
                    skill in _IN_PLACE and last.target and last.target_phrase is not None) else (last.np, last.obj)
                one, obj = re.sub(r"^an? ", "the ", ref_np or one), (ref or obj)  # "a nut ... it": the nut
            phrases = tuple(Phrase(p.prep, _resolve(p.np, last)) for p in phrases)
            target = _target(skill, phrases)
            if obj in _EFFECTORS and target is not None:
                # "move the gripper to the button" reaches the button; "insert the gripper into the
                # hole" inserts it: about the hole either way, worded as written.
                moved: Skill = "reach" if skill in ("place", "reach") else skill
                clauses.append(Clause(verb, moved, target.head, np=one, phrases=phrases, tail=tail, lead=lead,
                                      particle=particle))
            else:
                prep, tgt = (target.prep, target.head) if target is not None and target.head != obj else (None, None)
                tool = _tool(verb, skill, phrases)
                clauses.append(Clause(verb, skill, obj, prep, tgt, tool, one, phrases, tail, lead, particle))
            last = clauses[-1]
    return clauses


def _resolve(np: str, last: Clause | None) -> str:
    """A pronoun standing for a noun phrase is written as that phrase ("on top of it" -> "on top of
    the plate"; "the" added where the phrase was written without one: "put pot on it")."""
    if last is not None and np in _PRONOUNS:
        ref = (last.target_phrase.np if last.target_phrase is not None else "") or last.np
        return the_object(ref) if ref else np
    return np


def _tool(verb: str, skill: Skill, phrases: tuple[Phrase, ...]) -> str | None:
    """The tool a clause is done with: named by the verb, or introduced by "with" (an in-place
    action done with a held object; not a part of the robot, and not for transport verbs, where
    "with" describes the object: "pick up the mug with the red lid")."""
    if verb in _TOOL_VERBS:
        return _TOOL_VERBS[verb]
    used = next((p.head for p in phrases if p.prep in (_INSTRUMENT, "using") and p.head), None)
    if used and used not in _EFFECTORS and used.split()[-1] not in _EFFECTORS and skill in _IN_PLACE | {"other"}:
        if used.split()[-1] in {"wall", "way"}:  # "with a short wall in the way": an obstacle
            return None
        return used
    return None


def _words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@lru_cache(maxsize=1024)
def plan(instruction: str) -> tuple[Step, ...]:
    """Subtasks the instruction implies, in order.

    A transport verb becomes pick then place (consecutive picks of one object collapse): the pick
    keeps the phrases that say which object ("on the stove"), the place those that say where it
    goes. A verb acting in place is one subtask, approach included, worded as written, preceded by
    picking up its tool when it is done with one ("hammer the nail in": pick up the hammer, hammer
    the nail in). Only when that leaves fewer than MIN_SUBTASKS is the approach its own subtask
    ("open the drawer": reach it, then open it; the backend calls the approach a grasp when it ends
    with the gripper closing; "reach the red target": approach it, then reach it). Result words
    after the object ("move the puck back to the goal", "pick the cup up") stay with the verb; a
    direction ("carry it to the left") says where a transport ends, like a target.
    """
    steps: list[Step] = []
    carrying: str | None = None  # the object of the last transport that named no target
    for c in parse(instruction):
        named = the_object(c.np if c.np and c.np not in _PRONOUNS else c.obj)  # for the steps we word
        written = c.np  # for the steps worded as the instruction is
        k = c.where_from
        while k and (c.verb in _HANDOVER or not c.phrases[k - 1].np):  # particles go with the verb
            k -= 1
        which = " ".join(p.text for p in c.phrases[:k])  # which object: "on the stove"
        where = " ".join(p.text for p in c.phrases[k:])  # where it goes: "on the plate"
        # Still in hand: just picked, or carried somewhere that is no object to leave it on ("carry
        # the lid sideways and put it down").
        held = bool(steps) and steps[-1].obj == c.obj and (steps[-1].skill == "pick" or carrying == c.obj)
        if c.tool and not (steps and steps[-1].skill == "pick" and steps[-1].obj == c.tool):
            steps.append(Step("pick", f"pick up {the_object(c.tool)}", c.tool))
        if c.verb == "use":
            steps.append(Step(c.skill, _words(c.lead, written, c.particle, which, where, c.tail), c.obj))
        elif c.skill == "place":
            if not held:  # the pick leaves out how the object is moved ("back", "down")
                steps.append(Step("pick", _words("pick up", named, which), c.obj))
            # "put the cup back on the shelf": a particle is read with the verb it was written with
            wording = "place" if c.lead in _PLACE_WORDING and not c.particle else c.lead.split(" and ")[-1]
            steps.append(Step("place", _words(wording, named, c.particle, where, c.tail), c.obj))
            carrying = c.obj if c.target is None else None
        elif c.skill == "pick":
            named = _words(named, c.particle)
            lead = "pick up" if c.lead == "pick" and not c.particle else c.lead  # "pick the cup up"
            carried = c.np in _PRONOUNS or held
            if carried and any(p.prep in _PLACEMENT and p.np and not p.is_spot for p in c.phrases):
                # "pick up the puck and hold it at the target location": the held object is carried
                steps.append(Step("place", _words(lead, named, which, where, c.tail), c.obj))
            else:  # a second pick verb of the same object says more of the same pick ("grasp the
                # lid, lift it from the table"): one subtask, worded by the later verb
                if held:
                    steps.pop()
                steps.append(Step("pick", _words(lead, named, which, where, c.tail), c.obj))
        elif c.skill == "reach":
            steps.append(Step("reach", _words(c.lead, written, c.particle, which, where), c.obj))
        else:
            steps.append(Step(c.skill, _words(c.lead, written or named, c.particle, which, where, c.tail), c.obj))
    if 0 < len(steps) < MIN_SUBTASKS:
        # One motion: its approach is a subtask of its own; a task that is only a reach is first
        # the journey toward its object, then the arrival there, worded as written.
        first = steps[0]
        verb = "approach" if first.skill == "reach" else "reach"
        steps.insert(0, Step("reach", f"{verb} {the_object(first.obj)}", first.obj))
    return tuple(steps)


def object_of(instruction: str) -> str | None:
    """The object a subtask instruction names (the first clause's object)."""
    clauses = parse(instruction)
    return clauses[0].obj if clauses else None
