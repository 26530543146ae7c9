"""The annotation pipeline end to end on real images: bad input, schema, EXIF, resume after kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_bad_input_folder
from PIL import Image

from vision.annotate import AnnotationError, BatchAnnotator, annotate_folder

REPO = Path(__file__).resolve().parents[1]

IMAGE_COLUMNS = [
    "image_id",
    "width",
    "height",
    "status",
    "error",
    "face_present",
    "face_count",
    "face_area_mean",
    "face_area_max",
    "face_area_total",
    "face_prob_max",
    "largest_face_cx",
    "largest_face_cy",
    "largest_face_yaw",
    "largest_face_pitch",
    "largest_face_roll",
    "largest_face_frontal",
    "face_embedding_mean",
    "image_embedding",
]
FACE_COLUMNS = [
    "image_id",
    "face_index",
    *("x1", "y1", "x2", "y2", "prob", "area_frac", "landmarks", "embedding"),
    *("yaw", "pitch", "roll", "frontal"),
]


@pytest.fixture(scope="module")
def detector():
    from vision.detect import MTCNNDetector

    return MTCNNDetector(detection_size=512, device="cpu")


@pytest.fixture(scope="module")
def annotator(detector) -> BatchAnnotator:
    return BatchAnnotator(detector=detector)


def _save_exif_rotated(upright: np.ndarray, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90 degrees counter-clockwise; viewers rotate it back
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(path, exif=exif, quality=95)


def test_bad_input_folder_one_row_per_file(tmp_path: Path, annotator: BatchAnnotator, astronaut: np.ndarray) -> None:
    """The in-process decoding path (num_workers=0, not the shipped default, which test_annotate_defaults covers) and
    batches and parts cut by error rows (small batch_size/part_size)."""
    expected = make_bad_input_folder(tmp_path / "in", astronaut)
    summary = annotate_folder(tmp_path / "in", tmp_path / "out", annotator, batch_size=4, part_size=5, num_workers=0)
    images = pd.read_parquet(tmp_path / "out" / "images")
    assert sorted(images["image_id"]) == sorted(expected)
    assert summary.ok + summary.errors == len(expected) and summary.errors == sum(
        v is not None for v in expected.values()
    )
    by_id = images.set_index("image_id")
    for image_id, cause in expected.items():
        row = by_id.loc[image_id]
        if cause is None:
            assert row["status"] == "ok", (image_id, row["error"])
            if image_id not in ("one-pixel.png", "transparent.webp"):  # the two files that are not the photo
                assert row["width"] == astronaut.shape[1] and row["height"] == astronaut.shape[0], image_id
        else:
            assert row["status"] == "error" and cause in row["error"], (image_id, row["error"])
    # The astronaut's face is found in every good colour variant.
    ok = images[images["status"] == "ok"]
    assert (ok["face_count"] >= 1).mean() >= 0.8


def test_tables_have_every_contract_column(tmp_path: Path, annotator: BatchAnnotator, astronaut: np.ndarray) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "in" / "a.png")
    Image.new("RGB", (300, 200), (30, 60, 90)).save(tmp_path / "in" / "blank.png")
    annotate_folder(tmp_path / "in", tmp_path / "out", annotator, num_workers=0)
    images = pd.read_parquet(tmp_path / "out" / "images").set_index("image_id")
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    assert set(IMAGE_COLUMNS) - {"image_id"} <= set(images.columns)
    assert set(FACE_COLUMNS) <= set(faces.columns)
    assert not bool(images.loc["blank.png", "face_present"]) and images.loc["blank.png", "face_count"] == 0
    assert images.loc["a.png", "face_count"] == (faces["image_id"] == "a.png").sum() >= 1
    assert all(len(lm) == 10 for lm in faces["landmarks"])
    # Labeled face box of skimage's astronaut: (180, 72, 271, 181) in original pixels.
    best = faces.loc[faces["prob"].idxmax(), ["x1", "y1", "x2", "y2"]].to_numpy(float)
    assert _iou(best, np.array([180, 72, 271, 181.0])) > 0.5


def test_exif_rotated_boxes_are_in_upright_pixels(tmp_path: Path, annotator: BatchAnnotator, astronaut) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "in" / "upright.jpg", quality=95)
    _save_exif_rotated(astronaut, tmp_path / "in" / "rotated.jpg")
    annotate_folder(tmp_path / "in", tmp_path / "out", annotator, num_workers=0)
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    top = faces.sort_values("prob", ascending=False).groupby("image_id").head(1).set_index("image_id")
    a = top.loc["upright.jpg", ["x1", "y1", "x2", "y2"]].to_numpy(float)
    b = top.loc["rotated.jpg", ["x1", "y1", "x2", "y2"]].to_numpy(float)
    assert _iou(a, b) > 0.85
    images = pd.read_parquet(tmp_path / "out" / "images").set_index("image_id")
    assert tuple(images.loc["rotated.jpg", ["width", "height"]]) == (astronaut.shape[1], astronaut.shape[0])


def test_mapping_back_from_reduced_decode(tmp_path: Path, annotator: BatchAnnotator, astronaut) -> None:
    """Decoding at a reduced size (max_long_side) still reports boxes in original pixels."""
    big = np.asarray(Image.fromarray(astronaut).resize((1536, 1536), Image.Resampling.BICUBIC))
    (tmp_path / "in").mkdir()
    Image.fromarray(big).save(tmp_path / "in" / "big.jpg", quality=95)
    annotate_folder(tmp_path / "in", tmp_path / "out", annotator, num_workers=0, max_long_side=512)
    faces = pd.read_parquet(tmp_path / "out" / "faces")
    best = faces.loc[faces["prob"].idxmax(), ["x1", "y1", "x2", "y2"]].to_numpy(float)
    assert _iou(best, np.array([180, 72, 271, 181.0]) * 3) > 0.5


def test_missing_input_and_unwritable_output_fail_before_work(tmp_path: Path, annotator: BatchAnnotator) -> None:
    with pytest.raises(AnnotationError, match="does not exist"):
        annotate_folder(tmp_path / "nope", tmp_path / "out", annotator)
    (tmp_path / "in").mkdir()
    with pytest.raises(AnnotationError, match="no image files under"):
        annotate_folder(tmp_path / "in", tmp_path / "out", annotator)
    Image.new("RGB", (64, 64)).save(tmp_path / "in" / "a.png")
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    with pytest.raises(AnnotationError, match="cannot write to output folder"):
        annotate_folder(tmp_path / "in", tmp_path / "blocker" / "out", annotator)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --------------------------------------------------------------------------------------------------------------------
# Resume: a subprocess killed with SIGKILL mid-run, then re-run, gives exactly the rows of an uninterrupted run.
# --------------------------------------------------------------------------------------------------------------------


def _resume_folder(root: Path, face: np.ndarray, n: int = 24) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        size = int(rng.integers(160, 320))
        img = Image.fromarray(face).resize((size, size)) if i % 3 else Image.new("RGB", (size, size // 2), (i, 80, 40))
        img.save(root / f"img-{i:03d}.png")


def _annotate_cli(input_dir: Path, output_dir: Path, **overrides: str) -> subprocess.Popen:
    args = [
        sys.executable,
        str(REPO / "scripts" / "annotate.py"),
        f"input={input_dir}",
        f"output={output_dir}",
        "progress=false",
        "vision.device=cpu",
        "vision.detector.detection_size=320",
        # Parts of 2 so that a kill lands between parts of a small folder; the decoding worker is the shipped default.
        "vision.part_size=2",
        "vision.batch_size=2",
        # Colour features on, the slower latent/embedding models off: resume is about rows, not models.
        "vision/embedder=none",
        "vision.image_features.latent=false",
        f"hydra.run.dir={output_dir.parent / ('hydra-' + output_dir.name)}",
        *[f"{k}={v}" for k, v in overrides.items()],
    ]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _sorted_tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = pd.read_parquet(out / "images").sort_values("image_id").reset_index(drop=True)
    faces = pd.read_parquet(out / "faces").sort_values(["image_id", "face_index"]).reset_index(drop=True)
    return images, faces


@pytest.mark.slow
def test_kill_then_resume_equals_uninterrupted_run(tmp_path: Path, astronaut: np.ndarray) -> None:
    _resume_folder(tmp_path / "in", astronaut)
    reference = _annotate_cli(tmp_path / "in", tmp_path / "ref")
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    killed = _annotate_cli(tmp_path / "in", tmp_path / "out")
    deadline = time.time() + 300
    images_dir = tmp_path / "out" / "images"
    while time.time() < deadline and killed.poll() is None:
        if images_dir.is_dir() and len(list(images_dir.glob("part-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed; give it more images"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    partial = pd.read_parquet(images_dir)
    assert 0 < len(partial) < 24

    resumed = _annotate_cli(tmp_path / "in", tmp_path / "out")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "resum" in output.lower() or "skipped (already done) " in output

    ref_images, ref_faces = _sorted_tables(tmp_path / "ref")
    got_images, got_faces = _sorted_tables(tmp_path / "out")
    assert got_images["image_id"].tolist() == ref_images["image_id"].tolist()
    assert not got_images["image_id"].duplicated().any()
    pd.testing.assert_frame_equal(got_images, ref_images, check_exact=False, atol=1e-4)
    pd.testing.assert_frame_equal(got_faces, ref_faces, check_exact=False, atol=1e-3)
    shutil.rmtree(tmp_path / "in")


def test_encoder_beside_the_detector_gives_the_same_rows() -> None:
    """overlap_encoder runs EfficientNet in a thread while YuNet and SFace work: the rows must not change."""
    from hydra import compose, initialize_config_dir

    from vision.annotate import annotator_from_config
    from vision.io import find_images, load_image

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="annotate", overrides=["input=unused", "output=unused"])
    annotator = annotator_from_config(cfg.vision)
    assert annotator.image_encoder is not None and annotator.embedder is not None and annotator.overlap_encoder
    paths = find_images(REPO / "assets_sample" / "images")[:6]
    decoded = [load_image(p, max_long_side=cfg.vision.max_long_side) for p in paths]
    ids = [p.name for p in paths]
    overlapped = annotator.annotate_batch(ids, decoded)
    annotator.overlap_encoder = False
    sequential = annotator.annotate_batch(ids, decoded)
    annotator.close()
    assert sum(r["face_count"] for r in overlapped[0]) > 0  # faces, so the face embedder ran beside the encoder
    for got, want in zip(overlapped, sequential, strict=True):
        assert pd.DataFrame(got).equals(pd.DataFrame(want))
