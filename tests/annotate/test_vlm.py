"""The shared vision-language path: frame choice, answer parsing, the repair turn."""

import asyncio
import json

import pytest

from atomvla.annotate.client.pricing import Usage
from atomvla.annotate.vlm import (
    AnswerError,
    AnswerFailed,
    adecompose,
    build_messages,
    flatten,
    parse_answer,
    sample_indices,
)
from atomvla.schemas import EpisodeMeta


def answer(*cuts: int, n: int = 60) -> str:
    edges = [0, *cuts, n]
    return json.dumps({"subtasks": [
        {"start_frame": a, "end_frame": b, "instruction": f"step {i}", "skill": "pick"} for i, (a, b) in enumerate(zip(edges, edges[1:]))
    ]})


def test_frames_are_uniform_plus_events_distinct_and_in_range():
    assert sample_indices(60, 4) == [0, 20, 39, 59]
    assert sample_indices(60, 4, events=[20, 33, 70, -1]) == [0, 20, 33, 39, 59]
    assert sample_indices(60, 4, events=[5, 6, 7], max_events=2) == [0, 5, 6, 20, 39, 59]
    assert sample_indices(3, 14) == [0, 1, 2]


def test_answers_are_parsed_against_the_contract():
    assert [s.start_frame for s in parse_answer(answer(20, 40), 60, 2)] == [0, 20, 40]
    assert len(parse_answer("```json\n" + answer(30) + "\n```", 60, 2)) == 2  # fenced, as local models write
    with pytest.raises(AnswerError, match="not JSON"):
        parse_answer("I think there are three steps.", 60, 2)
    with pytest.raises(AnswerError, match=r"subtasks\.0\.skill"):
        parse_answer(answer(30).replace('"pick"', '"grab"', 1), 60, 2)
    with pytest.raises(AnswerError) as bad:
        parse_answer(answer(10, 20, 30, 40, 50, 55), 60, 2)
    assert bad.value.problems == ["has 7 subtasks; a decomposition needs 2-5"]


def test_one_repair_turn_quotes_the_problem_then_fails_with_the_reason():
    meta = EpisodeMeta(episode_id="d/0", dataset="d", episode_index=0, source="s", source_format="x", fps=10, n_frames=60, task="open the drawer")
    messages = build_messages(meta, [0, 59], ["data:a", "data:b"], min_frames=2)
    assert [t for _, t in flatten(messages)][1].splitlines()[2:] == ["Frame 0:", "<image>", "Frame 59:", "<image>", "Answer with 2-5 subtasks as JSON."]
    asked = []

    def model(*answers):
        async def generate(msgs):
            asked.append(msgs)
            return answers[len(asked) - 1], Usage(100, 10, 0.01, 1)
        return generate

    subtasks, usage = asyncio.run(adecompose(model("nope", answer(30)), messages, 60, 2))
    assert len(subtasks) == 2 and usage == Usage(200, 20, 0.02, 2)
    assert asked[1][-2] == {"role": "assistant", "content": "nope"} and "not JSON" in asked[1][-1]["content"]
    asked.clear()
    with pytest.raises(AnswerFailed) as failed:
        asyncio.run(adecompose(model(answer(1), answer(70)), messages, 60, 2))
    assert "fewer than the minimum 2" in asked[1][-1]["content"]
    assert "after one repair request" in failed.value.reason and "past n_frames=60" in failed.value.reason
    assert failed.value.usage.requests == 2


def test_the_pick_convention_is_a_setting_the_prompt_states():
    from atomvla.annotate.backends.openai_backend import OpenAIConfig
    from atomvla.annotate.vlm import system_prompt

    assert "when the grasped object first moves" in system_prompt(2)
    assert "when the fingers have closed on the object" in system_prompt(2, "closed")
    assert OpenAIConfig(pick_end="lifted").pick_end == "lifted"
    with pytest.raises(ValueError):
        OpenAIConfig(pick_end="whenever")
