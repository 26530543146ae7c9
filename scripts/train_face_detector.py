"""Train the artwork face networks from paintings_dev's training split: the re-scorer
(vision/weights/artface_onet.npz) and the optional proposal cascade (vision/weights/artface_cascade.npz).

    python scripts/train_face_detector.py                       # reproduces both shipped weights (CPU, seed 0)
    python scripts/train_face_detector.py --stage onet          # only the re-scorer (--stage cascade: the cascade)
    python scripts/train_face_detector.py --labels-only outputs/labels   # only write the evaluation label files
    python scripts/train_face_detector.py --epochs 1 --limit 20 --out /tmp/w.npz   # a quick smoke run

Steps: read ``--data`` (paintings_dev: ``boxes.csv``, ``images/``) and the committed split
(``vision/splits/paintings_dev.csv``; the digests are checked, so a changed file stops the run); decode the training
images as ``annotate`` does (long side <= 640); fit the box-convention factors with YuNet on them; build the crops
of every style (:mod:`vision.train_detector`); fine-tune O-net; write the ``.npz`` with its metadata (data, split,
factors, settings, losses). Then the cascade (:mod:`vision.train_cascade`): random style/stretch/tilt variants of
the same images plus procedural cartoon faces, P-net, then R-net with the P-net's boxes as hard negatives. The
held-out part is never read, except to write its label file for evaluation. On a machine with CUDA the training
runs there (``--device``), the data preparation stays on the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vision.artdata import file_digest, read_paintings_dev, read_sample_labels, read_split  # noqa: E402
from vision.artface import DEFAULT_WEIGHTS, save_weights  # noqa: E402
from vision.box_convention import fit_box_scale  # noqa: E402
from vision.cascade import DEFAULT_CASCADE_WEIGHTS, CascadeProposer, mtcnn_start, save_cascade  # noqa: E402
from vision.evaluate import BOX_COLUMNS  # noqa: E402
from vision.io import load_image  # noqa: E402
from vision.synthetic_faces import cartoon_scene  # noqa: E402
from vision.train_cascade import build_crops, mined_crops, train_stage  # noqa: E402
from vision.train_detector import STYLES, build_samples, synthetic_background, train  # noqa: E402
from vision.yunet import YuNetDetector  # noqa: E402

log = logging.getLogger("train_face_detector")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "paintings_dev"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="paintings_dev folder (boxes.csv, images/)")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write")
    p.add_argument(
        "--stage",
        choices=["all", "onet", "cascade"],
        default="all",
        help="onet: the re-scorer; cascade: the P-net/R-net proposer; all: both (the shipped weights)",
    )
    p.add_argument("--cascade-out", type=Path, default=DEFAULT_CASCADE_WEIGHTS, help="cascade weights file to write")
    p.add_argument("--cascade-variants", type=int, default=4, help="random variants of each image for the cascade")
    p.add_argument("--cascade-epochs", type=int, default=6)
    p.add_argument("--cartoons", type=int, default=300, help="procedural cartoon scenes added to the cascade's data")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--context", type=float, default=1.0, help="crop side / the proposal's longer side")
    p.add_argument("--proposal-min-prob", type=float, default=0.05)
    p.add_argument("--proposal-top-k", type=int, default=20)
    p.add_argument("--styles", default=",".join(STYLES), help="comma-separated, of: " + ", ".join(STYLES))
    p.add_argument("--negatives", type=int, default=600, help="synthetic face-free key-art backgrounds added")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (1 reproduces the weights)")
    p.add_argument("--labels-only", type=Path, default=None, help="write evaluation label CSVs here and stop")
    p.add_argument(
        "--stylised-heldout",
        type=Path,
        default=None,
        help="write the held-out paintings in the cartoon, line-art and colour-quantised styles (a proxy for drawn "
        "and cartoon faces; derived images: keep the folder outside the project) with labels.csv, and stop",
    )
    return p.parse_args(argv)


def write_eval_labels(folder: Path, data: Path) -> None:
    """paintings_dev's held-out and train parts and assets_sample, each with a ``domain`` column, as CSVs."""
    folder.mkdir(parents=True, exist_ok=True)
    labels, split = read_paintings_dev(data), read_split("paintings_dev")
    for part in ("heldout", "train"):
        ids = set(split.loc[split["split"] == part, "image_id"])
        labels[labels["image_id"].isin(ids)].to_csv(folder / f"paintings_dev_{part}.csv", index=False)
    read_sample_labels(ROOT / "assets_sample" / "labels.csv").to_csv(folder / "assets_sample.csv", index=False)
    print(f"wrote paintings_dev_heldout.csv, paintings_dev_train.csv, assets_sample.csv to {folder}")


