"""The demo's code path end to end (shrunk): annotate part of assets_sample/, evaluate the detector on its labels,
simulate engagement over the annotated features, run the face_presence experiment, and open report.html in headless
Chromium: every plot is an embedded PNG, the page logs no console error, and the screenshot shows the plots."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample"
N_IMAGES = 8
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1280,9000",
]


def chromium_binary() -> str:
    """Debian's chromium, installed with apt-get when absent (as root); skips the test when that cannot be done."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        ["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, env=env, timeout=900
    )
    if proc.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"apt-get install -y chromium failed: {proc.stderr.strip()[-300:]}")
    return shutil.which("chromium")


def _sample_subset(root: Path) -> tuple[Path, Path]:
    """N_IMAGES labelled images of the sample, half with faces and half without, and their labels."""
    labels = pd.read_csv(SAMPLE / "labels.csv")
    no_face = labels["x1"].isna()
    with_faces = list(dict.fromkeys(labels.loc[~no_face, "image_id"]))
    without = list(dict.fromkeys(labels.loc[no_face, "image_id"]))
    ids = with_faces[: N_IMAGES // 2] + without[: N_IMAGES - N_IMAGES // 2]
    for image_id in ids:
        target = root / "images" / image_id
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE / "images" / image_id, target)
    labels[labels["image_id"].isin(ids)].to_csv(root / "labels.csv", index=False)
    return root / "images", root / "labels.csv"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    images, labels = _sample_subset(root)
    run_dir = root / "run"
    # As `make demo`: the face-count mediation first (it annotates), then face presence, whose report shows and
    # links the mediation run (report.links).
    mediation = [
        sys.executable,
        str(REPO / "scripts" / "run_experiment.py"),
        "experiment=face_count_mediation",
        "data=sample",
        f"input={images}",
        "steps=[annotate,screening,mediation]",
        f"paths.outputs={root / 'outputs'}",
        "paths.cache=null",
        "data.n_titles=60",
        "nuisance=xgboost",
        "nuisance.folds=3",
        "nuisance.classifier.n_estimators=40",
        "nuisance.regressor.n_estimators=40",
        "mediation.n_boot=100",
        "mediation.ml.repeats=1",
        f"hydra.run.dir={run_dir / 'mediation'}",
    ]
    proc = subprocess.run(mediation, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "true mediation effects (simulator)" in proc.stdout and "true ATE" not in proc.stdout
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "run_experiment.py"),
        "experiment=face_presence",
        "data=sample",
        f"input={images}",
        f"labels={labels}",
        f"paths.outputs={root / 'outputs'}",
        "paths.cache=null",
        "data.n_titles=60",
        "estimator.n_estimators=40",
        "nuisance=xgboost",
        "nuisance.folds=3",
        "nuisance.classifier.n_estimators=40",
        "nuisance.regressor.n_estimators=40",
        "sensitivity.refutations.n_sims=1",
        "sensitivity.refutations.kinds=[placebo_treatment]",
        "report.links=[mediation]",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout


@pytest.mark.slow
def test_demo_writes_results_report_and_evaluation(demo_run):
    run_dir, stdout = demo_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["treatment"] == "face_present" and results["source"].startswith("simulator")
    assert "ate" in results and "cate_by_group" in results and "sensitivity" in results
    assert (run_dir / "evaluation" / "metrics.json").is_file() and (run_dir / "evaluation" / "pr_curve.png").is_file()
    assert f"report:  {run_dir / 'report.html'}" in stdout and "ATE (doubly robust)" in stdout
    assert "detector on labels: AP@0.5" in stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_report_images_are_embedded_pngs(demo_run):
    run_dir, _ = demo_run
    text = (run_dir / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]*)" src="([^"]*)"', text)
    thumbs = re.findall(r'<img class="thumb" alt="[^"]*" src="data:image/jpeg;base64,([^"]*)"', text)
    alts = {alt for alt, _ in images}
    assert {"propensity overlap", "effects by group", "effect vs naive difference", "sensitivity contour"} <= alts
    assert {"detector precision-recall curve", "mediation diagram"} <= alts
    assert len(re.findall(r"<img\b", text)) == len(images) + len(thumbs)  # none outside the data-URI patterns
    for alt, src in images:
        assert src.startswith("data:image/png;base64,"), alt
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100, alt
            im.verify()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(demo_run, tmp_path):
    binary = chromium_binary()
    run_dir, _ = demo_run
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            (run_dir / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-2000:]
    for marker in ("Uncaught", "ERROR:CONSOLE", "Failed to load resource", "Not allowed to load local resource"):
        assert marker not in log, f"{marker} in Chromium's log: {log[-2000:]}"
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (9000, 1280)
    non_white = (pixels < 245).any(axis=2).mean()
    assert non_white > 0.02, f"screenshot nearly blank ({non_white:.3%} non-white pixels)"
    # The plots' colours reach the screen: the propensity histogram's treated bars (#d95f02) and control bars (#1b9e77).
    for rgb in ((0xD9, 0x5F, 0x02), (0x1B, 0x9E, 0x77)):
        close = (np.abs(pixels - np.array(rgb)).max(axis=2) < 40).sum()
        assert close > 500, f"colour {rgb} of the overlap plot not on the screenshot ({close} px)"


@pytest.mark.slow
def test_demo_report_answers_people_can_act_on(demo_run):
    """The verdict from the benchmark comparison, baseline and lift, the gallery (>= 6 thumbnails, faces drawn),
    the linked mediation with the simulator's true effects, and no raw column names in the prose."""
    from causal.reporting.gallery import FACE_COLOUR, THUMB_PX
    from causal.reporting.labels import DEFAULT_NAMES
    from tests.test_report_answers import raw_names_in

    run_dir, _ = demo_run
    text = (run_dir / "report.html").read_text()
    top = text[: text.index("In short.")]
    assert re.search(r"A hidden factor (\d+ times )?as strong as title popularity would (not )?be enough to erase", top)
    assert "on a baseline of" in text and "relative lift of" in text and "percentage points" in text
    thumbs = re.findall(r'<img class="thumb" alt="[^"]*" src="data:image/jpeg;base64,([^"]*)"', text)
    assert len(thumbs) >= 6
    boxed = 0
    for uri in thumbs:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            assert max(im.size) <= THUMB_PX
            px = np.asarray(im.convert("RGB"), dtype=np.int16)
        boxed += int((np.abs(px - np.array(FACE_COLOUR)).max(axis=2) < 40).sum() > 30)
    assert boxed >= 3  # the images with a detected face have their box drawn
    assert "Linked analysis: Does number of faces change take rate?" in text
    assert "true (simulator)" in text and 'href="mediation/report.html"' in text
    assert raw_names_in(text, DEFAULT_NAMES) == []
