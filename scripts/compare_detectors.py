"""Compare face detectors (MTCNN, YuNet, their ensemble and variants) on labeled samples in one table.

    python scripts/compare_detectors.py labels=assets_sample/labels.csv images=assets_sample/images
    python scripts/compare_detectors.py labels=assets_sample/labels.csv images=assets_sample/images \
        'only=[mtcnn,yunet,ensemble_wbf]' repeats=3

Each variant in conf/compare_detectors.yaml is a list of overrides of conf/evaluate.yaml, so any row can be
reproduced with scripts/evaluate_detector.py and the same overrides. Images are decoded once per decode size, as
`annotate` decodes them; the timing covers detection only (after one warm-up image that loads the model), the
fastest of `repeats` passes. AP intervals come from a bootstrap over the images (within each domain), with the
differences to the `reference` variant paired. Writes comparison.csv, ap_intervals.csv, metrics_<variant>.json and
detections_<variant>.csv (original pixels) into the Hydra run directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vision.annotate import BatchAnnotator
from vision.box_convention import rescale_fitted, strip_curves
from vision.device import configure_threads, resolve_device
from vision.evaluate import (
    BOX_COLUMNS,
    average_precision,
    evaluate_detections,
    image_groups,
    load_labels,
    match_detections,
    to_jsonable,
)
from vision.io import ImageDecodeError, load_image


def decode_all(root: Path, image_ids: list[str], vision: DictConfig) -> dict:
    images = {}
    for image_id in image_ids:
        try:
            images[image_id] = load_image(
                root / image_id, max_pixels=vision.max_pixels, max_long_side=vision.get("max_long_side")
            )
        except ImageDecodeError as err:
            print(f"cannot evaluate {image_id}: {err.reason}", file=sys.stderr)
    return images


def _detect_all(annotator: BatchAnnotator, decoded: dict, batch_size: int) -> tuple[list[dict], float]:
    ids, faces, seconds = list(decoded), [], 0.0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        t0 = time.perf_counter()
        _, rows = annotator.annotate_batch(chunk, [decoded[i] for i in chunk])
        seconds += time.perf_counter() - t0
        faces.extend(rows)
    return faces, seconds


def run_variant(vcfg: DictConfig, decoded: dict, repeats: int) -> tuple[pd.DataFrame, float]:
    """Detect on every decoded image; returns the faces table (original pixels) and images/s.

    The faces come from the detector with ``min_prob=0`` when ``full_curve`` (as evaluate_detector runs it); the
    speed is that of the detector as configured (a low cut-off makes YuNet's NMS slower), after a warm-up image,
    the fastest of ``repeats`` passes.
    """
    vision = vcfg.vision
    device = str(resolve_device(vision.get("device", "auto")))
    batch_size = int(vision.batch_size)
    operating = BatchAnnotator(detector=instantiate(vision.detector, device=device))
    first = next(iter(decoded))
    operating.annotate_batch([first], [decoded[first]])  # warm-up: loads the networks
    best = min(_detect_all(operating, decoded, batch_size)[1] for _ in range(max(1, int(repeats))))
    if vcfg.full_curve:
        full = BatchAnnotator(detector=instantiate(vision.detector, device=device, min_prob=0.0))
        faces, _ = _detect_all(full, decoded, batch_size)
    else:
        faces, _ = _detect_all(operating, decoded, batch_size)
    table = pd.DataFrame(faces, columns=None if faces else ["image_id", *BOX_COLUMNS, "prob"])
    return table, len(decoded) / best


def bootstrap_ap(
    labels: pd.DataFrame, faces: pd.DataFrame, image_ids: list[str], groups: pd.Series | None, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """AP@0.5 on ``n_boot`` resamples of the images (with replacement, within each group), overall and per group.

    The same ``seed`` gives the same resamples for every detector, so differences between detectors are paired.
    Detections scoring below the lowest-scoring true positive are dropped first: they cannot change any AP.
    """
    gt = labels[labels["image_id"].isin(image_ids)].dropna(subset=BOX_COLUMNS)
    matched = match_detections(gt, faces[faces["image_id"].isin(image_ids)], iou_threshold=0.5)
    if matched["tp"].any():
        matched = matched[matched["prob"] >= matched.loc[matched["tp"], "prob"].min()]
    by_image = {k: v for k, v in matched.groupby("image_id")}
    empty = (np.zeros(0, bool), np.zeros(0))
    tp = [by_image[i]["tp"].to_numpy() if i in by_image else empty[0] for i in image_ids]
    prob = [by_image[i]["prob"].to_numpy() if i in by_image else empty[1] for i in image_ids]
    n_gt = gt.groupby("image_id").size().reindex(image_ids, fill_value=0).to_numpy()
    strata = np.zeros(len(image_ids), int) if groups is None else pd.factorize(groups.reindex(image_ids))[0]
    names = [] if groups is None else list(pd.factorize(groups.reindex(image_ids))[1])
    rng = np.random.default_rng(seed)
    out = {key: np.full(n_boot, np.nan) for key in ["all", *names]}

    def ap(sample: np.ndarray) -> float:
        if len(sample) == 0:
            return float("nan")
        return average_precision(
            np.concatenate([tp[i] for i in sample]), np.concatenate([prob[i] for i in sample]), int(n_gt[sample].sum())
        )

    for b in range(n_boot):
        parts = [rng.choice(np.flatnonzero(strata == s), size=int((strata == s).sum())) for s in np.unique(strata)]
        out["all"][b] = ap(np.concatenate(parts))
        for s, name in enumerate(names):
            out[name][b] = ap(parts[s])
    return out


def table_row(name: str, result: dict, domain_column: str, images_per_second: float, rescaled: dict) -> dict:
    """One comparison row: AP@0.5 overall and per domain (as drawn, and ``r_`` against rescaled boxes), the
    operating point's precision/recall and image-level rates, speed."""
    img = result["image_level"]
    row = {"detector": name, "AP50": result["ap50"], "r_AP50": rescaled["ap50"]}
    for g, block in result.get(f"by_{domain_column}", {}).items():
        row[f"AP50_{g}"] = block["face_level"]["ap50"]
    for g, block in rescaled.get(f"by_{domain_column}", {}).items():
        row[f"r_AP50_{g}"] = block["face_level"]["ap50"]
    row.update(
        {
            "thr": result["score_threshold"],
            "P": result["face_level"]["precision"],
            "R": result["face_level"]["recall"],
            "img_sens": img["sensitivity"],
            "img_spec": img["specificity"],
            "n_pos": img["n_positive"],
            "n_neg": img["n_negative"],
            "img_per_s": images_per_second,
        }
    )
    return row


def _variant_names(cfg: DictConfig) -> tuple[list[str], str]:
    """The variants to run, the reference first; exits naming the key on a bad choice."""
    names = list(cfg.only) if cfg.only else list(cfg.variants)
    unknown = [n for n in names if n not in cfg.variants]
    if unknown:
        sys.exit(f"only: unknown variant(s) {unknown}; known: {list(cfg.variants)}")
    reference = cfg.reference or names[0]
    if reference not in names:
        sys.exit(f"reference={reference}: not among the variants run {names}")
    return [reference, *[n for n in names if n != reference]], reference


def _evaluate_variant(vcfg: DictConfig, labels: pd.DataFrame, faces: pd.DataFrame, ids: list[str], group_by: list):
    """AP over the full curve and the operating point, against the boxes as drawn and rescaled to the detector's."""
    threshold = vcfg.score_threshold if vcfg.score_threshold is not None else vcfg.vision.detector.min_prob
    options = {"image_ids": ids, "iou_threshold": vcfg.iou_threshold, "score_threshold": threshold}
    result = evaluate_detections(labels, faces, group_by=group_by, **options)
    # Box-convention-fair: the same evaluation against labels rescaled to this detector's box size.
    rescaled_labels, fits = rescale_fitted(labels[labels["image_id"].isin(ids)], faces, score_threshold=threshold)
    rescaled = evaluate_detections(rescaled_labels, faces, group_by=group_by, **options)
    result["rescaled"] = {"box_scale": fits, **strip_curves(rescaled)}
    result["detector"] = OmegaConf.to_container(vcfg.vision.detector, resolve=True)
    return result, rescaled, rescaled_labels


def _intervals(name, row, ref_row, boot, reference) -> list[dict]:
    """Bootstrap percentile intervals of each AP of ``name`` and, against the reference, of the paired difference."""
    out = []
    for key in boot[name]:
        base = key[2:] if key.startswith("r_") else key
        column = ("r_" if key.startswith("r_") else "") + ("AP50" if base == "all" else f"AP50_{base}")
        lo, hi = np.nanpercentile(boot[name][key], [2.5, 97.5])
        interval = {"detector": name, "AP": column, "estimate": row[column], "ci_low": lo, "ci_high": hi}
        if name != reference and key in boot.get(reference, {}):
            dlo, dhi = np.nanpercentile(boot[name][key] - boot[reference][key], [2.5, 97.5])
            interval.update({f"minus_{reference}": row[column] - ref_row[column], "diff_low": dlo, "diff_high": dhi})
        out.append(interval)
    return out


def _print_tables(cfg: DictConfig, table: pd.DataFrame, intervals: list[dict], n_images: int, reference: str, out):
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(f"{n_images} labeled images; AP at IoU 0.5 over the full PR curve; P/R and image-level rates at")
        print(
            f"each detector's operating threshold (thr); img/s = detection only, on {resolve_device('auto')} with "
            f"{cv2.getNumThreads()} thread(s)"
        )
        print(table.to_string(index=False))
        if intervals:
            ci = pd.DataFrame(intervals)
            ci.to_csv(out / "ap_intervals.csv", index=False)
            print(
                f"\nAP@0.5 95% bootstrap intervals ({cfg.bootstrap} resamples of the images within each "
                f"{cfg.domain_column}; differences paired, against {reference}):"
            )
            print(ci.to_string(index=False))
    print(f"wrote comparison.csv, ap_intervals.csv, metrics_<variant>.json, detections_<variant>.csv to {out}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare_detectors")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        labels = load_labels(cfg.labels)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"labels: {err}")
    if not cfg.images or not Path(cfg.images).is_dir():
        sys.exit(f"images={cfg.images}: not a folder")
    names, reference = _variant_names(cfg)
    # The same thread count for torch (MTCNN) and OpenCV (YuNet), so speeds compare like for like;
    # vision.num_threads=1 gives per-core speeds, which a shared machine disturbs least.
    cv2.setNumThreads(configure_threads(cfg.vision.get("num_threads")))
    group_by = [c for c in cfg.group_by if c in labels.columns]
    label_ids = list(labels["image_id"].unique())
    domains = image_groups(labels, cfg.domain_column) if cfg.domain_column in labels.columns else None
    decoded_by_size: dict = {}
    rows: list[dict] = []
    boot: dict[str, dict] = {}
    intervals: list[dict] = []
    for name in names:
        overrides = [*cfg.variants[name], f"labels={cfg.labels}", f"images={cfg.images}"]
        vcfg = hydra.compose(config_name="evaluate", overrides=overrides)
        size = vcfg.vision.get("max_long_side")
        if size not in decoded_by_size:
            decoded_by_size[size] = decode_all(Path(cfg.images), label_ids, vcfg.vision)
        ids = list(decoded_by_size[size])
        faces, ips = run_variant(vcfg, decoded_by_size[size], cfg.repeats)
        result, rescaled, rescaled_labels = _evaluate_variant(vcfg, labels, faces, ids, group_by)
        result.update(overrides=list(cfg.variants[name]), images_per_second=ips)
        faces.to_csv(out / f"detections_{name}.csv", index=False)
        (out / f"metrics_{name}.json").write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
        row = table_row(name, result, cfg.domain_column, ips, rescaled)
        if cfg.bootstrap:
            # AP against the boxes as drawn and against the rescaled boxes (keys "r_..."), on the same resamples.
            boot[name] = bootstrap_ap(labels, faces, ids, domains, int(cfg.bootstrap), int(cfg.seed))
            rboot = bootstrap_ap(rescaled_labels, faces, ids, domains, int(cfg.bootstrap), int(cfg.seed))
            boot[name].update({f"r_{k}": v for k, v in rboot.items()})
            ref_row = row if name == reference else next(r for r in rows if r["detector"] == reference)
            intervals += _intervals(name, row, ref_row, boot, reference)
        rows.append(row)
        print(f"{name}: AP50 {result['ap50']:.3f}, {ips:.2f} images/s", file=sys.stderr)
    table = pd.DataFrame(rows)
    table.to_csv(out / "comparison.csv", index=False)
    _print_tables(cfg, table, intervals, len(label_ids), reference, out)


if __name__ == "__main__":
    main()
