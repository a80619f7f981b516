"""benchmarks/learned_pixels.py on the rendered Meta-World fixture (11 episodes, 6 tasks): leave-one-task-out
with and without the pixel channels, from the rendered set alone and with state-only records, its
table printed and its JSON written. Tiny steps: this checks the run, not the figures."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from atomvla.annotate.learned.train import FINE_TUNE
from benchmarks import learned_pixels

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
DATASET = FIXTURES / "metaworld_lerobot_v30_h264"
TRUTH = FIXTURES / "metaworld_truth.jsonl"


def test_the_ablation_runs_on_the_rendered_fixture(tmp_path, capsys, monkeypatch, fixture_records):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metaworld.pkl").write_bytes(pickle.dumps(fixture_records))
    # The fixture has 2 episodes of most tasks: 1 shot leaves 1 to score; few fine-tuning steps.
    monkeypatch.setattr(learned_pixels, "FEW_SHOT", 1)
    monkeypatch.setattr(learned_pixels, "FINE_TUNE", replace(FINE_TUNE, steps=2))
    out = tmp_path / "pixels.json"
    learned_pixels.main(["--dataset", str(DATASET), "--truth", str(TRUTH), "--data", str(tmp_path / "data"),
                         "--steps", "3", "--json", str(out)])
    report = json.loads(out.read_text())
    assert (report["episodes"], report["tasks"], report["folds_done"], report["state_only_episodes"]) == (11, 6, 6, 11)
    arms = [f"{s} {px} {shot}" for shot in ("zero-shot", "few-shot") for s in ("rendered", "pretrained") for px in ("no pixels", "pixels")]
    assert list(report["overall"]) == ["heuristic", *arms]
    # every episode scored zero-shot; few-shot the 5 tasks with a second episode
    assert {name: report["overall"][name]["episodes"] for name in report["overall"]} == {
        "heuristic": 11, **{a: 11 if "zero-shot" in a else 5 for a in arms}}
    assert set(report["pixel_gain"]) == {"rendered zero-shot", "pretrained zero-shot", "rendered few-shot", "pretrained few-shot"}
    assert report["pixel_gain"]["rendered zero-shot"]["all"] == round(
        report["overall"]["rendered pixels zero-shot"]["f1"] - report["overall"]["rendered no pixels zero-shot"]["f1"], 4)
    assert report["features_cpu_s"]["pixels"] > report["features_cpu_s"]["no pixels"]  # the frames were decoded
    assert set(report["train_cpu_s"]) == {"rendered no pixels", "rendered pixels", "pretrained no pixels", "pretrained pixels"}
    printed = capsys.readouterr().out
    assert "leave-one-task-out within the rendered set" in printed
    assert all(task in printed for task in report["loto"]) and "all" in printed


def test_an_episode_without_truth_is_named(tmp_path):
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(line + "\n" for line in TRUTH.read_text().splitlines()[1:]))  # episode 0's line dropped
    with pytest.raises(SystemExit) as exc:
        learned_pixels.load_rendered(DATASET, truth)
    assert str(exc.value) == f"{truth}: no truth for episode metaworld_lerobot_v30_h264/0"


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        learned_pixels.main(["--dataset", str(DATASET), str(DATASET), "--truth", str(TRUTH)])
    assert "2 datasets and 1 truth files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        learned_pixels.main(["--dataset", str(DATASET), "--truth", str(TRUTH), "--held", "pick-place-v3,reach-v3"])
    assert "--held: reach-v3 not in the rendered set (has button-press-v3, coffee-push-v3," in capsys.readouterr().err
