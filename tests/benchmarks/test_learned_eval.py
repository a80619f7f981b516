"""benchmarks/learned_eval.py --unseen: the packaged weights, the heuristic and few-shot on sets the
weights never saw, read from the given pickles alone (no --data folder needed), and the shots curve
(--shots). On the rendered Meta-World fixture's episodes; this checks the run and its bookkeeping,
not the figures."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atomvla.annotate.learned.model import LearnedModel
from benchmarks import learned_eval


def test_unseen_scores_the_given_sets_without_a_data_folder(tmp_path, fixture_records):
    held = tmp_path / "held.pkl"
    held.write_bytes(pickle.dumps(fixture_records))
    out = tmp_path / "eval.json"
    aligned = ("no alignment", "align 0.5 or 1.5 if ahead of the start")  # the same fitted networks, decoded again
    learned_eval.main(["--data", str(tmp_path / "absent"), "--unseen", str(held), "--json", str(out),
                       "--few-shot-variants", ",".join(aligned), "--shots", "1"])  # the fixture has 2 episodes of most tasks
    report = json.loads(out.read_text())
    tasks = {f"metaworld:{r['task']}" for r in fixture_records}
    assert set(report["unseen"]) == tasks
    overall = report["unseen_overall"]
    assert (overall["learned"]["episodes"], overall["heuristic"]["episodes"], overall["few-shot"]["episodes"]) == (11, 11, 5)
    assert all(0.0 <= overall[c]["f1"] <= 1.0 and overall[c]["count_acc"] == 1.0 for c in ("learned", "heuristic", "few-shot"))
    assert [overall[name]["episodes"] for name in aligned] == [5, 5]


def test_every_few_shot_variant_can_be_named_on_the_command_line():
    # --few-shot-variants splits on commas: a name with one could never be asked for
    assert [name for name in learned_eval.KNOWN_FEW_SHOT if "," in name] == []


def _started_later(record: dict[str, Any], frames: int) -> dict[str, Any]:
    """The record's demonstration with its first `frames` frames cut: another episode of the same task."""
    subtasks = [{**s, "start_frame": max(0, s["start_frame"] - frames), "end_frame": s["end_frame"] - frames} for s in record["subtasks"]]
    return {**record, "state": np.asarray(record["state"])[frames:], "action": np.asarray(record["action"])[frames:], "subtasks": subtasks}


def test_shots_curve_scores_every_k_on_the_same_episodes(tmp_path, fixture_records):
    drawer = [r for r in fixture_records if r["instruction"] == "open the drawer"]
    others = [r for r in fixture_records if r["instruction"] != "open the drawer"]
    # 5 drawer episodes: a pool of 2 shots, 3 scored; every other task has 2 or 1, too few for the pool
    held = tmp_path / "held.pkl"
    held.write_bytes(pickle.dumps(drawer + [_started_later(r, n) for r, n in zip(drawer + drawer, (4, 6, 8))] + others))

    def run(*shots: str) -> dict[str, Any]:
        out = tmp_path / f"eval{len(shots)}.json"
        learned_eval.main(["--data", str(tmp_path / "absent"), "--unseen", str(held), "--json", str(out), *shots])
        return json.loads(out.read_text())

    curve, alone = run("--shots", "2,1"), run()  # the default: 2 shots, as before the option
    key = f"metaworld:{drawer[0]['task']}"
    assert curve["shots"] == [1, 2] and alone["shots"] == [2]
    assert [c for c in learned_eval.columns(curve["unseen"]) if c.startswith("few-shot")] == ["few-shot k=1", "few-shot k=2"]
    assert [curve["unseen"][key][c]["episodes"] for c in ("few-shot k=1", "few-shot k=2")] == [3, 3]
    assert all(curve["unseen"][key][c]["fine_tune_cpu_s"] > 0 for c in ("few-shot k=1", "few-shot k=2"))
    # the curve's k=2 is the default run's few-shot: the same fine-tuning on the same 3 episodes (timings aside)
    timing = ("fine_tune_wall_s", "fine_tune_cpu_s")
    assert ({k: v for k, v in curve["unseen"][key]["few-shot k=2"].items() if k not in timing}
            == {k: v for k, v in alone["unseen"][key]["few-shot"].items() if k not in timing})
    tasks = {f"metaworld:{r['task']}" for r in others}
    assert sorted(curve["few_shot_left_out"]) == sorted(tasks) == sorted(alone["few_shot_left_out"])
    assert curve["unseen_overall"]["few-shot k=1"]["episodes"] == curve["unseen_overall"]["few-shot k=2"]["episodes"] == 3
    assert curve["unseen_overall"]["learned"]["episodes"] == 14


def test_shots_must_be_whole_numbers_of_at_least_one(tmp_path):
    for shots in ("0,2", "two"):
        with pytest.raises(SystemExit):
            learned_eval.main(["--unseen", str(tmp_path / "absent.pkl"), "--shots", shots])


def test_train_also_sets_are_in_every_folds_training_and_never_scored(tmp_path, fixture_records):
    tasks = sorted({r["task"] for r in fixture_records})
    scored = [r for r in fixture_records if r["task"] in tasks[:2]]
    also = [r for r in fixture_records if r["task"] not in tasks[:2]]
    tiny = replace(learned_eval.SPEC, hidden=8, layers=2, stages=1)
    config = learned_eval.TrainConfig(steps=2, batch=2)

    def fold_models(cache: Path, train_also: list) -> dict[str, Any]:
        rows = learned_eval.loto(scored, tiny, config, few_shot=False, heuristic=False, cache=cache, train_also=train_also)
        assert set(rows) == {f"metaworld:{t}" for t in tasks[:2]}  # the extra sets' tasks are never scored
        assert sum(c["learned"]["episodes"] for c in rows.values()) == len(scored)
        return {p.name.rsplit("-", 1)[0]: LearnedModel.load(p).digest() for p in sorted(cache.glob("*.safetensors"))}

    plain, more = fold_models(tmp_path / "plain", []), fold_models(tmp_path / "more", also)
    assert len(plain) == len(more) == 2
    assert all(plain[fold] != more[fold] for fold in plain)  # every fold trained on the extra episodes too


def test_train_also_refuses_a_set_holding_a_scored_task(tmp_path, fixture_records):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metaworld.pkl").write_bytes(pickle.dumps(fixture_records[:4]))
    (tmp_path / "also.pkl").write_bytes(pickle.dumps(fixture_records[3:]))
    with pytest.raises(SystemExit):
        learned_eval.main(["--data", str(data), "--no-speed", "--train-also", str(tmp_path / "also.pkl")])


def test_an_ensemble_of_one_seed_is_that_seeds_model_and_more_seeds_train_a_model_each(tmp_path, fixture_records):
    tasks = sorted({r["task"] for r in fixture_records})[:2]
    scored = [r for r in fixture_records if r["task"] in tasks]
    tiny = replace(learned_eval.SPEC, hidden=8, layers=2, stages=1)
    config = learned_eval.TrainConfig(steps=5, batch=2)
    one = learned_eval.loto(fixture_records, tiny, config, few_shot=False, heuristic=False, cache=tmp_path, held_only=tuple(tasks),
                            ensemble=(0,))
    assert all(cols["ensemble of seeds 0"] == cols["learned"] for cols in one.values())
    two = learned_eval.loto(fixture_records, tiny, config, few_shot=False, heuristic=False, cache=tmp_path, held_only=tuple(tasks),
                            ensemble=(0, 1))
    assert sum(c["ensemble of seeds 0,1"]["episodes"] for c in two.values()) == len(scored)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * len(tasks)  # seed 0's fold models served from the cache
