"""benchmarks/learned_eval.py --unseen: the packaged weights, the heuristic and few-shot on sets the
weights never saw, read from the given pickles alone (no --data folder needed). On the rendered
Meta-World fixture's episodes; this checks the run and its bookkeeping, not the figures."""

from __future__ import annotations

import json
import pickle

from benchmarks import learned_eval


def test_unseen_scores_the_given_sets_without_a_data_folder(tmp_path, monkeypatch, fixture_records):
    held = tmp_path / "held.pkl"
    held.write_bytes(pickle.dumps(fixture_records))
    monkeypatch.setattr(learned_eval, "FEW_SHOT", 1)  # the fixture has 2 episodes of most tasks
    out = tmp_path / "eval.json"
    aligned = ("no alignment", "align 0.5 or 1.5 if ahead of the start")  # the same fitted networks, decoded again
    learned_eval.main(["--data", str(tmp_path / "absent"), "--unseen", str(held), "--json", str(out),
                       "--few-shot-variants", ",".join(aligned)])
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
