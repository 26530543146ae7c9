"""Head-pose error (vision.pose): on projections with known angles, and mirror consistency on real detections.

    python scripts/bench_pose.py                                   # synthetic table + the bundled sample
    python scripts/bench_pose.py --images my_art --detector yunet

1. Synthetic: :func:`vision.pose.synthetic_poses` (2000 faces, yaw +-60, pitch and roll +-30 degrees, perspective
   at 10 inter-ocular distances) at three noise levels: none, shape sd 0.05 with landmark sd 0.02, and 0.08 / 0.04
   (inter-ocular units). Mean and 90th-percentile absolute errors, and how often the frontal flag is right.
2. Mirror consistency on real artwork: every image and its left-right mirror go through the detector; a face's
   mirrored twin (matched by box, IoU >= 0.5) must have the opposite yaw and roll and the same pitch. Half the
   disagreement (|yaw + yaw'| / 2, ...) is a lower bound of the error the detector's landmarks add (the geometric
   model's own bias cancels), and the frontal flag's agreement is printed with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_table() -> None:
    from vision.pose import synthetic_poses

    print("synthetic faces (2000 each): yaw / pitch / roll MAE (p90), degrees; frontal flag right")
    for shape_sd, pixel_sd in ((0.0, 0.0), (0.05, 0.02), (0.08, 0.04)):
        r = synthetic_poses(2000, seed=0, shape_sd=shape_sd, pixel_sd=pixel_sd)
        angles = "  ".join(f"{k} {r[f'{k}_mae']:.1f} ({r[f'{k}_p90']:.1f})" for k in ("yaw", "pitch", "roll"))
        print(f"  shape sd {shape_sd:.2f}, landmark sd {pixel_sd:.2f}: {angles}; frontal {r['frontal_accuracy']:.3f}")


def _detector(name: str):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("annotate", overrides=[f"vision/detector={name}"])
    return instantiate(cfg.vision.detector, device="cpu")


def mirror_table(images: Path, detector_name: str) -> None:
    from vision.io import find_images, load_image
    from vision.pose import head_pose
    from vision.text import box_iou

    detector = _detector(detector_name)
    diffs, frontal_same = [], []
    for path in find_images(images):
        pixels = load_image(path, max_long_side=1024).pixels
        mirrored = np.ascontiguousarray(pixels[:, ::-1])
        det, det_m = detector.detect([pixels, mirrored])
        if len(det.boxes) == 0 or len(det_m.boxes) == 0:
            continue
        w = pixels.shape[1]
        back = np.asarray(det_m.boxes, dtype=float).copy()
        back[:, [0, 2]] = w - back[:, [2, 0]]
        overlaps = box_iou(np.asarray(det.boxes, dtype=float), back)
        for i in range(len(det.boxes)):
            j = int(np.argmax(overlaps[i]))
            if overlaps[i, j] < 0.5:
                continue
            a = head_pose(np.asarray(det.landmarks[i]))
            b = head_pose(np.asarray(det_m.landmarks[j]))
            if a["yaw"] is None or b["yaw"] is None:
                continue
            diffs.append(
                [abs(a["yaw"] + b["yaw"]) / 2, abs(a["pitch"] - b["pitch"]) / 2, abs(a["roll"] + b["roll"]) / 2]
            )
            frontal_same.append(a["frontal"] == b["frontal"])
    d = np.asarray(diffs)
    print(f"mirror consistency, {detector_name} on {images} ({len(d)} faces found in both):")
    print(
        f"  half disagreement, mean (p90): yaw {d[:, 0].mean():.1f} ({np.quantile(d[:, 0], 0.9):.1f}), "
        f"pitch {d[:, 1].mean():.1f} ({np.quantile(d[:, 1], 0.9):.1f}), "
        f"roll {d[:, 2].mean():.1f} ({np.quantile(d[:, 2], 0.9):.1f}); frontal flag agrees {np.mean(frontal_same):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO / "assets_sample" / "images")
    parser.add_argument("--detector", default="artface", help="conf/vision/detector option")
    args = parser.parse_args()
    synthetic_table()
    mirror_table(args.images, args.detector)


if __name__ == "__main__":
    main()
