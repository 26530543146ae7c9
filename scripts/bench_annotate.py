"""Benchmark: our annotation pipeline vs naive facenet-pytorch use, on the same images in one run.

    python scripts/bench_annotate.py                 # ~2000 px posters made from assets_sample + the sample itself
    python scripts/bench_annotate.py --n 40 --scale-check 10
    python scripts/bench_annotate.py --device cuda   # on a GPU: MTCNN, embeddings and encoder there, decode on CPUs

Baseline (a), "naive": open each file with PIL at full resolution and call ``MTCNN(keep_all=True).detect`` one
image at a time with default settings. (b) our pipeline with its defaults (detection, SFace embeddings, colour
features and the EfficientNet image vector); (c) our pipeline with detection only; (d) detection only with
``vision/detector=mtcnn`` (the baseline's weights, batched at our detection size), for a like-for-like view.
Every method runs in its own subprocess so peak RSS (ru_maxrss) is its own. Printed: images/s in the steady state
(model loading excluded on both sides) and the whole process's seconds (interpreter, imports, models, decoding
workers: what a person waits for), each as a ratio to naive; our time by stage; face AP@0.5 on
assets_sample/labels.csv for naive and ours; peak RSS of ours at 1x and Kx images; start-up alone on a 10-image
folder (the whole process minus its work); the machine's load (``os.getloadavg``) before and after, since on a
shared machine the figures move with it. Run it with ``nice`` there.
"""

from __future__ import annotations

import argparse
import json
import os
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


def worker_naive(input_dir: Path, faces_out: Path | None, device: str = "cpu") -> dict:
    import torch
    from facenet_pytorch import MTCNN

    from vision.device import resolve_device
    from vision.io import find_images, image_id_for

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    mtcnn = MTCNN(keep_all=True, device=resolve_device(device))
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
    return {
        "images": summary.processed,
        "seconds": summary.seconds,
        "errors": summary.errors,
        "load_seconds": summary.load_seconds,
        "stage_seconds": summary.stage_seconds,
    }


def device_overrides(device: str) -> list[str]:
    """``vision`` overrides of our runs for ``--device``: on a GPU, the detector that runs there (MTCNN; YuNet and
    artface are OpenCV on the CPU), batches sized for the device, decoding on all but one CPU core."""
    if device == "cpu":
        return []
    workers = max(1, len(os.sched_getaffinity(0)) - 1)
    return [
        f"vision.device={device}",
        "vision/detector=mtcnn",
        "vision.detector.batch_size=64",
        "vision.batch_size=64",
        f"vision.num_workers={workers}",
    ]


def run_worker(kind: str, input_dir: Path, output: Path, overrides: list[str] = (), device: str = "cpu") -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(input_dir), "--output", str(output)]
    cmd += ["--device", device]
    cmd += [f"--override={o}" for o in overrides]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    process_seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = process_seconds
    return result


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --------------------------------------------------------------------------------------------------------------------


