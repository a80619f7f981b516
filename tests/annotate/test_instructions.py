"""The instruction grammar: objects, targets, pronouns, verbless clauses; and object matching."""

import pytest

from atomvla.annotate.evaluation.objects import object_hits, same_object
from atomvla.annotate.instructions import object_of, parse, plan
from atomvla.schemas import Subtask


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("pick up the puck and place it at the goal", [("pick", "puck", None), ("place", "puck", "goal")]),
        ("open the drawer", [("open", "drawer", None)]),
        ("Pick up the red block, then stack it on the green block.", [("pick", "red block", None), ("place", "red block", "green block")]),
        (
            "pick up the black bowl between the plate and the ramekin and place it on the plate",
            [("pick", "black bowl", None), ("place", "black bowl", "plate")],
        ),
        ("put the bowl on the plate and the mug in the basket", [("place", "bowl", "plate"), ("place", "mug", "basket")]),
        ("put both the alphabet soup and the tomato sauce in the basket", [("place", "alphabet soup", "basket"), ("place", "tomato sauce", "basket")]),
        ("turn on the stove and put the moka pot on it", [("turn", "stove", None), ("place", "moka pot", "stove")]),
        ("move the gripper in front of the button", [("reach", "button", None)]),
        ("pull the drawer open", [("pull", "drawer", None)]),
        ("reach under the lever", [("reach", "lever", None)]),
        (
            "put the butter at the front in the top drawer of the cabinet and close it",
            [("place", "butter", "top drawer of the cabinet"), ("close", "top drawer of the cabinet", None)],
        ),
    ],
)
def test_parse(instruction, expected):
    assert [(c.skill, c.obj, c.target) for c in parse(instruction)] == expected


def test_plan_expands_transport_and_in_place_verbs():
    assert [(s.skill, s.instruction) for s in plan("pick up the puck and place it at the goal")] == [
        ("pick", "pick up the puck"),
        ("place", "place the puck at the goal"),
    ]
    assert [s.skill for s in plan("open the drawer")] == ["reach", "open"]
    assert [(s.skill, s.obj) for s in plan("put the bowl on the plate and the mug in the basket")] == [
        ("pick", "bowl"), ("place", "bowl"), ("pick", "mug"), ("place", "mug"),
    ]
    # An in-place verb after other subtasks includes its approach; alone, the approach is a subtask.
    assert [(s.skill, s.instruction) for s in plan("put the bowl in the drawer and close it")] == [
        ("pick", "pick up the bowl"), ("place", "place the bowl in the drawer"), ("close", "close the drawer"),
    ]
    assert [s.skill for s in plan("pick up the cube")] == ["reach", "pick"]
    assert plan("dance a little") == ()


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("drawer", "drawer handle", True), ("black bowl", "white bowl", False), ("blocks", "block", True),
     ("bowl", "black bowl", True), ("mug", None, False)],
)
def test_same_object(a, b, same):
    assert same_object(a, b) is same


def test_object_hits_pair_subtasks_by_overlap():
    truth = [
        Subtask(start_frame=0, end_frame=40, instruction="reach the drawer handle", skill="reach"),
        Subtask(start_frame=40, end_frame=100, instruction="pull the drawer open", skill="open"),
    ]
    pred = [
        Subtask(start_frame=0, end_frame=45, instruction="reach the drawer", skill="reach"),
        Subtask(start_frame=45, end_frame=100, instruction="open the cabinet", skill="open"),
    ]
    assert object_of("reach the drawer handle") == "drawer handle"
    assert object_hits(pred, truth) == [True, False]


@pytest.mark.parametrize(
    ("instruction", "skill"),
    [("lower the ring onto the peg", "place"), ("hang the mug on the rack", "place"), ("fetch the cup", "pick"),
     ("nudge the block left", "push"), ("knock the can over", "push"), ("yank the cord", "pull"),
     ("unscrew the cap", "turn"), ("switch on the lamp", "turn"), ("tap the screen", "press"),
     ("slot the card into the reader", "insert"), ("move to the shelf", "reach"), ("wipe the table", "other")],
)
def test_verbs_map_to_the_skill_vocabulary(instruction, skill):
    assert parse(instruction)[0].skill == skill


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        # a verb named after its tool: the tool is picked up first
        ("hammer the nail in", [("pick", "pick up the hammer"), ("push", "hammer the nail in")]),
        # "with" + a held object names the tool of an in-place action
        ("hit the nail with the hammer", [("pick", "pick up the hammer"), ("push", "hit the nail with the hammer")]),
        ("pick up the sponge and wipe the table with it",
         [("pick", "pick up the sponge"), ("other", "wipe the table with the sponge")]),
        # not a tool: a part of the robot, or a detail of a transported object
        ("press the button with the gripper", [("reach", "reach the button"), ("press", "press the button with the gripper")]),
        ("pick up the mug with the red lid", [("reach", "reach the mug"), ("pick", "pick up the mug with the red lid")]),
    ],
)
def test_tools_are_picked_up_before_they_are_used(instruction, expected):
    assert [(s.skill, s.instruction) for s in plan(instruction)] == expected


def test_an_unknown_verb_keeps_its_object_and_target():
    [clause] = parse("Dunk the ball into the hoop.")
    assert (clause.verb, clause.skill, clause.obj, clause.target) == ("dunk", "other", "ball", "hoop")
    assert [(s.skill, s.instruction) for s in plan("dunk the ball into the hoop")] == [
        ("reach", "reach the ball"), ("other", "dunk the ball into the hoop"),
    ]
    assert plan("dance a little") == ()  # no definite object: nothing to name


