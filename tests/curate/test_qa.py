"""`atom-curate qa` on the Meta-World fixture with planted problems, one of each kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from atomvla.curate.cli import app
from atomvla.curate.quality.agreement import pairwise, segment_iou
from atomvla.curate.quality.checks import QaConfig, run_qa
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Provenance, Status, Subtask
from builders import FIXTURES, V3_AV1, encode_video

TRUTH = FIXTURES / "metaworld_truth.jsonl"
runner = CliRunner()


def curate(*args):
    return runner.invoke(app, [str(a) for a in args])


def _ep(i: int) -> str:
    return f"{V3_AV1.name}/{i}"


def _shifted(dec: Decomposition, by: int, author: str, **update) -> Decomposition:
    """`dec` with every boundary moved by `by` frames."""
    subs = [s.model_copy(update={"start_frame": s.start_frame + by * (k > 0),
                                 "end_frame": s.end_frame + by * (k < len(dec.subtasks) - 1)})
            for k, s in enumerate(dec.subtasks)]
    return dec.model_copy(update={"subtasks": tuple(subs), "author": author, "revision": 0, **update})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    db = tmp_path_factory.mktemp("qa") / "s.sqlite"
    assert curate("import", V3_AV1, "--store", db).exit_code == 0
    truth_lines = [json.loads(line) for line in TRUTH.read_text().splitlines()]
    s = Store(db)
    # A backend's proposals first: the truth except episode 3, where its boundary is 15 frames late.
    for rec in truth_lines:
        meta = s.episode(_ep(rec["episode_index"]))
        dec = Decomposition(episode_id=meta.episode_id, n_frames=meta.n_frames, author="b1",
                            subtasks=tuple(Subtask(**x) for x in rec["subtasks"]),
                            provenance=Provenance(backend="b1", model="m1"))
        s.add_revision(_shifted(dec, 15 if rec["episode_index"] == 3 else 0, "b1"))
    assert curate("import-annotations", TRUTH, "--store", db, "--author", "truth").exit_code == 0
    # Episode 5: a second annotator makes the first subtask 2 frames long (a suspicious pick).
    t5 = s.latest(_ep(5))
    first = t5.subtasks[0]
    subs = (first.model_copy(update={"end_frame": 2}), t5.subtasks[1].model_copy(update={"start_frame": 2}),
            *t5.subtasks[2:])
    s.add_revision(t5.model_copy(update={"subtasks": subs, "author": "ann2", "revision": 0}))
    # Episode 7: the backend's rerun failed; episode 9: back to a proposal.
    s.add_revision(Decomposition(episode_id=_ep(7), n_frames=s.episode(_ep(7)).n_frames,
                                 status=Status.failed, author="b1", note="timeout"))
    s.add_revision(s.latest(_ep(9)).model_copy(update={"status": Status.proposed, "author": "b1", "revision": 0,
                                                        "provenance": Provenance(backend="b1")}))
    return s


def test_each_planted_problem_is_found(store):
    report = run_qa(store)
    found = {(f.severity, f.rule, f.episode_id) for f in report.findings}
    assert ("error", "contract", _ep(7)) in found
    assert ("warning", "coverage", _ep(7)) in found and ("warning", "coverage", _ep(9)) in found
    assert ("warning", "duration", _ep(5)) in found
    assert ("warning", "agreement", _ep(3)) in found
    assert {f.episode_id for f in report.findings if f.rule == "agreement"} == {_ep(3), _ep(5)}
    assert {f.episode_id for f in report.findings if f.rule == "coverage"} == {_ep(7), _ep(9)}
    assert report.statuses == {"accepted": 9, "failed": 1, "proposed": 1}


def test_agreement_between_backends_and_annotators(store):
    pairs = {(p.first, p.second): p for p in run_qa(store, QaConfig(motion=False)).agreement}
    b1_truth = pairs[("b1", "truth")]
    # Episode 7's latest b1 revision failed: its earlier proposal is the one compared.
    assert b1_truth.kind == "backend vs annotator" and b1_truth.episodes == 11
    assert b1_truth.boundaries.fn == b1_truth.boundaries.fp == 1  # episode 3's late boundary
    assert 0.9 < b1_truth.f1 < 1.0 and b1_truth.mean_iou < 1.0
    ann = pairs[("ann2", "truth")]
    assert ann.kind == "annotators" and ann.episodes == 1
    k = len(store.latest(_ep(5), author="truth").boundaries)
    assert (ann.boundaries.tp, ann.boundaries.fn) == (k - 1, 1)  # the first boundary moved to frame 2


def test_a_pairs_kind_reads_in_the_order_of_its_columns(store):
    """Authors are paired in name order, so an annotator can come first: its row must then say
    "annotator vs backend" (it said "backend vs annotator" beside first=alice, second=heuristic)."""
    truth = store.latest(_ep(0), author="truth")
    proposal = truth.model_copy(update={"author": "heuristic"})
    kinds = {"alice": "annotator", "heuristic": "backend", "zeta": "backend"}
    (pair,), _ = pairwise({_ep(0): {"heuristic": proposal, "alice": truth}}, kinds, {_ep(0): 3})
    assert (pair.first, pair.second, pair.kind) == ("alice", "heuristic", "annotator vs backend")
    (pair,), _ = pairwise({_ep(0): {"zeta": truth, "heuristic": proposal}}, kinds, {_ep(0): 3})
    assert (pair.first, pair.second, pair.kind) == ("heuristic", "zeta", "backends")


def test_segment_iou():
    a = [Subtask(start_frame=0, end_frame=10, instruction="a", skill="pick"),
         Subtask(start_frame=10, end_frame=20, instruction="b", skill="place")]
    b = [a[0].model_copy(update={"end_frame": 5}), a[1].model_copy(update={"start_frame": 5})]
    assert segment_iou(a, a) == 1.0
    # a0 best 5/10, a1 best 10/15; b0 5/10, b1 10/15
    assert segment_iou(a, b) == pytest.approx((0.5 + 2 / 3) / 2)


def test_cli_json_and_fail_on(store):
    result = curate("qa", "--store", store.path, "--json", "-", "--no-motion")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    written = store.path.parent / "qa" / "report.json"
    both = curate("qa", "--store", store.path, "--json", written, "--no-motion")
    assert both.exit_code == 0 and "Findings" in both.output and json.loads(written.read_text()) == report
    refused = curate("qa", "--store", store.path, "--json", written, "--no-motion")
    assert refused.exit_code == 2 and "already exists; pass --overwrite" in refused.output
    assert curate("qa", "--store", store.path, "--json", written, "--no-motion", "--overwrite").exit_code == 0
    assert report["summary"]["error"] == 1 and report["summary"]["episodes"] == 11
    kinds = {(p["first"], p["second"]): p["kind"] for p in report["agreement"]}
    assert kinds[("ann2", "truth")] == "annotators" and kinds[("b1", "truth")] == "backend vs annotator"
    assert kinds[("ann2", "b1")] == "annotator vs backend"
    assert curate("qa", "--store", store.path, "--fail-on", "error", "--no-motion").exit_code == 1
    assert curate("qa", "--store", store.path, "--fail-on", "warning", "--no-motion").exit_code == 1
    table = curate("qa", "--store", store.path, "--no-motion")
    assert table.exit_code == 0 and "Findings" in table.output and "Agreement" in table.output


def test_clean_store_passes_and_still_boundaries_are_flagged(tmp_path):
    # A 60-frame clip whose state holds still over frames 20-40; one boundary there, one in motion.
    src = tmp_path / "clips"
    n = 60
    t = np.arange(n, dtype=np.float32)
    x = np.where(t < 20, t, np.where(t < 40, 20, t - 20))
    state = np.stack([x, 2 * x], axis=1).astype(np.float32)
    encode_video(src / "episode_0.mp4", np.zeros((n, 16, 16, 3), np.uint8), 10)
    np.savez(src / "episode_0.npz", **{"observation.state": state, "action": np.diff(state, axis=0, append=state[-1:])})
    (src / "tasks.json").write_text(json.dumps({"episode_0": "move, wait, move"}))
    db = tmp_path / "s.sqlite"
    assert curate("import", src, "--store", db).exit_code == 0
    s = Store(db)
    (meta,) = s.episodes()
    s.add_revision(Decomposition(episode_id=meta.episode_id, n_frames=n, status=Status.accepted, author="ann",
                                 subtasks=(Subtask(start_frame=0, end_frame=30, instruction="move", skill="push"),
                                           Subtask(start_frame=30, end_frame=50, instruction="wait", skill="other"),
                                           Subtask(start_frame=50, end_frame=60, instruction="move on", skill="push"))))
    motion = [f for f in run_qa(s).findings if f.rule == "motion"]
    assert [f.message.split(":")[0] for f in motion] == ["boundary at frame 30"]
    assert curate("qa", "--store", db, "--fail-on", "error").exit_code == 0
