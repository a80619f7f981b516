import json

import pytest
from pydantic import ValidationError

from atomvla.schemas import (
    SKILLS,
    Decomposition,
    DecompositionError,
    InterchangeRecord,
    Status,
    Subtask,
    check_subtasks,
    decomposition_json_schema,
)


def subtasks(*bounds: int, skill: str = "pick") -> list[Subtask]:
    return [
        Subtask(start_frame=a, end_frame=b, instruction=f"step {i}", skill=skill)
        for i, (a, b) in enumerate(zip(bounds, bounds[1:]))
    ]


def test_valid_decomposition_has_its_boundaries():
    dec = Decomposition(episode_id="d/0", n_frames=30, subtasks=subtasks(0, 10, 20, 30), author="me")
    assert dec.boundaries == [10, 20]
    assert check_subtasks(dec.subtasks, 30) == []


@pytest.mark.parametrize(
    ("bounds", "n_frames", "expected"),
    [
        ((0, 30), 30, "has 1 subtasks; a decomposition needs 2-5"),
        ((0, 5, 10, 15, 20, 25, 30), 30, "has 6 subtasks"),
        ((1, 10, 30), 30, "subtask 1 starts at frame 1; the first must start at 0"),
        ((0, 10, 29), 30, "subtask 2 ends at frame 29; the last must end at n_frames=30"),
        ((0, 1, 30), 30, "subtask 1 spans frames [0, 1): 1 frames, fewer than the minimum 2"),
        ((0, 10, 31), 30, "subtask 2 ends at frame 31, past n_frames=30"),
    ],
)
def test_each_rule_names_the_subtask(bounds, n_frames, expected):
    problems = check_subtasks(subtasks(*bounds), n_frames)
    assert any(expected in p for p in problems), problems


def test_gap_and_overlap_are_told_apart():
    gap = [Subtask(start_frame=0, end_frame=10, instruction="a", skill="reach"),
           Subtask(start_frame=12, end_frame=20, instruction="b", skill="pick")]
    overlap = [Subtask(start_frame=0, end_frame=10, instruction="a", skill="reach"),
               Subtask(start_frame=8, end_frame=20, instruction="b", skill="pick")]
    assert "(a gap)" in " ".join(check_subtasks(gap, 20))
    assert "(an overlap)" in " ".join(check_subtasks(overlap, 20))


def test_invalid_decomposition_is_refused_with_episode_and_rule():
    with pytest.raises(DecompositionError, match=r"episode d/3: .*subtask 1 ends at frame 10 but subtask 2 starts at 11") as err:
        Decomposition(
            episode_id="d/3", n_frames=20, author="me",
            subtasks=[Subtask(start_frame=0, end_frame=10, instruction="a", skill="reach"),
                      Subtask(start_frame=11, end_frame=20, instruction="b", skill="pick")],
        )
    assert err.value.episode_id == "d/3" and len(err.value.problems) == 1


def test_failed_record_needs_no_subtasks_and_min_frames_is_a_parameter():
    assert Decomposition(episode_id="d/0", n_frames=5, author="x", status=Status.failed).subtasks == ()
    dec = Decomposition(episode_id="d/0", n_frames=30, subtasks=subtasks(0, 1, 30), author="x", min_frames=1)
    # The minimum travels with the record, so it reloads from JSON as it was stored.
    assert Decomposition.model_validate_json(dec.model_dump_json()) == dec


def test_skill_outside_vocabulary_is_refused():
    with pytest.raises(ValidationError, match="skill"):
        Subtask(start_frame=0, end_frame=3, instruction="dance", skill="dance")


def test_strict_json_schema_follows_structured_output_rules():
    schema = decomposition_json_schema(n_frames=117)

    def walk(node):
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert set(node["required"]) == set(node["properties"])
            for child in node["properties"].values():
                walk(child)
        if node.get("type") == "array":
            walk(node["items"])

    walk(schema)
    item = schema["properties"]["subtasks"]["items"]
    assert item["properties"]["skill"]["enum"] == list(SKILLS)
    assert "117" in item["properties"]["end_frame"]["description"]
    json.dumps(schema)  # serialisable as sent to the API


def test_interchange_record_keeps_extra_keys_and_round_trips():
    line = ('{"episode_index": 0, "task": "t", "metaworld_task": "pick-place-v3", "seed": 0, "n_frames": 69,'
            ' "fps": 20, "subtasks": [{"start_frame": 0, "end_frame": 32, "instruction": "pick up the puck",'
            ' "skill": "pick"}, {"start_frame": 32, "end_frame": 69, "instruction": "place the puck", "skill": "place"}]}')
    rec = InterchangeRecord.model_validate_json(line)
    assert rec.model_extra == {"metaworld_task": "pick-place-v3", "seed": 0}
    dec = rec.to_decomposition("ds/0", author="truth")
    assert dec.boundaries == [32] and dec.status == Status.accepted
    back = InterchangeRecord.from_decomposition(dec, 0, "t", 20)
    assert back.subtasks == rec.subtasks
