"""Detector evaluation: matching, AP on cases with known answers, agreement with pycocotools, threshold choice."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pandas as pd
import pytest

from vision.evaluate import (
    COCO_IOU_THRESHOLDS,
    average_precision,
    box_iou,
    choose_threshold,
    contact_sheet,
    error_table,
    evaluate_detections,
    load_labels,
    match_detections,
    plot_pr_curves,
)


def labels_of(rows) -> pd.DataFrame:
    """rows: (image_id, x1, y1, x2, y2[, style]); None box fields for a face-free image."""
    cols = ["image_id", "x1", "y1", "x2", "y2", "style"][: len(rows[0])]
    df = pd.DataFrame(rows, columns=cols)
    for c in ["x1", "y1", "x2", "y2"]:
        df[c] = df[c].astype(float)
    return df


def dets_of(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "x1", "y1", "x2", "y2", "prob"])


# --- known answers -------------------------------------------------------------------------------------------------


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [0, 0, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


def test_perfect_detections_score_one():
    labels = labels_of([("a", 0, 0, 10, 10), ("a", 20, 20, 40, 40), ("b", 5, 5, 50, 60), ("c", None, None, None, None)])
    dets = labels.dropna().assign(prob=[0.9, 0.8, 0.7]).drop(columns=[])
    r = evaluate_detections(labels, dets)
    face = r["face_level"]
    assert face["ap50"] == 1.0 and face["ap50_95"] == 1.0 and face["ap50_coco101"] == 1.0
    assert (face["tp"], face["fp"], face["fn"]) == (3, 0, 0)
    img = r["image_level"]
    assert (img["tp"], img["fp"], img["tn"], img["fn"]) == (2, 0, 1, 0)
    assert img["sensitivity"] == 1.0 and img["specificity"] == 1.0 and img["count_exact_accuracy"] == 1.0


def test_one_false_positive_above_all_true_positives():
    labels = labels_of([("a", 0, 0, 10, 10), ("a", 20, 20, 40, 40)])
    dets = dets_of([("a", 100, 100, 120, 120, 0.9), ("a", 0, 0, 10, 10, 0.8), ("a", 20, 20, 40, 40, 0.7)])
    m = match_detections(labels, dets)
    assert m["tp"].tolist() == [False, True, True]
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1: the envelope is 2/3 everywhere
    assert average_precision(m["tp"], m["prob"], 2) == pytest.approx(2 / 3)
    r = evaluate_detections(labels, dets)
    assert r["ap50"] == pytest.approx(2 / 3)
    assert r["face_level"]["precision"] == pytest.approx(2 / 3)
    assert r["face_level"]["recall"] == 1.0


def test_duplicates_are_false_positives():
    labels = labels_of([("a", 0, 0, 100, 100)])
    dets = dets_of([("a", 0, 0, 100, 100, 0.9), ("a", 2, 2, 100, 100, 0.8), ("a", 0, 0, 98, 99, 0.95)])
    m = match_detections(labels, dets)
    # the highest score takes the face; the other two are duplicates
    assert m["tp"].tolist() == [False, False, True]
    assert m["gt_index"].isna().tolist() == [True, True, False]
    r = evaluate_detections(labels, dets)
    assert r["ap50"] == 1.0  # the TP ranks first
    assert (r["face_level"]["tp"], r["face_level"]["fp"]) == (1, 2)
    assert r["image_level"]["count_mae"] == 2.0 and r["image_level"]["count_exact_accuracy"] == 0.0


def test_detection_on_face_free_image():
    labels = labels_of([("a", 0, 0, 10, 10), ("b", None, None, None, None)])
    dets = dets_of([("b", 0, 0, 10, 10, 0.9), ("a", 0, 0, 10, 10, 0.6)])
    r = evaluate_detections(labels, dets)
    assert r["ap50"] == pytest.approx(0.5)  # FP then TP: precision 1/2 at recall 1
    img = r["image_level"]
    assert (img["tp"], img["fp"], img["tn"], img["fn"]) == (1, 1, 0, 0)
    assert img["n_positive"] == 1 and img["n_negative"] == 1
    assert img["specificity"] == 0.0 and img["sensitivity"] == 1.0 and img["precision"] == 0.5
    # above the FP's score neither image is called positive
    r = evaluate_detections(labels, dets, score_threshold=0.95)
    assert r["image_level"]["tn"] == 1 and r["image_level"]["fn"] == 1 and r["ap50"] == pytest.approx(0.5)


def test_greedy_match_takes_the_unmatched_ground_truth_of_highest_iou():
    labels = labels_of([("a", 0, 0, 10, 10), ("a", 3, 0, 13, 10)])
    # both detections overlap face 0 best; the second falls back to face 1 (IoU 7/13 >= 0.5): COCO, not VOC
    dets = dets_of([("a", 0, 0, 10, 10, 0.9), ("a", 1, 0, 11, 10, 0.8)])
    m = match_detections(labels, dets)
    assert m["tp"].tolist() == [True, True]
    assert m["gt_index"].tolist() == [0, 1]
    assert m["iou"].iloc[1] == pytest.approx(8 / 12)


def test_missed_faces_lower_recall_and_ap():
    labels = labels_of([("a", 0, 0, 10, 10), ("a", 50, 50, 60, 60), ("b", 0, 0, 10, 10), ("b", 20, 0, 30, 10)])
    dets = dets_of([("a", 0, 0, 10, 10, 0.9), ("b", 20, 0, 30, 10, 0.5)])
    r = evaluate_detections(labels, dets)
    assert r["ap50"] == pytest.approx(0.5)
    assert r["face_level"]["fn"] == 2
    assert r["image_level"]["count_confusion"]["matrix"][2][1] == 2


def test_ap50_95_falls_with_loose_boxes():
    labels = labels_of([("a", 0, 0, 100, 100)])
    dets = dets_of([("a", 0, 0, 100, 140, 0.9)])  # IoU 1/1.4 = 0.714: a hit at .5 .. .7, a miss at .75 .. .95
    r = evaluate_detections(labels, dets)
    assert r["ap50"] == 1.0
    assert r["face_level"]["ap50_95"] == pytest.approx(5 / 10)


def test_no_ground_truth_gives_nan_ap_not_a_crash():
    labels = labels_of([("a", None, None, None, None)])
    r = evaluate_detections(labels, dets_of([("a", 0, 0, 5, 5, 0.4)]))
    assert math.isnan(r["ap50"]) and r["image_level"]["fp"] == 1


def test_group_breakdown_ignores_other_groups_faces():
    labels = labels_of(
        [
            ("p", 0, 0, 10, 10, "photo"),
            ("d", 0, 0, 10, 10, "drawn"),
            ("d", 40, 40, 50, 50, "drawn"),
            ("m", 0, 0, 10, 10, "photo"),  # mixed image: its group is the first seen on a tie
            ("m", 40, 40, 50, 50, "drawn"),
            ("n", None, None, None, None, "drawn"),
        ]
    )
    dets = dets_of(
        [
            ("p", 0, 0, 10, 10, 0.9),
            ("d", 0, 0, 10, 10, 0.8),
            ("m", 0, 0, 10, 10, 0.7),
            ("m", 40, 40, 50, 50, 0.6),
            ("n", 0, 0, 10, 10, 0.95),
        ]
    )
    r = evaluate_detections(labels, dets, group_by="style")
    photo, drawn = r["by_style"]["photo"], r["by_style"]["drawn"]
    assert photo["face_level"]["n_gt"] == 2 and photo["face_level"]["ap50"] == 1.0
    assert (drawn["face_level"]["tp"], drawn["face_level"]["fp"], drawn["face_level"]["fn"]) == (2, 1, 1)
    # drawn ranking: FP 0.95, TP 0.8, TP 0.6 over 3 faces -> envelope 2/3 up to recall 2/3
    assert drawn["face_level"]["ap50"] == pytest.approx(2 / 3 * 2 / 3)
    assert photo["image_level"]["n_images"] == 2 and drawn["image_level"]["n_images"] == 2
    assert drawn["image_level"]["fp"] == 1 and drawn["image_level"]["tn"] == 0


def test_image_ids_restrict_the_evaluation():
    labels = labels_of([("a", 0, 0, 10, 10), ("b", 0, 0, 10, 10)])
    r = evaluate_detections(labels, dets_of([("a", 0, 0, 10, 10, 0.9)]), image_ids=["a"])
    assert r["n_images"] == 1 and r["ap50"] == 1.0
    with pytest.raises(ValueError, match="not in the labels"):
        evaluate_detections(labels, dets_of([]), image_ids=["zzz"])


# --- independent implementation ------------------------------------------------------------------------------------


def coco_stats(labels: pd.DataFrame, dets: pd.DataFrame) -> np.ndarray:
    """pycocotools' AP@[.5:.95] and AP@.5 (101-point interpolation, area 'all', maxDets 100)."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {k: i + 1 for i, k in enumerate(sorted(labels["image_id"].unique()))}
    gt = labels.dropna()
    gt_json = {
        "images": [{"id": i, "width": 1000, "height": 1000} for i in ids.values()],
        "categories": [{"id": 1, "name": "face"}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": ids[r.image_id],
                "category_id": 1,
                "bbox": [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1],
                "area": (r.x2 - r.x1) * (r.y2 - r.y1),
                "iscrowd": 0,
            }
            for k, r in enumerate(gt.itertuples())
        ],
    }
    dt_json = [
        {"image_id": ids[r.image_id], "category_id": 1, "bbox": [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1], "score": r.prob}
        for r in dets.itertuples()
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dt_json), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def random_case(seed: int, n_images: int = 12):
    rng = np.random.default_rng(seed)
    lab, det = [], []
    for i in range(n_images):
        image_id = f"img{i:02d}"
        n = int(rng.integers(0, 5))
        if n == 0:
            lab.append((image_id, None, None, None, None))
        for _ in range(n):
            x, y, s = rng.uniform(0, 800), rng.uniform(0, 800), rng.uniform(15, 150)
            box = (x, y, x + s, y + s * rng.uniform(0.9, 1.4))
            lab.append((image_id, *box))
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 detections per face, jittered (duplicates)
                j = rng.normal(0, 0.12 * s, 4)
                det.append((image_id, box[0] + j[0], box[1] + j[1], box[2] + j[2], box[3] + j[3], rng.uniform()))
        for _ in range(int(rng.integers(0, 3))):  # background false positives
            x, y, s = rng.uniform(0, 800), rng.uniform(0, 800), rng.uniform(15, 150)
            det.append((image_id, x, y, x + s, y + s, rng.uniform()))
    return labels_of(lab), dets_of(det)


