"""Benchmark: annotation speed on the CPU with the default detector vs others, measured in the same run.

    python scripts/bench_detectors.py                                  # yunet (baseline) vs artface
    python scripts/bench_detectors.py --detectors yunet artface ensemble --repeats 3 --threads 1

Decodes the images once (as ``annotate`` does, long side <= the detector's size), then times, per detector,
(a) detection alone and (b) the whole per-batch annotation (detection, SFace embeddings, colour features and the
EfficientNet image vector, ``BatchAnnotator.annotate_batch``) on the same images. Detectors are interleaved in
every repeat and the fastest repeat counts, so background load on a shared machine disturbs all alike. Prints
images/s and the time ratio to the first detector (the baseline); the issue's target is an annotation time ratio
<= 1.5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=REPO / "assets_sample" / "images")
    p.add_argument("--detectors", nargs="+", default=["yunet", "artface"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    import cv2
    from hydra import compose, initialize_config_dir

    from vision.annotate import annotator_from_config
    from vision.device import configure_threads
    from vision.io import find_images, load_image

    cv2.setNumThreads(configure_threads(args.threads))
    paths = find_images(args.images)
    annotators, decoded, images = {}, {}, {}
    for name in args.detectors:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="annotate", overrides=[f"vision/detector={name}", "vision.device=cpu"])
        annotators[name] = annotator_from_config(cfg.vision)
        size = cfg.vision.max_long_side
        if size not in decoded:
            decoded[size] = [load_image(path, max_long_side=size) for path in paths]
        images[name] = decoded[size]
    ids = [str(path) for path in paths]
    best = {name: {"detect": float("inf"), "annotate": float("inf")} for name in args.detectors}
    for name, ann in annotators.items():  # warm-up: loads every network
        ann.annotate_batch(ids[:1], images[name][:1])
    for _ in range(args.repeats):
        for name, ann in annotators.items():
            t0 = time.perf_counter()
            for s in range(0, len(ids), args.batch_size):
                ann.detector.detect([d.pixels for d in images[name][s : s + args.batch_size]])
            t1 = time.perf_counter()
            for s in range(0, len(ids), args.batch_size):
                ann.annotate_batch(ids[s : s + args.batch_size], images[name][s : s + args.batch_size])
            t2 = time.perf_counter()
            best[name]["detect"] = min(best[name]["detect"], t1 - t0)
            best[name]["annotate"] = min(best[name]["annotate"], t2 - t1)
    base = best[args.detectors[0]]
    print(f"{len(ids)} images from {args.images}, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'detector':<12}{'detect img/s':>14}{'time ratio':>12}{'annotate img/s':>16}{'time ratio':>12}")
    for name, b in best.items():
        print(
            f"{name:<12}{len(ids) / b['detect']:>14.2f}{b['detect'] / base['detect']:>12.2f}"
            f"{len(ids) / b['annotate']:>16.2f}{b['annotate'] / base['annotate']:>12.2f}"
        )


if __name__ == "__main__":
    main()