def test_commas_separate_clauses_and_place_keeps_a_specific_verb():
    task = "pick up the socket with the left arm, pick up the peg with the right arm and insert the peg into the socket"
    assert [s.instruction for s in plan(task)] == [
        "pick up the socket with the left arm", "pick up the peg with the right arm", "insert the peg into the socket"]
    assert [s.instruction for s in plan("pick up the cube with the right arm and transfer it to the left arm")] == [
        "pick up the cube with the right arm", "transfer the cube to the left arm",
    ]
    assert plan("put the bowl on the plate")[-1].instruction == "place the bowl on the plate"


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [  # result words after the object stay with the verb, and out of a transport's pick
        ("move the cup back to the coaster", ["pick up the cup", "move the cup back to the coaster"]),
        ("pick the sponge up and put it back in the sink", ["pick the sponge up", "put the sponge back in the sink"]),
        ("lift the lid up and set it aside", ["lift the lid up", "set the lid aside"]),
        ("knock the bottle over", ["reach the bottle", "knock the bottle over"]),
        # a verb whose particle follows the object, written with or without determiners
        ("switch kettle off and move it to the tray",
         ["switch kettle off", "pick up the kettle", "move the kettle to the tray"]),
        # a direction is where a transport ends; a carried object is not picked up again
        ("slide the tray to the left", ["reach the tray", "slide the tray to the left"]),
        ("carry the bowl to the right and put it down", ["pick up the bowl", "carry the bowl to the right", "put the bowl down"]),
        ("pick up the bowl on the left and place it on the plate", ["pick up the bowl on the left", "place the bowl on the plate"]),
        # a task that is only a reach: the journey, then the arrival, worded as written
        ("reach the blue sphere", ["approach the blue sphere", "reach the blue sphere"]),
        ("go to the red marker", ["approach the red marker", "go to the red marker"]),
        # a pronoun with nothing before it stays a pronoun; one after a pick is the picked object
        ("push it to the right", ["reach it", "push it to the right"]),
        ("pick up the stick and use it to push the cube", ["pick up the stick", "use the stick to push the cube"]),
    ],
)
def test_particles_directions_and_reach_only_tasks(instruction, expected):
    assert [s.instruction for s in plan(instruction)] == expected
    assert [s.skill for s in plan("reach the blue sphere")] == ["reach", "reach"]


# -- wordings from public benchmarks (tests/annotate/data/task_wordings.jsonl): a dev split the
# grammar was developed on, a held-out split scored only once it was done, and a fresh held-out
# split built later from other benchmarks and scored once -----------------------------------

from tests.annotate.wording_checks import load, problems  # noqa: E402


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [  # the failures the issue names, and how a person writes them
        ("use the stick to pull the thermos", ["pick up the stick", "use the stick to pull the thermos"]),
        ("hand the hammer over from one arm to the other",
         ["pick up the hammer", "hand the hammer over from one arm to the other"]),
        ("pull the mug out from under the coffee machine",
         ["reach the mug", "pull the mug out from under the coffee machine"]),
        ("use the hammer to drive the nail in", ["pick up the hammer", "use the hammer to drive the nail in"]),
        ("open the top drawer of the cabinet and put the bowl in it",
         ["open the top drawer of the cabinet", "pick up the bowl", "place the bowl in the top drawer of the cabinet"]),
        ("pick up the black bowl on the stove and place it on the plate",
         ["pick up the black bowl on the stove", "place the black bowl on the plate"]),
        ("grab cream cheese and put into basket", ["grab the cream cheese", "place the cream cheese into basket"]),
    ],
)
def test_steps_read_as_a_person_writes_them(instruction, expected):
    assert [s.instruction for s in plan(instruction)] == expected


@pytest.mark.parametrize(
    ("instruction", "steps"),
    [(  "use the stick to pull the thermos", ["reach the stick", "use the stick to the pull thermos"]),
     ("hand the hammer over from one arm to the other", ["reach the hammer", "hand the hammer over the from one arm to other"]),
     ("pull the mug out from under the coffee machine", ["reach the mug", "pull the mug under the coffee machine"]),
     ("use the hammer to drive the nail in", ["reach the hammer", "use the hammer"]),
     ("close the top drawer of the cabinet", ["reach the top drawer of cabinet", "close the top drawer of cabinet"]),
     ("pick up the cube", ["pick up the cube"])],
)
def test_the_checks_catch_what_the_old_grammar_wrote(instruction, steps):
    assert problems(instruction, steps)


def test_public_benchmark_wordings_dev_split():
    rows = load("dev")
    failed = {r["text"]: problems(r["text"], [s.instruction for s in plan(r["text"])]) for r in rows}
    failed = {k: v for k, v in failed.items() if v}
    assert len(rows) >= 200
    assert 1 - len(failed) / len(rows) >= 0.97, failed


def test_public_benchmark_wordings_held_out_split():
    rows = load("heldout")
    failed = {r["text"]: problems(r["text"], [s.instruction for s in plan(r["text"])]) for r in rows}
    failed = {k: v for k, v in failed.items() if v}
    assert len(rows) >= 100
    assert 1 - len(failed) / len(rows) >= 0.90, failed  # the bar was set before the split was scored


def test_public_benchmark_wordings_fresh_held_out_split():
    """Wordings taken whole from RoboCasa's task code (one-sentence fixed wordings), LIBERO-PRO's
    task perturbations and a seeded sample of RLBench's variation descriptions, none in the splits
    above, scored once when the grammar's classes (particles, directions, reach-only) were done."""
    rows = load("fresh")
    failed = {r["text"]: problems(r["text"], [s.instruction for s in plan(r["text"])]) for r in rows}
    failed = {k: v for k, v in failed.items() if v}
    assert len(rows) >= 100
    assert 1 - len(failed) / len(rows) >= 0.75, failed  # the bar was set before the split was scored
