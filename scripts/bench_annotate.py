"""Benchmark: our annotation pipeline vs naive facenet-pytorch use, on the same images in one run.

    python scripts/bench_annotate.py                 # ~2000 px posters made from assets_sample + the sample itself
    python scripts/bench_annotate.py --n 40 --scale-check 10

Baseline (a), "naive": open each file with PIL at full resolution and call ``MTCNN(keep_all=True).detect`` one
image at a time with default settings. (b) our pipeline with its defaults (detection, SFace embeddings, colour
features and the EfficientNet image vector); (c) our pipeline with detection only; (d) detection only with
``vision/detector=mtcnn`` (the baseline's weights, batched at our detection size), for a like-for-like view.
Every method runs in its own subprocess so peak RSS (ru_maxrss) is its own. Printed: images/s, peak RSS, the
ratio to naive; face AP@0.5 on assets_sample/labels.csv for naive and ours; peak RSS of ours at 1x and Kx images.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample"


def make_posters(src: Path, dst: Path, n: int, long_side: int) -> list[Path]:
    """~``long_side`` px JPEG posters made by upscaling the sample's images (cycled to reach ``n``)."""
    from vision.io import find_images

    dst.mkdir(parents=True, exist_ok=True)
    sources = find_images(src)
    out = []
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        ratio = long_side / max(im.size)
        im = im.resize((round(im.width * ratio), round(im.height * ratio)), Image.Resampling.BICUBIC)
        path = dst / f"poster-{i:04d}.jpg"
        im.save(path, quality=90)
        out.append(path)
    return out


def replicate(src: Path, dst: Path, times: int) -> None:
    """``times`` copies (hard links) of every image in ``src``."""
    dst.mkdir(parents=True, exist_ok=True)
    for k in range(times):
        for p in sorted(src.iterdir()):
            target = dst / f"{k:03d}-{p.name}"
            try:
                target.hardlink_to(p)
            except OSError:
                shutil.copy2(p, target)


# --------------------------------------------------------------------------------------------------------------------
# Workers (run in a subprocess each): print one JSON line.
# --------------------------------------------------------------------------------------------------------------------


def worker_naive(input_dir: Path, faces_out: Path | None) -> dict:
    import torch
    from facenet_pytorch import MTCNN

    from vision.io import find_images, image_id_for

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    mtcnn = MTCNN(keep_all=True, device="cpu")
    files = find_images(input_dir)
    rows = []
    start = time.perf_counter()
    for f in files:
        img = Image.open(f).convert("RGB")
        boxes, probs = mtcnn.detect(img)
        if boxes is not None:
            for b, p in zip(boxes, probs, strict=True):
                rows.append((image_id_for(f, input_dir), *map(float, b), float(p)))
    seconds = time.perf_counter() - start
    if faces_out is not None:
        import pandas as pd

        pd.DataFrame(rows, columns=["image_id", "x1", "y1", "x2", "y2", "prob"]).to_parquet(faces_out)
    return {"images": len(files), "seconds": seconds}


def worker_ours(input_dir: Path, output: Path, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir

    from vision.annotate import annotate_from_config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="annotate", overrides=[f"input={input_dir}", f"output={output}", *overrides])
    summary = annotate_from_config(cfg.vision, input_dir, output)
    return {"images": summary.processed, "seconds": summary.seconds, "errors": summary.errors}