def coco101_ap(labels, dets, thresholds):
    gt = labels.dropna()
    aps = []
    for t in thresholds:
        m = match_detections(gt, dets, iou_threshold=float(t))
        aps.append(average_precision(m["tp"], m["prob"], len(gt), interpolation="coco101"))
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_pycocotools_on_random_boxes(seed):
    labels, dets = random_case(seed)
    stats = coco_stats(labels, dets)
    assert coco101_ap(labels, dets, [0.5]) == pytest.approx(stats[1], abs=1e-9)
    assert coco101_ap(labels, dets, COCO_IOU_THRESHOLDS) == pytest.approx(stats[0], abs=1e-9)
    assert evaluate_detections(labels, dets)["face_level"]["ap50_coco101"] == pytest.approx(stats[1], abs=1e-9)


def test_agrees_with_pycocotools_on_hand_made_cases():
    labels = labels_of([("a", 0, 0, 10, 10), ("a", 20, 20, 40, 40), ("b", None, None, None, None)])
    dets = dets_of(
        [
            ("b", 0, 0, 10, 10, 0.95),  # FP on a face-free image, above everything
            ("a", 0, 0, 10, 10, 0.9),
            ("a", 1, 1, 10, 10, 0.85),  # duplicate
            ("a", 20, 20, 40, 44, 0.5),  # IoU 400/480
        ]
    )
    stats = coco_stats(labels, dets)
    assert coco101_ap(labels, dets, [0.5]) == pytest.approx(stats[1], abs=1e-9)
    assert coco101_ap(labels, dets, COCO_IOU_THRESHOLDS) == pytest.approx(stats[0], abs=1e-9)