def face_ap(faces_path: Path, labels: Path) -> float:
    import pandas as pd

    from vision.evaluate import evaluate_detections, load_labels

    labels_df = load_labels(labels)
    faces = pd.read_parquet(faces_path)
    return float(evaluate_detections(labels_df, faces)["ap50"])


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120, help="number of ~2000 px posters")
    ap.add_argument("--long-side", type=int, default=2000)
    ap.add_argument("--scale-check", type=int, default=10, help="K for the peak-RSS check at 1x vs Kx images")
    ap.add_argument("--startup-images", type=int, default=10, help="folder size for the start-up measurement")
    ap.add_argument("--skip-variants", action="store_true", help="only naive and ours (defaults)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda[:N]: naive MTCNN and our models on that device (see device_overrides)",
    )
    ap.add_argument("--worker", choices=["naive", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    return ap.parse_args()


class Bench:
    """The measured runs of one invocation, in a work folder."""

    def __init__(self, work: Path, device: str = "cpu"):
        self.work = work
        self.device = device
        self.rows: list[dict] = []

    def measure(self, dataset: str, folder: Path, label: str, kind: str, overrides=()) -> dict:
        # Hydra's override grammar rejects spaces and brackets in `output=...`: a slug for the folder name.
        slug = "".join(c if c.isalnum() else "-" for c in f"{dataset}-{label}").strip("-")
        out = self.work / f"out-{slug}"
        shutil.rmtree(out, ignore_errors=True)
        target = out.with_suffix(".parquet") if kind == "naive" else out
        extra = device_overrides(self.device) if kind == "ours" else []
        r = run_worker(kind, folder, target, [*extra, *overrides], device=self.device)
        r.update(dataset=dataset, method=label, ips=r["images"] / r["seconds"], output=str(target))
        self.rows.append(r)
        print(
            f"  {dataset:<16} {label:<26} {r['images']:>5} img  {r['ips']:7.2f} img/s  "
            f"process {r['process_seconds']:6.1f} s  {r['peak_rss_mb']:6.0f} MB",
            flush=True,
        )
        if "stage_seconds" in r:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_seconds"].items() if v > 0)
            print(f"  {'':<16} {'':<26} models {r['load_seconds']:.1f} s; by stage (s): {stages}", flush=True)
        return r

    def find(self, dataset_prefix: str, method: str) -> dict:
        return next(r for r in self.rows if r["dataset"].startswith(dataset_prefix) and r["method"] == method)


def run_datasets(bench: Bench, posters: Path, args: argparse.Namespace) -> None:
    detect_only = ["vision/embedder=none", "vision.image_features.color=false", "vision.image_features.latent=false"]
    for dataset, folder in ((f"posters {args.long_side}px", posters), ("assets_sample", SAMPLE / "images")):
        naive = bench.measure(dataset, folder, "naive", "naive")
        runs = [naive, bench.measure(dataset, folder, "ours (defaults)", "ours")]
        if not args.skip_variants:
            runs.append(bench.measure(dataset, folder, "ours (detect only)", "ours", detect_only))
            # Like for like with the baseline: the same MTCNN weights, batched at our detection size.
            mtcnn = ["vision/detector=mtcnn", *detect_only]
            runs.append(bench.measure(dataset, folder, "ours MTCNN (detect only)", "ours", mtcnn))
        for r in runs:
            r["ratio_vs_naive"] = r["ips"] / naive["ips"]
            r["process_ratio_vs_naive"] = naive["process_seconds"] / r["process_seconds"]


def report(bench: Bench, args: argparse.Namespace, many: dict, startup: dict) -> dict:
    print("\n| data | method | images | images/s | steady ratio vs naive | process s | process ratio | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in bench.rows:
        ratio = f"{r['ratio_vs_naive']:.2f}x" if "ratio_vs_naive" in r else "-"
        whole = f"{r['process_ratio_vs_naive']:.2f}x" if "process_ratio_vs_naive" in r else "-"
        print(
            f"| {r['dataset']} | {r['method']} | {r['images']} | {r['ips']:.2f} | {ratio} | "
            f"{r['process_seconds']:.1f} | {whole} | {r['peak_rss_mb']:.0f} |"
        )
    labels = SAMPLE / "labels.csv"
    ap_naive = face_ap(Path(bench.find("assets_sample", "naive")["output"]), labels)
    ap_ours = face_ap(Path(bench.find("assets_sample", "ours (defaults)")["output"]) / "faces", labels)
    print(
        f"\nface AP@0.5 on assets_sample/labels.csv: naive full-resolution MTCNN {ap_naive:.4f}, ours {ap_ours:.4f} "
        f"(difference {100 * (ap_ours - ap_naive):+.1f} points)"
    )
    one = bench.find("posters", "ours (defaults)")
    print(
        f"peak RSS of ours: {one['peak_rss_mb']:.0f} MB at {one['images']} images, {many['peak_rss_mb']:.0f} MB at "
        f"{many['images']} images (ratio {many['peak_rss_mb'] / one['peak_rss_mb']:.2f})"
    )
    work_s, whole_s = startup["seconds"], startup["process_seconds"]
    print(
        f"start-up on a {startup['images']}-image folder: whole process {whole_s:.2f} s, of which work {work_s:.2f} s, "
        f"start-up {whole_s - work_s:.2f} s (models {startup['load_seconds']:.2f} s, built while the decoding worker "
        "starts)"
    )
    return {"rows": bench.rows, "ap_naive": ap_naive, "ap_ours": ap_ours, "startup": startup}


def main() -> None:
    args = parse_args()
    if args.worker:
        if args.worker == "naive":
            result = worker_naive(args.input, args.output, args.device)
        else:
            result = worker_ours(args.input, args.output, args.override)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_annotate_"))
    work.mkdir(parents=True, exist_ok=True)
    posters = work / "posters"
    shutil.rmtree(posters, ignore_errors=True)
    make_posters(SAMPLE / "images", posters, args.n, args.long_side)
    print(f"work dir: {work}\nbefore: {load_line()}", flush=True)
    bench = Bench(work, args.device)
    print(
        f"device: {args.device}"
        + (f" (our runs add {' '.join(device_overrides(args.device))})" if args.device != "cpu" else "")
    )
    run_datasets(bench, posters, args)
    small = work / f"posters-{args.startup_images}"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir()
    for p in sorted(posters.iterdir())[: args.startup_images]:
        (small / p.name).hardlink_to(p)
    startup = bench.measure(f"posters {args.startup_images}", small, "ours (defaults)", "ours")
    scaled = work / f"posters-x{args.scale_check}"
    shutil.rmtree(scaled, ignore_errors=True)
    replicate(posters, scaled, args.scale_check)
    # Same posters, K times as many: start-up (decoder process, first batch) is amortised as in a real run.
    many = bench.measure(f"posters x{args.scale_check}", scaled, "ours (defaults)", "ours")
    many["ratio_vs_naive"] = many["ips"] / bench.find("posters", "naive")["ips"]
    result = report(bench, args, many, startup)
    print(f"after: {load_line()}")
    (work / "bench_annotate.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
