"""User-facing annotation behaviour with the configuration a user gets: conf/annotate.yaml as shipped (the default
detector, SFace, colour, EfficientNet-Lite0, one spawned decoding process), only input/output set. Bad files,
changed folders, concurrent runs, a changed config, signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import check_bad_input_rows, make_bad_input_folder
from PIL import Image

from vision.annotate import AnnotationError, annotate_from_config
from vision.lock import OutputLock
from vision.store import read_annotations

REPO = Path(__file__).resolve().parents[1]


def _annotate(cfg, input_dir: Path, output_dir: Path):
    return annotate_from_config(cfg.vision, input_dir, output_dir, runner_cfg=cfg.runner, ray_cfg=cfg.ray)


def _cli(input_dir: Path, output_dir: Path, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, str(REPO / "scripts" / "annotate.py"), f"input={input_dir}", f"output={output_dir}"]
    args += ["progress=false", f"hydra.run.dir={output_dir.parent / ('hydra-' + output_dir.name)}", *overrides]
    # A session of its own, so that a Ctrl-C can be sent to the run's process group as a terminal does.
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


@pytest.mark.slow
def test_bad_input_folder_with_the_shipped_defaults(tmp_path: Path, astronaut: np.ndarray) -> None:
    expected = make_bad_input_folder(tmp_path / "in", astronaut)
    run = _cli(tmp_path / "in", tmp_path / "out")
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr
    assert f"errors {sum(c is not None for c in expected.values())} " in stdout
    check_bad_input_rows(tmp_path / "out", expected, astronaut)


def _folder(root: Path, face: np.ndarray, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        size = 160 + 16 * i
        img = Image.fromarray(face).resize((size, size)) if i % 2 == 0 else Image.new("RGB", (size, 90), (i, 80, 40))
        img.save(root / f"img-{i:02d}.png")


def test_resume_reflects_replaced_deleted_and_added_files(tmp_path, astronaut, default_annotate_config) -> None:
    cfg = default_annotate_config("input=unused", "output=unused")
    _folder(tmp_path / "in", astronaut, 6)
    first = _annotate(cfg, tmp_path / "in", tmp_path / "out")
    assert (first.ok, first.errors) == (6, 0)
    before, _ = read_annotations(tmp_path / "out")
    assert before.set_index("image_id").loc["img-00.png", "face_count"] >= 1
    Image.new("RGB", (300, 120), (10, 20, 30)).save(tmp_path / "in" / "img-00.png")  # a face poster becomes blank
    (tmp_path / "in" / "img-01.png").unlink()
    Image.fromarray(astronaut).save(tmp_path / "in" / "new.png")
    second = _annotate(cfg, tmp_path / "in", tmp_path / "out")
    assert (second.skipped, second.changed, second.removed, second.ok) == (4, 1, 1, 2)
    images, faces = read_annotations(tmp_path / "out")
    rows = images.set_index("image_id")
    assert sorted(rows.index) == sorted(["img-00.png", "new.png"] + [f"img-{i:02d}.png" for i in range(2, 6)])
    assert (rows.loc["img-00.png", "width"], rows.loc["img-00.png", "face_count"]) == (300, 0)
    assert rows.loc["new.png", "face_count"] >= 1
    # The faces table follows: none left for the replaced or the deleted file, the new file's are there.
    assert not faces["image_id"].isin(["img-00.png", "img-01.png"]).any()
    assert (faces["image_id"] == "new.png").sum() == rows.loc["new.png", "face_count"]
    unchanged = before.set_index("image_id").loc[[f"img-{i:02d}.png" for i in range(2, 6)]]
    pd.testing.assert_frame_equal(rows.loc[unchanged.index], unchanged)
    third = _annotate(cfg, tmp_path / "in", tmp_path / "out")
    assert (third.skipped, third.processed, third.changed, third.removed) == (6, 0, 0, 0)


def test_resume_under_other_vision_settings_refuses(tmp_path, astronaut, default_annotate_config) -> None:
    _folder(tmp_path / "in", astronaut, 3)
    _annotate(default_annotate_config("input=x", "output=y"), tmp_path / "in", tmp_path / "out")
    parts = sorted((tmp_path / "out" / "images").iterdir())
    (tmp_path / "in" / "img-00.png").unlink()  # pending work, so that a mixed run would write something
    shipped = default_annotate_config("input=x", "output=y").vision.detector.min_prob
    other = default_annotate_config("input=x", "output=y", f"vision.detector.min_prob={shipped / 2}")
    changed = f"other vision settings (vision.detector.min_prob: {shipped} -> {shipped / 2})"
    with pytest.raises(AnnotationError, match=re.escape(changed)):
        _annotate(other, tmp_path / "in", tmp_path / "out")
    assert sorted((tmp_path / "out" / "images").iterdir()) == parts  # nothing removed or added
    # Settings that do not shape the rows may change between runs.
    same_rows = default_annotate_config("input=x", "output=y", "vision.batch_size=2", "vision.num_workers=0")
    assert _annotate(same_rows, tmp_path / "in", tmp_path / "out").removed == 1


def test_a_second_writer_fails_fast_naming_the_holder(tmp_path, astronaut, default_annotate_config) -> None:
    _folder(tmp_path / "in", astronaut, 2)
    cfg = default_annotate_config("input=x", "output=y")
    held = rf"being written by another run \(pid {os.getpid()} on "
    with OutputLock(tmp_path / "out"), pytest.raises(AnnotationError, match=held):
        _annotate(cfg, tmp_path / "in", tmp_path / "out")
    assert not list((tmp_path / "out").rglob("part-*"))
    assert _annotate(cfg, tmp_path / "in", tmp_path / "out").ok == 2  # the lock is released with its holder


def _wait_for_parts(run: subprocess.Popen, images: Path, n: int, timeout: float = 300) -> None:
    """Until ``run`` has committed ``n`` parts (or ended, or ``timeout`` seconds passed)."""
    deadline = time.time() + timeout
    while time.time() < deadline and run.poll() is None and len(list(images.glob("part-*"))) < n:
        time.sleep(0.05)


@pytest.mark.slow
def test_two_concurrent_runs_on_one_output_never_duplicate(tmp_path: Path, astronaut: np.ndarray) -> None:
    _folder(tmp_path / "in", astronaut, 120)
    # Small parts (a changed default) so that the first run is mid-way, with parts written, when the second starts.
    first = _cli(tmp_path / "in", tmp_path / "out", "vision.part_size=4")
    _wait_for_parts(first, tmp_path / "out" / "images", 1)
    second = _cli(tmp_path / "in", tmp_path / "out", "vision.part_size=4")
    _, err2 = second.communicate(timeout=300)
    assert second.returncode == 2 and "being written by another run (pid" in err2, err2
    waiting = _cli(tmp_path / "in", tmp_path / "out", "vision.lock_timeout=-1")  # asked to wait: runs after
    _, err1 = first.communicate(timeout=600)
    out3, err3 = waiting.communicate(timeout=600)
    assert first.returncode == 0 and waiting.returncode == 0, err1[-2000:] + err3[-2000:]
    assert "skipped (already done) 120" in out3
    table, _ = read_annotations(tmp_path / "out")
    assert len(table) == 120 and not table["image_id"].duplicated().any()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_signals_leave_whole_parts_no_workers_and_a_resume_hint(tmp_path, astronaut, sig, code) -> None:
    _folder(tmp_path / "in", astronaut, 40)
    # Small parts (a changed default) so that the signal lands between parts on a small folder.
    run = _cli(tmp_path / "in", tmp_path / "out", "vision.part_size=4")
    images = tmp_path / "out" / "images"
    _wait_for_parts(run, images, 2)
    assert run.poll() is None, "the run finished before the signal; give it more images"
    workers = _children(run.pid)
    assert workers, "the shipped default decodes in a worker process"
    if sig == signal.SIGINT:
        os.killpg(run.pid, sig)  # Ctrl-C in a terminal reaches the decoding worker too
    else:
        run.send_signal(sig)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr[-2000:]
    if sig != signal.SIGKILL:
        assert "run the same command again to resume" in stderr and "Traceback" not in stderr, stderr[-2000:]
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "decoding workers outlived the run"
    assert not list(images.glob(".*.tmp")) or sig == signal.SIGKILL
    partial, _ = read_annotations(tmp_path / "out")
    assert 0 < len(partial) < 40 and len(partial) % 4 == 0
    resumed = _cli(tmp_path / "in", tmp_path / "out")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    table, _ = read_annotations(tmp_path / "out")
    assert sorted(table["image_id"]) == [f"img-{i:02d}.png" for i in range(40)]