def write_stylised_heldout(folder: Path, data: Path, seed: int = 1) -> None:
    """The held-out paintings in three training styles (new random draws: ``seed`` differs from training's), decoded
    at long side <= 640 as annotate does, with their labels scaled to those pixels and ``domain`` = the style."""
    import cv2

    labels, split = read_paintings_dev(data), read_split("paintings_dev")
    ids = sorted(split.loc[split["split"] == "heldout", "image_id"])
    rng = np.random.default_rng(seed)
    rows = []
    for style in ("cartoon", "lineart", "quantise_hue"):
        (folder / style).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            img = load_image(data / "images" / image_id, max_long_side=640)
            out = STYLES[style](img.pixels, rng)
            name = f"{style}/{Path(image_id).stem}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
            boxes = labels.loc[labels["image_id"] == image_id, BOX_COLUMNS] * (img.pixels.shape[1] / img.width)
            rows += [(name, *b, style) for b in boxes.to_numpy()]
    pd.DataFrame(rows, columns=["image_id", *BOX_COLUMNS, "domain"]).to_csv(folder / "labels.csv", index=False)
    print(f"wrote {len(ids)} x 3 stylised held-out paintings and labels.csv to {folder}")


def load_training_images(data: Path, limit: int | None) -> tuple[list, list[str]]:
    """The training part's images (decoded at long side <= 640) with their label boxes in the decoded pixels."""
    labels, split = read_paintings_dev(data), read_split("paintings_dev")
    train_ids = sorted(split.loc[split["split"] == "train", "image_id"])[:limit]
    digests = dict(zip(split["image_id"], split["sha256"], strict=True))
    out = []
    for image_id in train_ids:
        if file_digest(data / "images" / image_id) != digests[image_id]:
            sys.exit(f"{image_id}: the file differs from the committed split's digest; the data changed")
        img = load_image(data / "images" / image_id, max_long_side=640)
        f = img.pixels.shape[1] / img.width
        boxes = labels.loc[labels["image_id"] == image_id, BOX_COLUMNS].dropna().to_numpy() * f
        out.append((img.pixels, boxes))
    return out, train_ids


def fit_scale(images: list, proposer: YuNetDetector) -> dict:
    """YuNet-to-label box factors on the training images (YuNet at its default cut-off 0.6)."""
    rows, dets = [], []
    for k, (img, boxes) in enumerate(images):
        rows += [(str(k), *b) for b in boxes]
        d = proposer.detect([img])[0]
        dets += [(str(k), *b, p) for b, p in zip(d.boxes, d.probs, strict=True)]
    labels = pd.DataFrame(rows, columns=["image_id", *BOX_COLUMNS])
    faces = pd.DataFrame(dets, columns=["image_id", *BOX_COLUMNS, "prob"])
    return fit_box_scale(labels, faces, score_threshold=0.6)


