"""Measure the face detector at several detection sizes: AP@0.5 on a labeled folder and images/s.

    python scripts/sweep_detection_size.py                       # assets_sample, default grid, naive baseline
    python scripts/sweep_detection_size.py --sizes 640 800 1024 --min-face-sizes 16 20 --poster-long-side 0

Two data sets are measured with the same labels:

- ``native``: the labeled folder as it is (assets_sample: 270-1725 px).
- ``posters-<N>px``: every labeled image upscaled (bicubic) to an N px long side, labels scaled alike: the ~2000 px
  posters of the speed target.

Every configuration (ours at each detection size x min_face_size, and the naive baseline: PIL at full resolution,
``facenet_pytorch.MTCNN(keep_all=True).detect`` one image at a time with default settings) processes the same images,
interleaved in chunks so that load on a shared machine hits all of them alike. Times include decoding (ours decodes
with ``vision.io.load_image(max_long_side=detection_size)`` as the pipeline does). AP is all-point interpolated at
IoU 0.5 (``vision.evaluate.evaluate_detections``), over all detections (``ap50``) and over those kept by the first
``--min-prob`` value (``ap50_kept``: what the pipeline outputs); recall/precision and image-level
sensitivity/specificity are at that value too; with several values a second table lists each operating point.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Method:
    name: str
    detection_size: int | None = None  # None: naive
    min_face_size: float = 20.0
    detector: object = None
    seconds: float = 0.0
    rows: list = field(default_factory=list)


def make_posters(root: Path, labels: pd.DataFrame, out: Path, long_side: int) -> pd.DataFrame:
    """Upscale every labeled image to ``long_side`` (bicubic, JPEG q90) and return the scaled labels."""
    scaled = []
    for image_id, group in labels.groupby("image_id", sort=True):
        im = Image.open(root / image_id).convert("RGB")
        w, h = im.size
        ratio = long_side / max(w, h)
        size = (round(w * ratio), round(h * ratio))
        target = out / (Path(image_id).with_suffix(".jpg"))
        target.parent.mkdir(parents=True, exist_ok=True)
        im.resize(size, Image.Resampling.BICUBIC).save(target, quality=90)
        g = group.copy()
        g["image_id"] = target.relative_to(out).as_posix()
        g[["x1", "x2"]] *= size[0] / w
        g[["y1", "y2"]] *= size[1] / h
        scaled.append(g)
    return pd.concat(scaled, ignore_index=True)


def run_chunk(method: Method, root: Path, ids: list[str]) -> None:
    """Decode and detect ``ids`` with ``method``; add the time and the face rows (original pixels)."""
    from vision.io import load_image

    start = time.perf_counter()
    if method.detection_size is None:
        found = []
        for image_id in ids:
            boxes, probs = method.detector.detect(Image.open(root / image_id).convert("RGB"))
            found.append((boxes if boxes is not None else np.zeros((0, 4)), probs if boxes is not None else []))
    else:
        decoded = [load_image(root / i, max_long_side=method.detection_size) for i in ids]
        dets = method.detector.detect([d.pixels for d in decoded])
        found = []
        for d, det in zip(decoded, dets, strict=True):
            s = d.width / d.pixels.shape[1], d.height / d.pixels.shape[0]
            found.append((det.boxes * np.array([s[0], s[1], s[0], s[1]]), det.probs))
    method.seconds += time.perf_counter() - start
    for image_id, (boxes, probs) in zip(ids, found, strict=True):
        method.rows += [(image_id, *map(float, b), float(p)) for b, p in zip(boxes, probs, strict=True)]


def evaluate(method: Method, labels: pd.DataFrame, ids: list[str], min_probs: list[float]) -> list[dict]:
    """One row per operating point ``min_prob``: AP (all detections), face- and image-level rates, images/s."""
    from vision.evaluate import evaluate_detections

    faces = pd.DataFrame(method.rows, columns=["image_id", "x1", "y1", "x2", "y2", "prob"])
    out = []
    for min_prob in min_probs:
        m = evaluate_detections(labels, faces, image_ids=ids, score_threshold=min_prob)
        kept = evaluate_detections(labels, faces[faces["prob"] >= min_prob], image_ids=ids)
        f, i = m["face_level"], m["image_level"]
        out.append(
            {
                "min_prob": min_prob,
                "ap50": m["ap50"],
                "ap50_kept": kept["ap50"],
                "recall": f["recall"],
                "precision": f["precision"],
                "f1": f["f1"],
                "sensitivity": i["sensitivity"],
                "specificity": i["specificity"],
                "images_per_s": len(ids) / method.seconds,
            }
        )
    return out


def make_methods(args: argparse.Namespace) -> list[Method]:
    from vision.detect import MTCNNDetector

    methods = []
    if args.naive:
        from facenet_pytorch import MTCNN

        methods.append(Method("naive (full res)", detector=MTCNN(keep_all=True, device="cpu")))
    for size in args.sizes:
        for mfs in args.min_face_sizes:
            det = MTCNNDetector(
                detection_size=size,
                min_face_size=mfs,
                thresholds=tuple(args.thresholds),
                upscale=args.upscale,
                min_prob=0.0,  # keep every O-net survivor so AP sees the whole curve
                batch_size=args.chunk,
                device="cpu",
            )
            methods.append(Method(f"ours {size}/{mfs:g}", detection_size=size, min_face_size=mfs, detector=det))
    return methods


def sweep(name: str, root: Path, labels: pd.DataFrame, args: argparse.Namespace) -> list[dict]:
    ids = sorted(labels["image_id"].unique())
    methods = make_methods(args)
    for start in range(0, len(ids), args.chunk):
        chunk = ids[start : start + args.chunk]
        for method in methods:
            run_chunk(method, root, chunk)
        print(f"  {name}: {start + len(chunk)}/{len(ids)} images", flush=True)
    rows = []
    naive_ips = None
    for method in methods:
        for point in evaluate(method, labels, ids, args.min_prob):
            r = {
                "data": name,
                "method": method.name,
                "detection_size": method.detection_size or "full",
                "min_face_size": method.min_face_size,
                **point,
            }
            if method.detection_size is None:
                naive_ips = r["images_per_s"]
            r["speedup"] = r["images_per_s"] / naive_ips if naive_ips else float("nan")
            rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=REPO / "assets_sample" / "images", help="labeled image folder")
    ap.add_argument(
        "--labels",
        type=Path,
        default=REPO / "assets_sample" / "labels.csv",
        help="labels.csv: image_id,x1,y1,x2,y2 (image_id relative to --images)",
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 480, 640, 800, 1024, 1280])
    ap.add_argument("--min-face-sizes", type=float, nargs="+", default=[20.0])
    ap.add_argument("--thresholds", type=float, nargs=3, default=[0.6, 0.7, 0.7])
    ap.add_argument("--upscale", action="store_true", help="also enlarge images smaller than the detection size")
    ap.add_argument(
        "--min-prob", type=float, nargs="+", default=[0.9], help="operating point(s) for the recall/precision columns"
    )
    ap.add_argument("--poster-long-side", type=int, default=2000, help="0 skips the upscaled-poster data set")
    ap.add_argument("--no-native", dest="native", action="store_false", help="skip the folder at its own size")
    ap.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive facenet-pytorch baseline")
    ap.add_argument("--chunk", type=int, default=8, help="images per interleaved chunk (= our batch size)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenCV threads")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    args = ap.parse_args()

    import cv2

    from vision.device import configure_threads
    from vision.evaluate import load_labels

    configure_threads(args.threads)
    cv2.setNumThreads(args.threads)
    labels = load_labels(args.labels)
    print(
        f"{labels['image_id'].nunique()} images, {int(labels['x1'].notna().sum())} faces; "
        f"{args.threads} threads on {os.cpu_count()} CPUs"
    )
    rows = []
    if args.native:
        rows += sweep("native", args.images, labels, args)
    if args.poster_long_side:
        with tempfile.TemporaryDirectory(prefix="sweep_posters_") as tmp:
            scaled = make_posters(args.images, labels, Path(tmp), args.poster_long_side)
            rows += sweep(f"posters-{args.poster_long_side}px", Path(tmp), scaled, args)

    table = pd.DataFrame(rows)
    main_cols = ["data", "method", "detection_size", "min_face_size", "ap50", "ap50_kept", "recall", "precision"]
    main_cols += ["sensitivity", "specificity", "images_per_s", "speedup"]
    first = table[table["min_prob"] == args.min_prob[0]]
    print(
        f"\nap50: AP@0.5 over all detections (O-net prob >= {args.thresholds[2]}); ap50_kept, recall/precision "
        f"(faces) and sensitivity/specificity (images with a face): detections with prob >= {args.min_prob[0]} "
        f"(the naive baseline outputs all, so its ap50 is its result); thresholds {args.thresholds}, "
        f"upscale={args.upscale}, {args.threads} thread(s)\n"
    )
    print(_markdown(first[main_cols]))
    if len(args.min_prob) > 1:
        print("\nOperating points\n")
        print(
            _markdown(table[["data", "method", "min_prob", "recall", "precision", "f1", "sensitivity", "specificity"]])
        )
    if args.csv:
        table.to_csv(args.csv, index=False)


def _markdown(df: pd.DataFrame) -> str:
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = df[c].map(lambda v: f"{v:.3f}")
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


if __name__ == "__main__":
    main()