def run_worker(kind: str, input_dir: Path, output: Path, overrides: list[str] = ()) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(input_dir), "--output", str(output)]
    cmd += [f"--override={o}" for o in overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------------------


def face_ap(faces_path: Path, labels: Path) -> float:
    import pandas as pd

    from vision.evaluate import evaluate_detections, load_labels

    labels_df = load_labels(labels)
    faces = pd.read_parquet(faces_path)
    return float(evaluate_detections(labels_df, faces)["ap50"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="number of ~2000 px posters")
    ap.add_argument("--long-side", type=int, default=2000)
    ap.add_argument("--scale-check", type=int, default=10, help="K for the peak-RSS check at 1x vs Kx images")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--worker", choices=["naive", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        if args.worker == "naive":
            result = worker_naive(args.input, args.output)
        else:
            result = worker_ours(args.input, args.output, args.override)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_annotate_"))
    work.mkdir(parents=True, exist_ok=True)
    posters = work / "posters"
    if posters.exists():
        shutil.rmtree(posters)
    make_posters(SAMPLE / "images", posters, args.n, args.long_side)
    detect_only = ["vision/embedder=none", "vision.image_features.color=false", "vision.image_features.latent=false"]

    rows = []

    def measure(dataset: str, folder: Path, label: str, kind: str, overrides=()) -> dict:
        # Hydra's override grammar rejects spaces and brackets in `output=...`: a slug for the folder name.
        slug = "".join(c if c.isalnum() else "-" for c in f"{dataset}-{label}").strip("-")
        out = work / f"out-{slug}"
        shutil.rmtree(out, ignore_errors=True)
        target = out.with_suffix(".parquet") if kind == "naive" else out
        r = run_worker(kind, folder, target, list(overrides))
        r.update(dataset=dataset, method=label, ips=r["images"] / r["seconds"], output=str(target))
        rows.append(r)
        print(f"  {dataset:<14} {label:<22} {r['images']:>5} img  {r['ips']:7.2f} img/s  {r['peak_rss_mb']:7.0f} MB")
        return r

    print(f"work dir: {work}")
    for dataset, folder in ((f"posters {args.long_side}px", posters), ("assets_sample", SAMPLE / "images")):
        naive = measure(dataset, folder, "naive", "naive")
        ours = measure(dataset, folder, "ours (defaults)", "ours")
        det = measure(dataset, folder, "ours (detect only)", "ours", detect_only)
        # Like for like with the baseline: the same MTCNN weights, batched at our detection size.
        mtcnn = measure(dataset, folder, "ours MTCNN (detect only)", "ours", ["vision/detector=mtcnn", *detect_only])
        for r in (naive, ours, det, mtcnn):
            r["ratio_vs_naive"] = r["ips"] / naive["ips"]

    labels = SAMPLE / "labels.csv"
    ap_naive = face_ap(
        Path(next(r for r in rows if r["dataset"] == "assets_sample" and r["method"] == "naive")["output"]), labels
    )
    ours_out = Path(
        next(r for r in rows if r["dataset"] == "assets_sample" and r["method"] == "ours (defaults)")["output"]
    )
    ap_ours = face_ap(ours_out / "faces", labels)
    mtcnn_out = Path(
        next(r for r in rows if r["dataset"] == "assets_sample" and r["method"] == "ours MTCNN (detect only)")["output"]
    )
    ap_mtcnn = face_ap(mtcnn_out / "faces", labels)

    scaled = work / f"posters-x{args.scale_check}"
    shutil.rmtree(scaled, ignore_errors=True)
    replicate(posters, scaled, args.scale_check)
    one = next(r for r in rows if r["dataset"].startswith("posters") and r["method"] == "ours (defaults)")
    many = measure(f"posters x{args.scale_check}", scaled, "ours (defaults)", "ours")
    # Same posters, K times as many: start-up (decoder process, first batch) is amortised as in a real run.
    many["ratio_vs_naive"] = (
        many["ips"] / next(r for r in rows if r["dataset"].startswith("posters") and r["method"] == "naive")["ips"]
    )

    print("\n| data | method | images | images/s | ratio vs naive | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['ratio_vs_naive']:.2f}x" if "ratio_vs_naive" in r else "-"
        print(f"| {r['dataset']} | {r['method']} | {r['images']} | {r['ips']:.2f} | {ratio} | {r['peak_rss_mb']:.0f} |")
    print(
        f"\nface AP@0.5 on assets_sample/labels.csv: naive full-resolution MTCNN {ap_naive:.4f}, ours {ap_ours:.4f} "
        f"(difference {100 * (ap_ours - ap_naive):+.1f} points); ours with vision/detector=mtcnn {ap_mtcnn:.4f} "
        f"({100 * (ap_mtcnn - ap_naive):+.1f} points)"
    )
    print(
        f"peak RSS of ours: {one['peak_rss_mb']:.0f} MB at {one['images']} images, {many['peak_rss_mb']:.0f} MB at "
        f"{many['images']} images (ratio {many['peak_rss_mb'] / one['peak_rss_mb']:.2f})"
    )
    (work / "bench_annotate.json").write_text(
        json.dumps({"rows": rows, "ap_naive": ap_naive, "ap_ours": ap_ours, "ap_ours_mtcnn": ap_mtcnn}, indent=2)
    )


if __name__ == "__main__":
    main()