@pytest.mark.parametrize("seed", [10, 11])
def test_all_point_ap_is_the_integral_of_the_precision_envelope(seed):
    # An independent definition: AP = integral over recall r in [0, 1] of max{precision at recall >= r}.
    labels, dets = random_case(seed)
    gt = labels.dropna()
    m = match_detections(gt, dets)
    order = np.argsort(-m["prob"].to_numpy(), kind="mergesort")
    tp = m["tp"].to_numpy()[order]
    ctp, k = np.cumsum(tp), np.arange(1, len(tp) + 1)
    precision, recall = ctp / k, ctp / len(gt)
    grid = (np.arange(200_000) + 0.5) / 200_000
    integral = np.mean([precision[recall >= r].max(initial=0.0) for r in grid[::50]])
    assert average_precision(m["tp"], m["prob"], len(gt)) == pytest.approx(integral, abs=2e-3)


# --- threshold choice ----------------------------------------------------------------------------------------------


def test_choose_threshold():
    matches = pd.DataFrame({"prob": [0.9, 0.8, 0.7, 0.6, 0.5], "tp": [True, True, False, True, False]})
    # precision at >= .9 .8 .7 .6 .5: 1, 1, 2/3, 3/4, 3/5
    r = choose_threshold(matches, n_gt=4, target_precision=0.75)
    assert r["reached"] and r["threshold"] == 0.6 and r["recall"] == 0.75 and r["precision"] == 0.75
    r = choose_threshold(matches, n_gt=4, target_precision=1.0)
    assert r["threshold"] == 0.8 and r["recall"] == 0.5 and r["n_kept"] == 2
    r = choose_threshold(matches, n_gt=4, target_precision=0.5)
    assert r["threshold"] == 0.5 and r["recall"] == 0.75


