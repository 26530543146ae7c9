"""The evaluate command: ``creative-insights evaluate`` (a plugin of the console command) and
``scripts/evaluate_detector.py`` both run :func:`evaluate_command` on a config composed from ``conf/evaluate.yaml``.

It prints the metrics table and writes ``metrics.json``, ``pr_curve.png``, ``errors.csv``, ``contact_sheet.png``
(and ``detections.csv`` when the detector runs) into the Hydra run directory. ``metrics.json``'s ``image_level``
block is what the causal stage's misclassification correction reads; ``image_level_by`` has the same rates per label
group (e.g. ``domain`` or ``style``) for a differential correction; ``rescaled`` repeats the evaluation against label
boxes rescaled to the detector's box size (``+box_scale_by=<column>`` fits one pair of factors per group).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

CONFIG_PACKAGE = "pkg://creative_insights_conf"  # conf/ as shipped in the wheel


def evaluate_command(cfg: DictConfig) -> dict:
    """Evaluate the detector as ``cfg`` says and print the figures; exit 2 naming the key on bad input."""
    from hydra.core.hydra_config import HydraConfig

    from vision.stages import evaluate_from_config

    if OmegaConf.is_missing(cfg, "labels"):
        _fail("missing labels=... (a CSV image_id,x1,y1,x2,y2 per face, e.g. labels=assets_sample/labels.csv)")
    if not cfg.images and not cfg.annotations:
        _fail("give images=<folder> (to run the detector) or annotations=<annotation output folder>")
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        result = evaluate_from_config(cfg, out)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    print_evaluation(result, out)
    return result


def print_evaluation(result: dict, out: Path) -> None:
    """The metrics table, the threshold choice, the reliability notes and where the files are."""
    from vision.box_convention import domain_ap_table
    from vision.evaluate import summary_table

    if result.get("n_not_evaluated"):
        missing = result["not_evaluated"]
        print(f"{len(missing)} labelled image(s) not evaluated (missing or failed): {missing[:5]}", file=sys.stderr)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(f"source: {result['source']}; {result['n_images']} images, score threshold {result['score_threshold']}")
        print(f"AP: {result['ap_definition']}")
        print(summary_table(result).to_string(index=False))
        if result.get("ap50_full_curve") is not None:
            print(f"full-curve AP@0.5 (cut-off lowered to 0): {result['ap50_full_curve']:.3f}")
        if "by_domain" in result:
            both = {"as_drawn": result, "rescaled": result["rescaled"]}
            print(f"\nAP@0.5 by domain, boxes as drawn and rescaled by {result['rescaled']['box_scale']}:")
            print(domain_ap_table(both).to_string(index=False))
    tc = result["threshold_choice"]
    if tc["reached"]:
        print(f"precision >= {tc['target_precision']}: threshold {tc['threshold']:.4f}, recall {tc['recall']:.3f}")
    else:
        print(f"precision {tc['target_precision']} not reached at any threshold (best {tc.get('best_precision')})")
    for note in result.get("reliability") or []:
        print(f"note: {note}")
    speed = (result.get("timing") or {}).get("images_per_second")
    if speed:
        print(f"detector: {speed:.2f} images/s")
    print(f"wrote metrics.json, pr_curve.png, errors.csv and the contact sheet to {out}")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    """Entry point of ``creative-insights evaluate`` (configs from the installed package)."""
    import hydra

    hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="evaluate")(evaluate_command)()