def train_onet(args: argparse.Namespace, images: list, train_ids: list[str], fit: dict, proposer) -> None:
    """The O-net re-scorer on YuNet's proposals (``--stage onet``)."""
    styles = [s for s in args.styles.split(",") if s]
    rng = np.random.default_rng(args.seed + 1)
    backgrounds = [(synthetic_background(rng), np.zeros((0, 4))) for _ in range(args.negatives)]
    samples = build_samples(
        images + backgrounds,
        proposer,
        scale=(fit["sx"], fit["sy"]),
        context=args.context,
        styles=styles,
        seed=args.seed,
    )
    counts = {int(v): int((samples.label == v).sum()) for v in (1, 0, -1)}
    log.info("%d crops: %d faces, %d non-faces, %d ignored", len(samples), counts[1], counts[0], counts[-1])
    net, history = train(
        samples, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device
    )
    meta = {
        "model": "MTCNN O-net (facenet-pytorch 2.5.3 weights) fine-tuned as a re-scorer of YuNet proposals",
        "data": "paintings_dev train split (vision/splits/paintings_dev.csv), styles " + ",".join(styles),
        "n_train_images": len(train_ids),
        "n_synthetic_negatives": args.negatives,
        "n_crops": len(samples),
        "crop_counts": {"face": counts[1], "not_face": counts[0], "ignored": counts[-1]},
        "box_scale": fit,
        "context": args.context,
        "proposal_min_prob": args.proposal_min_prob,
        "proposal_top_k": args.proposal_top_k,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "history": history,
    }
    path = save_weights(net, args.out, meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "history"}, indent=1))
    print(f"final losses {history[-1] if history else None}; wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def train_cascade(args: argparse.Namespace, images: list, train_ids: list[str], fit: dict) -> None:
    """The P-net/R-net proposer (``--stage cascade``) on random variants of the training images (label boxes in
    YuNet's convention) and of synthetic face-free backgrounds; R-net also on the trained P-net's boxes."""
    scale = np.array([fit["sx"], fit["sy"], fit["sx"], fit["sy"]])
    gt_images = [(img, _rescaled(boxes, scale)) for img, boxes in images]
    rng = np.random.default_rng(args.seed + 2)
    backgrounds = [(synthetic_background(rng), np.zeros((0, 4))) for _ in range(args.negatives // 2)]
    cartoons = [cartoon_scene(rng) for _ in range(args.cartoons)]
    gt_images = gt_images + cartoons
    data = build_crops(gt_images + backgrounds, variants=args.cascade_variants, seed=args.seed)
    counts = {int(v): int((data.label == v).sum()) for v in (1, -1, 0)}
    log.info("cascade: %d random crops (%d faces, %d parts, %d non-faces)", len(data), *counts.values())
    pnet, rnet = mtcnn_start()
    kw = {"epochs": args.cascade_epochs, "seed": args.seed, "device": args.device}
    pnet, p_hist = train_stage(pnet, data, size=12, **kw)
    miner = CascadeProposer(thresholds=(0.5, 0.5)).use_networks(pnet, rnet)
    mined = build_crops(
        gt_images + backgrounds,
        variants=1,
        seed=args.seed + 100,
        extra=lambda img, gt: mined_crops(img, gt, miner.pnet_boxes),
    )
    m_counts = {int(v): int((mined.label == v).sum()) for v in (1, -1, 0)}
    log.info("cascade: %d P-net crops (%d faces, %d parts, %d non-faces)", len(mined), *m_counts.values())
    rnet, r_hist = train_stage(rnet, type(data).concat([data, mined]), size=24, **kw)
    meta = {
        "model": "MTCNN P-net and R-net (facenet-pytorch 2.5.3 weights) fine-tuned as a face proposer for artwork",
        "data": "paintings_dev train split (vision/splits/paintings_dev.csv) and procedural cartoon scenes, random "
        "styles, stretches and tilts",
        "n_train_images": len(train_ids),
        "n_synthetic_negatives": len(backgrounds),
        "n_synthetic_cartoons": len(cartoons),
        "variants": args.cascade_variants,
        "crop_counts": {"random": counts, "pnet_mined": m_counts},
        "box_scale": fit,
        "epochs": args.cascade_epochs,
        "seed": args.seed,
        "device": args.device,
        "history": {"pnet": p_hist, "rnet": r_hist},
    }
    path = save_cascade(pnet, rnet, args.cascade_out, meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "history"}, indent=1))
    print(f"final losses P {p_hist[-1]}, R {r_hist[-1]}; wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def _rescaled(boxes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Label boxes scaled about their centres by (sx, sy): the label convention to YuNet's."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2] * 2)
    return centre + (b - centre) * scale


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.labels_only is not None:
        write_eval_labels(args.labels_only, args.data)
        return
    if args.stylised_heldout is not None:
        write_stylised_heldout(args.stylised_heldout, args.data)
        return
    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    images, train_ids = load_training_images(args.data, args.limit)
    proposer = YuNetDetector(min_prob=args.proposal_min_prob, max_faces=args.proposal_top_k)
    fit = fit_scale(images, proposer)
    log.info("box convention: YuNet box = label box x (%.3f, %.3f) from %d pairs", fit["sx"], fit["sy"], fit["n_pairs"])
    if args.stage in ("all", "onet"):
        train_onet(args, images, train_ids, fit, proposer)
    if args.stage in ("all", "cascade"):
        train_cascade(args, images, train_ids, fit)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
