"""`atom-curate report`: the page renders in headless Chromium with every figure loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from atomvla.annotate import store_tables as annotate_tables
from atomvla.curate.cli import app
from atomvla.curate.store import Store
from atomvla.schemas import Decomposition, Provenance, Subtask
from builders import FIXTURES, V3_AV1
from tests.e2e.review_server import CHROMIUM, CHROMIUM_ARGS

runner = CliRunner()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "s.sqlite"
    assert runner.invoke(app, ["import", str(V3_AV1), "--store", str(db)]).exit_code == 0
    store = Store(db)
    # A model's proposals (with cost) before the truth, so agreement and cost have something to show.
    for line in (FIXTURES / "metaworld_truth.jsonl").read_text().splitlines():
        rec = json.loads(line)
        meta = store.episode(f"{V3_AV1.name}/{rec['episode_index']}")
        subs = tuple(Subtask(**s) for s in rec["subtasks"])
        moved = (subs[0].model_copy(update={"end_frame": subs[0].end_frame + 3}),
                 subs[1].model_copy(update={"start_frame": subs[1].start_frame + 3}), *subs[2:])
        store.add_revision(Decomposition(episode_id=meta.episode_id, n_frames=meta.n_frames, subtasks=moved,
                                         author="gpt", provenance=Provenance(backend="gpt", model="gpt-4o",
                                                                             tokens_in=1200, cost_usd=0.01)))
        annotate_tables.add_ledger(store, "job-1", meta.episode_id, "gpt-4o", 1200, 0, 0.01, cached=0)
    assert runner.invoke(app, ["import-annotations", str(FIXTURES / "metaworld_truth.jsonl"), "--store", str(db),
                               "--author", "truth"]).exit_code == 0
    out = tmp / "report"
    result = runner.invoke(app, ["report", "--store", str(db), "--out", str(out), "--timelines", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_page_has_figures_cost_and_agreement(report):
    html = (report / "index.html").read_text()
    assert len(list((report / "img").glob("timeline_*.png"))) == 3
    # 11 revisions at $0.01: the per-model row, the total, and the job in the ledger
    assert "gpt-4o" in html and html.count("0.1100") == 3
    assert "backend vs annotator" in html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_renders_in_headless_chromium(report, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.goto((report / "index.html").as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 5 and min(widths) > 100  # 2 histograms + 3 timelines, all decoded
        assert page.inner_text("h1") == "Subtask curation report"
        # The capture must not resize the view. A full-page capture of a page taller than the viewport
        # makes Chromium resize the view inside the capture and copy the first frame of the new size;
        # on a busy machine that frame may not exist yet, and Chromium answers "Unable to capture
        # screenshot". So the viewport takes the page's height first, and the capture waits until the
        # page has that size and has painted a frame at it (two animation frames).
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": 1200, "height": height})
        page.wait_for_function("height => window.innerHeight === height", arg=height)
        page.evaluate("new Promise(painted => requestAnimationFrame(() => requestAnimationFrame(painted)))")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        context.close()
        browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 1500 and pixels.std() > 20  # a long page with pictures, not a blank one


def test_refuses_a_folder_that_is_not_a_report(report, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["report", "--store", str(report.parent / "s.sqlite"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not a report" in " ".join(result.output.split())
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_existing_report_is_replaced_only_with_overwrite(report, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(report, out)
    (out / "index.html").write_text("old report")
    args = ["report", "--store", str(report.parent / "s.sqlite"), "--out", str(out), "--timelines", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "pass --overwrite" in " ".join(result.output.split())
    assert (out / "index.html").read_text() == "old report"
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "Subtask curation report" in (out / "index.html").read_text()
    assert len(list((out / "img").glob("timeline_*.png"))) == 1  # the old report's files went with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary left beside it
