"""`atom-train rollout` in Meta-World: the env renders as the datasets were recorded, episodes write
results, videos and a plot, a killed run resumes, and bad input is refused before any episode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from atomvla.curate.episode import Episode
from atomvla.curate.sources import open_source
from atomvla.train.cli import app
from atomvla.train.config import get_config
from atomvla.train.rollout.report import wilson
from atomvla.train.sim.metaworld import CAMERA_KEY, MetaWorldEnv
from atomvla.train.sft import train_sft

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
TASKS = "button-press-v3=press the button,drawer-close-v3=close the drawer"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="session")
def tiny_checkpoint(store_file, tmp_path_factory) -> Path:
    """A tiny-cpu policy trained for two steps on the Meta-World fixture (its layout is Meta-World's)."""
    out = tmp_path_factory.mktemp("tiny-policy")
    overrides = ("train.batch_size=2", "train.warmup_steps=1", "train.log_every=1000", "data.val_fraction=0",
                 "train.max_steps=2", "train.save_every=2")
    return train_sft(get_config("tiny-cpu", overrides), store_file, out).checkpoint


def _recorded(index: int) -> tuple[Episode, dict]:
    metas = list(open_source(str(FIXTURES / "metaworld_lerobot_v30")).scan())
    truth = [json.loads(line) for line in (FIXTURES / "metaworld_truth.jsonl").read_text().splitlines() if line.strip()]
    meta = next(m for m in metas if m.episode_id.endswith(f"/{index}"))
    return Episode(meta), next(t for t in truth if t["episode_index"] == index)


def test_the_wilson_interval_holds_the_rate_exactly_at_0_and_n():
    # computed, 0/3's floor sat 6e-17 above 0: the plot's error bar went negative and the rollout died
    for n in range(1, 120):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert 0 <= lo <= k / n <= hi <= 1
    assert wilson(0, 3)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(15, 20) == pytest.approx((0.5313, 0.8881), abs=1e-4)  # the textbook figures


@pytest.mark.parametrize("index", [0, 2])  # pick-place, drawer-open
def test_the_env_renders_and_replays_as_the_dataset_was_recorded(index):
    episode, truth = _recorded(index)
    env = MetaWorldEnv(truth["metaworld_task"])
    try:
        env.reset(truth["seed"])
        obs = env.observe()
        recorded = episode.frames(CAMERA_KEY).get(0).astype(int)
        frame = obs["images"][CAMERA_KEY].astype(int)
        assert frame.shape == recorded.shape == (128, 128, 3)
        # same camera, size and orientation: only AV1's loss apart; upside down is far
        assert np.abs(frame - recorded).mean() < 10
        assert np.abs(frame[::-1] - recorded).mean() > 30
        np.testing.assert_allclose(obs["state"], episode.arrays["observation.state"][0], atol=1e-6)
        actions = episode.arrays["action"]
        successes = [env.step(a) for a in actions]
        # the recorder stops 10 steps after the first success
        assert any(successes) and successes.index(True) == len(actions) - 11
        np.testing.assert_allclose(env.observe()["state"], episode.arrays["observation.state"][-1], atol=1e-2)
    finally:
        env.close()


def test_rollout_writes_results_videos_and_a_plot_and_resumes(tiny_checkpoint, tmp_path):
    out = tmp_path / "ro"
    args = ("rollout", "--checkpoint", str(tiny_checkpoint), "--tasks", TASKS, "--episodes", "2",
            "--max-steps", "6", "--seed", "5", "--out", str(out))
    r = run(*args)
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 5 and Path(results["checkpoint"]) == tiny_checkpoint
    assert set(results["tasks"]) == {"button-press-v3", "drawer-close-v3"}
    for env_id, task in results["tasks"].items():
        episodes = [json.loads((out / "episodes" / env_id / f"{i:04d}.json").read_text()) for i in range(2)]
        assert [e["seed"] for e in episodes] == [5, 6]
        wins = sum(e["success"] for e in episodes)
        assert task["episodes"] == 2 and task["successes"] == wins and task["ci95"] == list(wilson(wins, 2))
        assert task["mean_steps"] == sum(e["steps"] for e in episodes) / 2
        failed = [e for e in episodes if not e["success"]]
        assert sum(task["subtasks"]["stalled_in"].values()) == len(failed)
        assert sum(s["episodes"] for s in task["subtasks"]["sequences"]) == 2
        for e in episodes:
            with av.open(str(out / e["video"])) as video:
                frames = list(video.decode(video=0))
            assert len(frames) == e["steps"] and frames[0].height > 2 * 128  # the caption banner above
    assert (out / "success.png").stat().st_size > 0

    # a killed run: one episode never finished (no result, a partial video), one result cut short
    done = out / "episodes" / "drawer-close-v3"
    (done / "0001.json").unlink()
    (out / "videos" / "drawer-close-v3" / "0001.mp4").rename(out / "videos" / "drawer-close-v3" / "0001.mp4.part")
    (out / "episodes" / "button-press-v3" / "0000.json").write_text('{"env_id": "button-pr')
    kept = out / "episodes" / "button-press-v3" / "0001.json"
    kept_mtime = kept.stat().st_mtime_ns
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert kept.stat().st_mtime_ns == kept_mtime  # finished episodes are not run again
    assert (done / "0001.json").is_file() and (out / "videos" / "drawer-close-v3" / "0001.mp4").is_file()
    assert json.loads((out / "results.json").read_text())["tasks"] == results["tasks"]  # same seeds, same episodes

    r = run(*args[:-6], "--seed", "6", "--out", str(out))  # another seed in the same folder
    assert r.exit_code == 2 and "another seed" in r.output


def _copy_with_stats(checkpoint: Path, dest: Path, edit) -> Path:
    shutil.copytree(checkpoint, dest)
    stats = json.loads((dest / "stats.json").read_text())
    edit(stats)
    (dest / "stats.json").write_text(json.dumps(stats))
    return dest


def test_bad_input_is_refused_in_one_line_before_any_rollout(tiny_checkpoint, tmp_path):
    def other_robot(stats):  # a checkpoint trained on a 7-dof arm's data
        stats["action"]["names"] = [f"joint_{i}" for i in range(len(stats["action"]["names"]))]

    foreign = _copy_with_stats(tiny_checkpoint, tmp_path / "foreign", other_robot)
    ck = str(tiny_checkpoint)
    cases = [
        (["--checkpoint", ck, "--tasks", "button-pres-v3=press the button"], "metaworld has no env 'button-pres-v3'; did you mean button-press-v3"),
        (["--checkpoint", ck, "--tasks", "button-press-v3=press it,drawer-close-v3"], "'drawer-close-v3' has no instruction"),
        (["--checkpoint", ck, "--tasks", TASKS, "--max-steps", "900"], "episodes last 1 to 500 steps"),
        (["--checkpoint", str(foreign), "--tasks", TASKS], "does not fit metaworld env button-press-v3: it expects action (joint_0"),
        (["--checkpoint", str(tmp_path / "none"), "--tasks", TASKS], "not a checkpoint"),
        (["--tasks", TASKS], "pass either --checkpoint or --server"),
        (["--env", "isaac", "--checkpoint", ck, "--tasks", TASKS], "unknown simulator 'isaac'"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        r = run("rollout", *extra, "--out", str(out))
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output and len(r.output.strip().splitlines()) == 1, (extra, r.output)
        assert not out.exists()  # nothing ran, nothing written
    text = " ".join(r.output.split())
    assert "Traceback" not in text


def test_an_env_that_crashes_fails_its_episode_with_the_reason_and_the_others_go_on(tiny_checkpoint, tmp_path):
    def diverged(stats):  # a checkpoint whose action statistics went NaN: the physics blows up
        stats["action"]["std"] = [float("nan")] * len(stats["action"]["std"])

    broken = _copy_with_stats(tiny_checkpoint, tmp_path / "nan", diverged)
    out = tmp_path / "ro"
    r = run("rollout", "--checkpoint", str(broken), "--tasks", "button-press-v3=press the button", "--episodes", "2",
            "--max-steps", "6", "--no-video", "--out", str(out))
    assert r.exit_code == 0, r.output
    task = json.loads((out / "results.json").read_text())["tasks"]["button-press-v3"]
    assert task["episodes"] == 2 and task["crashed"] == 2 and task["successes"] == 0
    episode = json.loads((out / "episodes" / "button-press-v3" / "0001.json").read_text())
    assert "simulation became unstable at step 1" in episode["error"] and episode["video"] is None
    assert task["subtasks"]["stalled_in"] == {}  # crashes did not run out of steps


@pytest.mark.slow
def test_parallel_workers_run_the_same_episodes(tiny_checkpoint, tmp_path):
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / workers
        r = run("rollout", "--checkpoint", str(tiny_checkpoint), "--tasks", TASKS, "--episodes", "2",
                "--max-steps", "5", "--no-video", "--workers", workers, "--out", str(out))
        assert r.exit_code == 0, r.output
        runs[workers] = json.loads((out / "results.json").read_text())["tasks"]
    assert runs["1"] == runs["2"]


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_worker_that_dies_fails_only_its_episode_and_is_replaced(tiny_checkpoint, tmp_path, workers):
    from tests.train import rollout_crashing_sim as crashing  # registers the plug-in (here and in the workers)

    out = tmp_path / "ro"
    r = run("rollout", "--env", crashing.NAME, "--checkpoint", str(tiny_checkpoint), "--tasks",
            "button-press-v3=press the button", "--episodes", "3", "--max-steps", "4", "--workers", workers,
            "--out", str(out))
    assert r.exit_code == 0, r.output
    task = json.loads((out / "results.json").read_text())["tasks"]["button-press-v3"]
    assert task["episodes"] == 3 and task["crashed"] == 2, task
    episodes = [json.loads((out / "episodes" / "button-press-v3" / f"{i:04d}.json").read_text()) for i in range(3)]
    reasons = {e["seed"]: e["error"] for e in episodes}
    assert "worker process died during the episode (killed by SIGSEGV)" in reasons[crashing.SEGFAULT_SEED]
    assert "worker process died during the episode (exited with code 3)" in reasons[crashing.EXIT_SEED]
    # seed 0 kills the first worker; seed 1 runs to its step limit in a new one, with its video
    for e in episodes:
        if e["seed"] in (crashing.SEGFAULT_SEED, crashing.EXIT_SEED):
            assert e["video"] is None and not e["success"]
            assert not list((out / "videos" / "button-press-v3").glob(f"{e['episode']:04d}.mp4*"))
        else:
            assert e["error"] is None and e["steps"] == 4 and (out / e["video"]).is_file()


def test_a_worker_that_hangs_is_killed_after_the_episode_timeout_and_the_rollout_goes_on(tiny_checkpoint, tmp_path):
    from tests.train import rollout_crashing_sim as crashing

    out = tmp_path / "ro"
    r = run("rollout", "--env", crashing.NAME, "--checkpoint", str(tiny_checkpoint), "--tasks",
            "button-press-v3=press the button", "--seed", str(crashing.HANG_SEED), "--episodes", "2",
            "--max-steps", "4", "--no-video", "--episode-timeout", "20", "--out", str(out))
    assert r.exit_code == 0, r.output
    task = json.loads((out / "results.json").read_text())["tasks"]["button-press-v3"]
    hung, ran = (json.loads((out / "episodes" / "button-press-v3" / f"{i:04d}.json").read_text()) for i in range(2))
    assert "no answer in 20 s: killed" in hung["error"] and not hung["success"]
    assert ran["error"] is None and ran["steps"] == 4  # in a new worker
    # the killed episode is a crash, not a step count of 0 pulling the mean down
    assert task["crashed"] == 1 and task["mean_steps"] == 4.0