def test_choose_threshold_keeps_ties_together_and_reports_failure():
    matches = pd.DataFrame({"prob": [0.9, 0.9, 0.5], "tp": [True, False, True]})
    r = choose_threshold(matches, n_gt=2, target_precision=0.9)
    assert not r["reached"] and r["threshold"] is None
    assert r["best_precision"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="target_precision"):
        choose_threshold(matches, n_gt=2, target_precision=0)


# --- labels file, errors, plots ------------------------------------------------------------------------------------


def test_load_labels(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("image_id,x1,y1,x2,y2,style\nposters/a b.png,1,2,30,40,photo\nneg.jpg,,,,,illustration\n")
    df = load_labels(p)
    assert df["image_id"].tolist() == ["posters/a b.png", "neg.jpg"]
    assert df["x1"].dtype == float and math.isnan(df["x1"].iloc[1]) and df["style"].tolist()[1] == "illustration"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image_id,x1,y1,x2\na,1,2,3\n", "missing column"),
        ("image_id,x1,y1,x2,y2\na,1,2,,4\n", "some box fields empty"),
        ("image_id,x1,y1,x2,y2\na,10,2,5,4\n", "x2 <= x1"),
        ("image_id,x1,y1,x2,y2\na,1,2,abc,4\n", "'x2' is not numeric"),
        ("image_id,x1,y1,x2,y2\na,1,2,3,4\na,,,,\n", "both face boxes and an empty"),
    ],
)
def test_load_labels_errors_name_the_file(tmp_path, text, message):
    p = tmp_path / "bad_labels.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_labels(p)
    assert "bad_labels.csv" in str(err.value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_labels(tmp_path / "nope.csv")


def test_error_table_lists_every_fp_and_fn():
    labels = labels_of([("a", 0, 0, 10, 10, "x"), ("a", 50, 50, 60, 60, "x"), ("b", None, None, None, None, "y")])
    dets = dets_of([("a", 0, 0, 10, 10, 0.9), ("b", 5, 5, 9, 9, 0.8), ("a", 52, 52, 62, 62, 0.3)])
    e = error_table(labels, dets, extra_columns=["style"])
    assert sorted(zip(e["kind"], e["image_id"])) == [("FN", "a"), ("FP", "a"), ("FP", "b")]
    fn = e[e["kind"] == "FN"].iloc[0]
    assert (fn["x1"], fn["y2"], math.isnan(fn["prob"])) == (50, 60, True)
    assert fn["iou"] == pytest.approx(64 / 136)
    assert e.loc[e["image_id"] == "b", "style"].iloc[0] == "y"
    # at a threshold above the loose detection it drops out of the FPs; the face stays missed
    e = error_table(labels, dets, score_threshold=0.5)
    assert sorted(zip(e["kind"], e["image_id"])) == [("FN", "a"), ("FP", "b")]


def test_plots_write_pngs_with_the_right_colours(tmp_path):
    from PIL import Image

    labels = labels_of([("a", 20, 20, 120, 120), ("a", 150, 150, 250, 250)])
    dets = dets_of([("a", 20, 20, 120, 120, 0.9), ("a", 10, 150, 60, 200, 0.8)])
    sheet = contact_sheet(labels, dets, lambda _: np.full((256, 256, 3), 128, np.uint8), tmp_path / "s.png", tile=256)
    px = np.asarray(Image.open(sheet).convert("RGB"))
    assert tuple(px[70, 20]) == (0, 200, 0)  # TP edge: green
    assert tuple(px[175, 10]) == (255, 0, 0)  # FP edge: red
    assert tuple(px[200, 150]) == (0, 90, 255)  # missed face edge: blue
    r = evaluate_detections(labels, dets)
    png = plot_pr_curves({"all": {**r["face_level"]["pr_curve"], "ap": r["ap50"]}}, tmp_path / "pr.png")
    assert Image.open(png).size[0] > 100


def test_evaluate_script_on_an_annotation_folder(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ["a.png", "sub/b.jpg", "c.png"]:
        Image.new("RGB", (120, 90), (90, 120, 150)).save(images / name)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image_id,x1,y1,x2,y2,style\na.png,10,10,40,40,photo\na.png,60,10,90,40,photo\n"
        "sub/b.jpg,5,5,30,30,illustration\nc.png,,,,,illustration\n"
    )
    ann = tmp_path / "ann"
    (ann / "images").mkdir(parents=True)
    (ann / "faces").mkdir()
    pd.DataFrame({"image_id": ["a.png", "sub/b.jpg", "c.png"], "status": ["ok", "ok", "ok"]}).to_parquet(
        ann / "images" / "part-000000.parquet"
    )
    dets_of(
        [("a.png", 10, 10, 40, 40, 0.99), ("c.png", 0, 0, 20, 20, 0.9), ("sub/b.jpg", 70, 50, 90, 80, 0.8)]
    ).to_parquet(ann / "faces" / "part-000000.parquet")
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "evaluate_detector.py"),
            f"labels={labels}",
            f"annotations={ann}",
            f"images={images}",
            f"hydra.run.dir={run}",
            "~vision",  # no detector is built when reading annotations
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "style=photo" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    img = metrics["image_level"]
    assert (img["tp"], img["fp"], img["tn"], img["fn"]) == (2, 1, 0, 0)
    assert img["sensitivity"] == 1.0 and img["specificity"] == 0.0
    assert (img["n_positive"], img["n_negative"]) == (2, 1)
    assert metrics["face_level"]["tp"] == 1 and metrics["by_style"]["photo"]["face_level"]["n_gt"] == 2
    # The box-convention-fair block: one pair is too few to fit factors, so the labels stay as drawn.
    assert metrics["rescaled"]["box_scale"]["all"] == {"sx": 1.0, "sy": 1.0, "n_pairs": 1, "fitted": False}
    assert metrics["rescaled"]["ap50"] == metrics["ap50"]
    assert metrics["image_level_by"]["style"]["photo"] == {
        "sensitivity": 1.0,
        "specificity": None,
        "tp": 1,
        "fp": 0,
        "tn": 0,
        "fn": 0,
        "n_positive": 1,
        "n_negative": 0,
    }
    errors = pd.read_csv(run / "errors.csv")
    assert sorted(errors["kind"]) == ["FN", "FN", "FP", "FP"]
    assert (run / "pr_curve.png").stat().st_size > 0 and (run / "contact_sheet.png").stat().st_size > 0
